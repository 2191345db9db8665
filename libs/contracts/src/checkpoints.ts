/**
 * Checkpoints as a resource of the control plane (`/v1/checkpoints`): the DTOs and the zod schemas of
 * the requests, shared by the control plane (validation), the CLI and the dashboard.
 *
 * A checkpoint is the suspend image of one VM in the suspend-store. The control plane records each one
 * its suspend operations made and answers for it: list (by VM), show, delete (through the store), download
 * (streamed through the control plane) and resume from any of them.
 */
import { z } from 'zod';
import { cursorPageQuery, type Page } from './page';
import type { CheckpointSummary } from './api';
import { HOST_ID_PATTERN, VM_ID_PATTERN, type VmSpec } from './jobs';

/** The suspend-store's id rule: 1-128 of A-Z a-z 0-9 . _ -, starting with a letter or digit, no `..`. */
export const CHECKPOINT_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export const checkpointIdSchema = z
  .string()
  .regex(CHECKPOINT_ID_PATTERN, 'must be 1-128 of A-Z a-z 0-9 . _ - starting with a letter or digit')
  .refine((s) => !s.includes('..'), 'must not contain ..');

/** `GET /v1/checkpoints?vm=&limit=&cursor=`: newest first, pages as every other collection. */
export const checkpointListQuerySchema = z
  .object({
    vm: z.string().regex(VM_ID_PATTERN, 'must match [A-Za-z0-9_.-]{1,128}').optional(),
    ...cursorPageQuery,
  })
  .strict();
export type CheckpointListQuery = z.input<typeof checkpointListQuerySchema>;

/**
 * `GET /v1/checkpoints/{id}/image`: the image as stored (v2), or down-converted for a legacy toolstack
 * (`format=legacy&width=32|64`). A `Range` header is passed on to the store (v2 only).
 */
export const checkpointImageQuerySchema = z
  .object({
    format: z.enum(['v2', 'legacy']).default('v2'),
    width: z.enum(['32', '64']).optional(),
  })
  .strict()
  .refine((q) => q.format === 'v2' || q.width !== undefined, { message: 'is required with format=legacy (32 or 64)', path: ['width'] })
  .refine((q) => q.format === 'legacy' || q.width === undefined, { message: 'only goes with format=legacy', path: ['width'] });
export type CheckpointImageQuery = z.input<typeof checkpointImageQuerySchema>;

/** `POST /v1/checkpoints/{id}/download-link`: a short-lived URL a browser can follow without a bearer header. */
export interface CheckpointDownloadLinkDto {
  /** Path on the control plane: GET it (no Authorization header) before `expiresAt`. */
  url: string;
  expiresAt: string;
}

/** The signed download path's query: the image query plus the expiry and the control plane's signature. */
export const checkpointSignedImageQuerySchema = z
  .object({
    format: z.enum(['v2', 'legacy']).default('v2'),
    width: z.enum(['32', '64']).optional(),
    expires: z.coerce.number().int().min(0),
    signature: z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'must be the signature the download link carried'),
  })
  .strict();

/** `POST /v1/vms/{id}/resume`: on which host (the scheduler picks one when absent), from which checkpoint (default: the latest). */
export const resumeRequestSchema = z
  .object({
    host: z.string().regex(HOST_ID_PATTERN, 'must match [A-Za-z0-9_.-]{1,64}').optional(),
    checkpointId: checkpointIdSchema.optional(),
  })
  .strict();

/** The suspend-store's retention policy (`GET /v1/retention` of the store). */
export interface RetentionPolicyDto {
  /** Keep the newest N checkpoints per VM; null: no count limit. */
  keepLast: number | null;
  /** Remove checkpoints older than this; null: no age limit. */
  maxAgeMs: number | null;
  /** How often the store applies the policy. */
  intervalMs: number;
  /** When the store's last pass ran (null: none since it started), and when the next one is due. */
  lastPassAt: string | null;
  nextPassAt: string;
}

/** What the store's retention will do to one checkpoint, and when. */
export interface CheckpointRetentionDto {
  /**
   * kept: no rule removes it yet; expiring: a rule already removes it, at the store's next pass
   * (`removalAt`); unknown: the store's policy could not be read.
   */
  state: 'kept' | 'expiring' | 'unknown';
  /** 1 = the VM's newest checkpoint. */
  rank: number;
  /** When it turns older than the policy's maximum age (null: no age limit). */
  expiresAt: string | null;
  /** The earliest the store can remove it (its first pass at or after expiresAt, or the next pass when expiring). */
  removalAt: string | null;
  /** keep-last: removed once this many newer checkpoints of its VM exist (null: no count limit). */
  newerUntilRemoval: number | null;
  /** The rule that removes it (expiring) or will (kept with a limit), or null. */
  rule: 'keep-last' | 'max-age' | null;
  /** One line for people: "kept until 2026-12-01T10:00:00Z (max age 30d)", "expiring: 3 newer checkpoints (keep last 2)". */
  summary: string;
}

/** How the image arrived in the store (from the store's metadata). */
export interface CheckpointImageDto {
  /** Stored size (v2) and sha256 of the stored stream. */
  bytes: number;
  sha256: string;
  /** What the agent uploaded: a v2 stream, or a legacy one converted on the way in. */
  sourceFormat: 'v2' | 'legacy';
  framing: string;
  byteOrder: string;
  guest: string;
  guestWidth: number | null;
  /** Toolstack width of a legacy upload, and whether it was declared or detected. */
  width: number | null;
  widthSource: string | null;
  xenVersion: string | null;
  pages: number | null;
  vcpus: number | null;
}

export interface CheckpointDto extends CheckpointSummary {
  /** The VM as it was when suspended: a resume from this checkpoint restores this guest. */
  vm: VmSpec | null;
  /** The suspend operation that made it. */
  operationId: string | null;
  /** The VM's newest checkpoint. */
  latest: boolean;
  /** The VM is suspended and this is its only checkpoint: deleting it would lose the VM, so the API refuses. */
  onlyImageOfSuspendedVm: boolean;
  /** A queued or running resume that reads this checkpoint (the API refuses to delete it meanwhile). */
  inUseBy: string | null;
  /** The store's metadata; null when the store could not be asked. */
  image: CheckpointImageDto | null;
  retention: CheckpointRetentionDto;
  /** Where to download it (GET, operator role; `?format=legacy&width=32|64` for a legacy toolstack). */
  imageUrl: string;
}

export type CheckpointPage = Page<CheckpointDto> & { retentionPolicy: RetentionPolicyDto | null };
