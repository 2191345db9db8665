import { badRequest } from '../common/errors';

/**
 * Storage layout (one folder per checkpoint, no database):
 *   checkpoints/{id}/image-{upload}.v2   the v2 stream (one per upload, so uploads never clobber)
 *   checkpoints/{id}/meta.json           written last: its presence is the commit
 *   tokens/{tokenId}.json                hashed API tokens made through POST /v1/tokens
 *   tmp/                                 local-folder backend only: uploads in progress
 */
export const CHECKPOINTS = 'checkpoints/';
export const metaKey = (id: string): string => `${CHECKPOINTS}${id}/meta.json`;
export const folderKey = (id: string): string => `${CHECKPOINTS}${id}/`;
export const imageKey = (id: string, object: string): string => `${CHECKPOINTS}${id}/${object}`;

/** Integrity blocks: each block of the stored stream has its own checksum so a Range read can be checked. */
export const BLOCK_SIZE = 8 * 1024 * 1024;

const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Ids of checkpoints and VMs: 1-128 of A-Z a-z 0-9 . _ -, starting with a letter or digit, no '..'. */
export function validateId(value: unknown, what: 'checkpoint id' | 'vm'): string {
  if (typeof value !== 'string' || !ID.test(value) || value.includes('..')) {
    throw badRequest(`invalid ${what} '${String(value).slice(0, 80)}': use 1-128 of A-Z a-z 0-9 . _ - starting with a letter or digit`);
  }
  return value;
}

export interface CheckpointSource {
  /** What arrived: a v2 stream or a legacy one (converted to v2 on the way in). */
  format: 'v2' | 'legacy';
  /** Outermost framing of the stored v2 stream. */
  framing: 'xl' | 'libxl' | 'libxc';
  byteOrder: 'little' | 'big';
  guest: 'pv' | 'hvm';
  guestWidth?: 32 | 64;
  /** Toolstack width of a legacy image. */
  width?: 32 | 64;
  widthSource?: 'declared' | 'detected';
  guestSource?: 'declared' | 'detected';
  /** Whether the format was given by the client or detected. */
  formatSource: 'declared' | 'detected';
  /** What the client said (query parameters), verbatim. */
  declared: { format: string; width: string; guest: string };
  xenVersion?: string;
  /** Size and sha256 of the bytes as received. */
  size: number;
  sha256: string;
}

export interface CheckpointMeta {
  id: string;
  vm: string;
  created: string;
  /** Object name of the image inside the checkpoint's folder. */
  object: string;
  /** Size and sha256 (hex) of the stored v2 stream. */
  size: number;
  sha256: string;
  /**
   * Per-block checksums of the stored stream, BLOCK_SIZE bytes each (the last may be shorter):
   * CRC-32 as 8 hex digits ('crc32', what the store writes), or sha256 in base64 (absent:
   * images stored before blockHash existed). Every read, whole or Range, is checked against
   * them (integrity.ts): against corruption at rest a CRC-32 is enough, at half the cost of a
   * sha256 pass. Whole reads of images with sha256 blocks check the whole-stream sha256 above.
   */
  blockHash?: 'crc32' | 'sha256';
  blockSize: number;
  blocks: string[];
  source: CheckpointSource;
  stats: { pages: number; vcpus: number; records: number };
  labels: Record<string, string>;
}

/** What lists and PUT return: the meta without the block hashes. */
export type CheckpointView = Omit<CheckpointMeta, 'blocks' | 'object'>;

export function view(meta: CheckpointMeta): CheckpointView {
  const { blocks: _b, object: _o, ...rest } = meta;
  return rest;
}

export function parseMeta(raw: Buffer, id: string): CheckpointMeta {
  const m = JSON.parse(raw.toString('utf8')) as CheckpointMeta;
  if (m.id !== id || typeof m.size !== 'number' || typeof m.sha256 !== 'string' || !Array.isArray(m.blocks) || typeof m.object !== 'string' || (m.blockHash !== undefined && m.blockHash !== 'crc32' && m.blockHash !== 'sha256')) {
    throw new Error(`metadata of checkpoint ${id} is damaged`);
  }
  return m;
}

const LABEL_KEY = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$/;

/** `label=key=value` query parameters (repeatable) -> a map; at most 32, small keys and values. */
export function parseLabels(raw: unknown): Record<string, string> {
  const list = raw === undefined ? [] : Array.isArray(raw) ? raw : [raw];
  const out: Record<string, string> = {};
  if (list.length > 32) throw badRequest('at most 32 labels');
  for (const item of list) {
    if (typeof item !== 'string') throw badRequest('label must be key=value');
    const i = item.indexOf('=');
    const key = i > 0 ? item.slice(0, i) : '';
    const value = i > 0 ? item.slice(i + 1) : '';
    if (!LABEL_KEY.test(key) || value.length > 256) {
      throw badRequest(`invalid label '${item.slice(0, 80)}': use key=value, key 1-63 of A-Z a-z 0-9 . _ / -, value up to 256 characters`);
    }
    out[key] = value;
  }
  return out;
}
