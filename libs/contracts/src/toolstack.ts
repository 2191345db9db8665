/**
 * Toolstack model and the one compatibility rule the scheduler uses.
 *
 * The data path between agents is ALWAYS a v2 stream: a legacy (Xen <= 4.5) source converts
 * at its own edge (stream-codec `ingestToV2`). A target can therefore receive a guest when
 *   1. its toolstack restores v2 (`streamFormat: 'v2'`), or
 *   2. it is legacy and the codec's v2 -> legacy down-conversion (`legacyFromV2({ width })`)
 *      can express the guest at the target toolstack's width: HVM guests always; PV guests only
 *      when the guest width <= the target toolstack width (a 32-bit legacy toolstack has no
 *      record layout for a 64-bit PV guest's vCPU context / p2m).
 */
export type Bitness = 32 | 64;
export type StreamFormat = 'legacy' | 'v2';
export type ByteOrder = 'little' | 'big';
export type GuestType = 'pv' | 'hvm';

export interface Toolstack {
  /** e.g. "4.4" (legacy stream) or "4.17" (v2 stream). */
  xenVersion: string;
  bitness: Bitness;
  streamFormat: StreamFormat;
}

/** What the scheduler needs to know about a guest for the compatibility check. */
export interface GuestShape {
  type: GuestType;
  /** PV only: 32 or 64-bit guest kernel. HVM guests carry no width in the stream model. */
  guestWidth?: Bitness;
}

/** How the target agent must write the stream it receives (always v2 on the wire). */
export type RestoreFormat = { format: 'v2' } | { format: 'legacy'; width: Bitness };

export type Compatibility =
  | { ok: true; restore: RestoreFormat }
  | { ok: false; reason: string };

/**
 * THE compatibility rule ("a target must be able to read what the source sends after
 * conversion"). Pure; used by the scheduler, the campaign planner and the agents.
 */
export function canReceive(target: Toolstack, guest: GuestShape): Compatibility {
  if (target.streamFormat === 'v2') return { ok: true, restore: { format: 'v2' } };
  if (guest.type === 'hvm') return { ok: true, restore: { format: 'legacy', width: target.bitness } };
  const width = guest.guestWidth ?? 64;
  if (width <= target.bitness) return { ok: true, restore: { format: 'legacy', width: target.bitness } };
  return {
    ok: false,
    reason: `legacy ${target.bitness}-bit toolstack (Xen ${target.xenVersion}) cannot express a ${width}-bit PV guest after v2->legacy conversion`,
  };
}

/** How a source agent must read its own save image before sending (legacy sources convert at their edge). */
export function sourceIngest(source: Toolstack): { format: 'legacy' | 'v2'; width: Bitness } {
  return { format: source.streamFormat, width: source.bitness };
}

/** The toolstack an upgrade campaign moves a host to by default (sim hosts: 64-bit v2). */
export const DEFAULT_UPGRADE_TOOLSTACK: Toolstack = { xenVersion: '4.17', bitness: 64, streamFormat: 'v2' };

export function sameToolstack(a: Toolstack, b: Toolstack): boolean {
  return a.xenVersion === b.xenVersion && a.bitness === b.bitness && a.streamFormat === b.streamFormat;
}
