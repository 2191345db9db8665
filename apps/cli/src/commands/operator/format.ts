import type { HostDto, Toolstack, VmDto } from '@ferry/contracts';
import { kv, table } from './common';

export const toolstack = (t: Toolstack): string => `xen ${t.xenVersion} ${t.bitness}-bit ${t.streamFormat}`;

export function hostFlags(h: HostDto): string {
  return [h.draining ? 'draining' : '', h.maintenance ? 'maintenance' : '', h.campaignId ? `campaign ${h.campaignId}` : ''].filter(Boolean).join(',');
}

export function hostsTable(hs: HostDto[]): string {
  return table(
    ['ID', 'HOSTNAME', 'STATE', 'TOOLSTACK', 'FLAGS', 'GUESTS', 'MEMORY'],
    hs.map((h) => [h.id, h.hostname, h.state, toolstack(h.toolstack), hostFlags(h) || null, `${h.used.guests}/${h.capacity.maxGuests}`, `${h.used.memoryMiB}/${h.capacity.memoryMiB} MiB`]),
  );
}

export function hostDetail(h: HostDto): string {
  return kv([
    ['id', h.id],
    ['hostname', h.hostname],
    ['state', h.state],
    ['toolstack', toolstack(h.toolstack)],
    ['byte order', h.byteOrder],
    ['draining', h.draining],
    ['maintenance', h.maintenance],
    ['campaign', h.campaignId],
    ['guests', `${h.used.guests}/${h.capacity.maxGuests}`],
    ['memory', `${h.used.memoryMiB}/${h.capacity.memoryMiB} MiB`],
    ['vcpus', h.capacity.vcpus],
    ['last heartbeat', h.lastHeartbeatAt],
    ['agent', h.agentVersion],
    ['data url', h.dataUrl],
  ]);
}

const width = (v: VmDto): string => (v.guestWidth ? `${v.guestWidth}-bit` : '');

export function vmsTable(vs: VmDto[]): string {
  return table(
    ['ID', 'NAME', 'HOST', 'TYPE', 'WIDTH', 'MEMORY', 'VCPUS', 'STATE'],
    vs.map((v) => [v.id, v.name, v.hostId ?? '(suspend-store)', v.type, width(v) || null, `${v.memoryMiB} MiB`, v.vcpus, v.state]),
  );
}

export function vmDetail(v: VmDto): string {
  const c = v.latestCheckpoint;
  return kv([
    ['id', v.id],
    ['name', v.name],
    ['host', v.hostId ?? '(suspend-store)'],
    ['type', v.type],
    ['guest width', width(v)],
    ['memory', `${v.memoryMiB} MiB`],
    ['vcpus', v.vcpus],
    ['state', v.state],
    ['memory digest', v.memoryDigest],
    ['latest checkpoint', c ? `${c.id} (${c.createdAt}, from ${c.sourceHostId}, ${c.bytes} bytes, ${c.sha256})` : null],
    ['active operation', v.activeOperationId],
    ['updated', v.updatedAt],
  ]);
}
