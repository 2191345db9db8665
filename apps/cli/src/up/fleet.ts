/**
 * The demo fleet `ferry up` runs: four sim hosts, a dozen VMs. xen-a and xen-b start as 32-bit legacy
 * (Xen 4.4) dom0s, xen-c and xen-d as 64-bit v2 (Xen 4.17); ids say nothing of the width, which an
 * upgrade campaign changes.
 */
import type { Bitness, GuestType, Toolstack } from '@ferry/contracts';

export interface SimGuestDef {
  vmId: string;
  name: string;
  type: GuestType;
  guestWidth?: Bitness;
  memoryMiB: number;
  vcpus: number;
}

export interface SimHostDef {
  hostId: string;
  /** FERRY_SIM_TOOLSTACK: "4.4-32" (legacy stream) or "4.17-64" (v2). */
  toolstack: string;
  parsed: Toolstack;
  capacity: { memoryMiB: number; vcpus: number; maxGuests: number };
  guests: SimGuestDef[];
}

const LEGACY_32: Toolstack = { xenVersion: '4.4', bitness: 32, streamFormat: 'legacy' };
const V2_64: Toolstack = { xenVersion: '4.17', bitness: 64, streamFormat: 'v2' };
const CAPACITY = { memoryMiB: 4096, vcpus: 32, maxGuests: 12 };

const g = (vmId: string, type: GuestType, memoryMiB: number, vcpus: number, guestWidth?: Bitness): SimGuestDef => ({
  vmId,
  name: vmId,
  type,
  memoryMiB,
  vcpus,
  ...(type === 'pv' ? { guestWidth: guestWidth ?? 64 } : {}),
});

export const FLEET: SimHostDef[] = [
  {
    hostId: 'xen-a',
    toolstack: '4.4-32',
    parsed: LEGACY_32,
    capacity: CAPACITY,
    guests: [g('web-1', 'pv', 128, 1, 32), g('web-2', 'hvm', 256, 2), g('db-1', 'pv', 256, 2, 32)],
  },
  {
    hostId: 'xen-b',
    toolstack: '4.4-32',
    parsed: LEGACY_32,
    capacity: CAPACITY,
    guests: [g('cache-1', 'pv', 128, 1, 32), g('build-1', 'hvm', 256, 2), g('mail-1', 'pv', 128, 1, 32)],
  },
  {
    hostId: 'xen-c',
    toolstack: '4.17-64',
    parsed: V2_64,
    capacity: CAPACITY,
    guests: [g('api-1', 'pv', 256, 2, 64), g('api-2', 'pv', 256, 2, 64), g('batch-1', 'hvm', 512, 4)],
  },
  {
    hostId: 'xen-d',
    toolstack: '4.17-64',
    parsed: V2_64,
    capacity: CAPACITY,
    guests: [g('api-3', 'pv', 128, 1, 64), g('mon-1', 'hvm', 128, 1), g('ldap-1', 'pv', 128, 1, 32)],
  },
];

/** FERRY_SIM_GUESTS value (apps/host-agent config): "id:type:memory:vcpus:seed" entries, type pv32|pv64|hvm. */
export function simGuestsEnv(guests: SimGuestDef[]): string {
  return guests
    .map((x) => {
      let seed = 0;
      for (const c of x.vmId) seed = (seed * 31 + c.charCodeAt(0)) >>> 0;
      const type = x.type === 'hvm' ? 'hvm' : `pv${x.guestWidth ?? 64}`;
      return [x.vmId, type, `${x.memoryMiB}M`, String(x.vcpus), String(seed)].join(':');
    })
    .join(',');
}
