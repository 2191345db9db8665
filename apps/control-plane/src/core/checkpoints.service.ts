import { Inject, Injectable, Logger, type OnApplicationBootstrap } from '@nestjs/common';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { nextOffsetCursor, type CheckpointDownloadLinkDto, type CheckpointDto, type CheckpointPage, type CheckpointSummary, type RetentionPolicyDto, type VmSpec } from '@ferry/contracts';
import { CP_CONFIG, type CpConfig } from '../config';
import { retentionOf } from './checkpoint-retention';
import { CheckpointsRepository, type CheckpointRecord, type StoredCheckpoint } from './checkpoints.repo';
import { fail } from './errors';
import { vmToDto } from './hosts.service';
import { EventsRepository, OperationsRepository, VmsRepository, type VmRecord } from './repos';
import { SuspendStoreClient } from './store.client';

const ACTIVE = ['queued', 'running'];
/** How long a download link works: long enough for a browser to start the download, short enough not to matter if it leaks. */
const LINK_TTL_MS = 60_000;

function summary(r: CheckpointRecord): CheckpointSummary {
  return { id: r.id, vmId: r.vmId, createdAt: r.createdAt, sourceHostId: r.sourceHostId, bytes: r.bytes, sha256: r.sha256, memoryDigest: r.memoryDigest };
}

/**
 * Checkpoints as a resource of the control plane. Each suspend that completes records its checkpoint
 * here; the image lives in the suspend-store, which the control plane asks (with its own credential) for
 * the image's metadata, its retention policy, downloads and deletes. A record whose image the store no
 * longer has (its retention removed it, or someone deleted it there) is dropped when found so.
 *
 * Two rules keep a VM from being lost: a checkpoint that a queued or running resume reads cannot be
 * deleted (the resume pins it, the delete marks it, both atomically in Redis), and neither can the only
 * checkpoint of a suspended VM.
 */
@Injectable()
export class CheckpointsService implements OnApplicationBootstrap {
  private readonly log = new Logger('Checkpoints');
  constructor(
    @Inject(CP_CONFIG) private readonly cfg: CpConfig,
    private readonly repo: CheckpointsRepository,
    private readonly vms: VmsRepository,
    private readonly ops: OperationsRepository,
    private readonly events: EventsRepository,
    private readonly store: SuspendStoreClient,
  ) {}

  /**
   * VMs suspended before checkpoints were a resource know only their latest checkpoint: it becomes a record
   * at start (idempotent, so every replica may do it). It runs beside the start, not before it: with Redis out of
   * reach its commands wait in ioredis' queue, and the service must still come up and say so.
   */
  onApplicationBootstrap(): void {
    void this.recordOlderCheckpoints();
  }

  private async recordOlderCheckpoints(): Promise<void> {
    try {
      let added = 0;
      for (const vm of await this.vms.many(await this.vms.allIds())) {
        const c = vm.checkpoint;
        if (!c || (await this.repo.get(c.id))) continue;
        await this.repo.add({ ...c, vm: vm.spec, operationId: null, image: null });
        added++;
      }
      if (added) this.log.log(`recorded ${added} checkpoint(s) of VMs suspended before checkpoints were a resource`);
    } catch (e) {
      this.log.warn(`could not record older checkpoints: ${(e as Error).message}`);
    }
  }

  /** A suspend completed: its checkpoint becomes a resource. The store is not asked here (this runs in an agent's report). */
  async record(rec: Omit<CheckpointRecord, 'image'>): Promise<void> {
    await this.repo.add({ ...rec, image: null });
    const s = await this.repo.get(rec.id);
    if (s) await this.events.publish('checkpoint.updated', 'checkpoint', rec.id, await this.toDto(s, this.store.cachedRetention()));
  }

  async list(q: { vm?: string; limit: number; offset: number }): Promise<CheckpointPage> {
    const { ids, total } = await this.repo.page(q.vm, q.offset, q.limit);
    const [found, policy] = await Promise.all([this.repo.many(ids), this.store.retention()]);
    // The store's metadata is read once per checkpoint and kept; a store that did not even give its policy is
    // not asked per item (the image stays null for now).
    const items = await Promise.all(
      found.map(async (s) => {
        const fresh = s.rec.image || policy === null ? s : await this.withImage(s, false);
        return fresh && this.toDto(fresh, policy);
      }),
    );
    return { items: items.filter((d): d is CheckpointDto => d !== null), total, limit: q.limit, nextCursor: nextOffsetCursor(q.offset, ids.length, total), retentionPolicy: policy };
  }

  /** One checkpoint, checked against the store: a checkpoint the store no longer has is forgotten (404). */
  async get(id: string): Promise<CheckpointDto> {
    const s = await this.mustGet(id);
    const fresh = await this.withImage(s, true);
    if (!fresh) throw fail(404, `checkpoint '${id}' is no longer in the suspend-store (removed by its retention, or deleted there)`);
    return this.toDto(fresh, await this.store.retention());
  }

  private async mustGet(id: string): Promise<StoredCheckpoint> {
    const s = await this.repo.get(id);
    if (!s) throw fail(404, `checkpoint '${id}' not found`);
    return s;
  }

  /**
   * Reads the store's metadata of a checkpoint. Absent there: the record is dropped and null returned.
   * A store that cannot be asked: `strict` rethrows (502/504), otherwise the record is returned as it is.
   */
  private async withImage(s: StoredCheckpoint, strict: boolean): Promise<StoredCheckpoint | null> {
    let image;
    try {
      image = await this.store.image(s.rec.id);
    } catch (e) {
      if (strict) throw e;
      return s;
    }
    if (!image) {
      await this.forget(s.rec);
      return null;
    }
    await this.repo.setImage(s.rec.id, image);
    return { ...s, rec: { ...s.rec, image } };
  }

  private async toDto(s: StoredCheckpoint, policy: RetentionPolicyDto | null): Promise<CheckpointDto> {
    const { rec } = s;
    const [ids, vm, inUseBy] = await Promise.all([this.repo.idsOfVm(rec.vmId), this.vms.get(rec.vmId), this.activeResume(s)]);
    const rank = ids.indexOf(rec.id) + 1 || ids.length + 1;
    return {
      id: rec.id,
      vmId: rec.vmId,
      createdAt: rec.createdAt,
      sourceHostId: rec.sourceHostId,
      bytes: rec.bytes,
      sha256: rec.sha256,
      memoryDigest: rec.memoryDigest,
      vm: rec.vm,
      operationId: rec.operationId,
      latest: rank === 1,
      onlyImageOfSuspendedVm: this.onlyImage(vm, ids, rec.id),
      inUseBy,
      image: rec.image,
      retention: retentionOf(rec.createdAt, rank, policy),
      imageUrl: `/v1/checkpoints/${encodeURIComponent(rec.id)}/image`,
    };
  }

  private onlyImage(vm: VmRecord | null, ids: string[], id: string): boolean {
    return !!vm && (vm.state === 'suspended' || vm.state === 'resuming') && ids.length === 1 && ids[0] === id;
  }

  /** The queued or running resume that pinned this checkpoint, if it is still one. */
  private async activeResume(s: StoredCheckpoint): Promise<string | null> {
    if (!s.pinnedBy) return null;
    const op = await this.ops.get(s.pinnedBy);
    return op && ACTIVE.includes(op.state) ? op.id : null;
  }

  /** Deletes the image in the store, then the record. */
  async delete(id: string): Promise<void> {
    const s = await this.mustGet(id);
    const inUse = await this.activeResume(s);
    if (inUse) throw fail(409, `checkpoint '${id}' is in use: resume ${inUse} of vm '${s.rec.vmId}' reads it; delete it once that operation ends`);
    if (s.deleting) throw fail(409, `checkpoint '${id}' is being deleted already`);
    const vm = await this.vms.get(s.rec.vmId);
    if (this.onlyImage(vm, await this.repo.idsOfVm(s.rec.vmId), id)) {
      throw fail(409, `checkpoint '${id}' is the only image of suspended vm '${s.rec.vmId}': deleting it would lose the VM (resume it first)`);
    }
    const marked = await this.repo.markDeleting(id, s.pinnedBy);
    if (marked === 'missing') throw fail(404, `checkpoint '${id}' not found`);
    if (marked === 'changed') throw fail(409, `checkpoint '${id}' was just taken by a resume or another delete; look again`);
    try {
      await this.store.delete(id);
    } catch (e) {
      await this.repo.unmarkDeleting(id);
      throw e;
    }
    await this.forget(s.rec);
  }

  /** Drops the record; a VM whose latest checkpoint it was now points at its newest remaining one. */
  private async forget(rec: CheckpointRecord): Promise<void> {
    await this.repo.remove(rec.id, rec.vmId);
    const vm = await this.vms.get(rec.vmId);
    if (vm?.checkpoint?.id === rec.id) {
      const [next] = await this.repo.many((await this.repo.idsOfVm(rec.vmId)).slice(0, 1));
      await this.vms.put(rec.vmId, { checkpoint: next ? summary(next.rec) : null });
      const nv = await this.vms.get(rec.vmId);
      if (nv) await this.events.publish('vm.updated', 'vm', nv.id, vmToDto(nv));
    }
    await this.events.publish('checkpoint.deleted', 'checkpoint', rec.id, { id: rec.id, vmId: rec.vmId });
  }

  /**
   * The checkpoint a resume of `vmId` reads: `explicit` (any of the VM's, checked with the store) or
   * the VM's latest. Returns its id and the VM as it was when suspended (null: not recorded).
   */
  async forResume(vmId: string, latestId: string, explicit: string | undefined): Promise<{ id: string; spec: VmSpec | null }> {
    const id = explicit ?? latestId;
    const s = await this.repo.get(id);
    if (!s) {
      if (explicit) throw fail(404, `checkpoint '${id}' not found (GET /v1/checkpoints?vm=${vmId} lists vm '${vmId}''s checkpoints)`);
      // A latest checkpoint recorded before checkpoints were a resource: resume as before.
      return { id, spec: null };
    }
    if (s.rec.vmId !== vmId) throw fail(409, `checkpoint '${id}' belongs to vm '${s.rec.vmId}', not '${vmId}'`);
    if (s.deleting) throw fail(409, `checkpoint '${id}' is being deleted`);
    if (explicit && !(await this.withImage(s, true))) {
      throw fail(404, `checkpoint '${id}' is no longer in the suspend-store (removed by its retention, or deleted there)`);
    }
    return { id, spec: s.rec.vm };
  }

  /** Pins the checkpoint for a resume operation (unless it is unknown here: a checkpoint from before records). */
  async pin(id: string, opId: string): Promise<boolean> {
    return (await this.repo.pin(id, opId)) !== 'deleting';
  }

  /**
   * A download link for browsers (a plain link cannot carry the bearer header): the image path with an
   * expiry and an HMAC of (id, format, width, expiry) under the admin token, which every replica holds.
   */
  async downloadLink(id: string, q: { format: 'v2' | 'legacy'; width?: '32' | '64' }, now = Date.now()): Promise<CheckpointDownloadLinkDto> {
    await this.mustGet(id);
    const expires = now + LINK_TTL_MS;
    const query = new URLSearchParams({ format: q.format, ...(q.width ? { width: q.width } : {}), expires: String(expires), signature: this.sign(id, q, expires) });
    return { url: `/v1/checkpoints/${encodeURIComponent(id)}/image/signed?${query.toString()}`, expiresAt: new Date(expires).toISOString() };
  }

  /** Checks a download link's signature and expiry (403 otherwise). */
  checkLink(id: string, q: { format: 'v2' | 'legacy'; width?: '32' | '64'; expires: number; signature: string }, now = Date.now()): void {
    const want = Buffer.from(this.sign(id, q, q.expires));
    const got = Buffer.from(q.signature);
    if (want.length !== got.length || !timingSafeEqual(want, got)) throw fail(403, 'download link signature does not match (ask for a new link: POST /v1/checkpoints/{id}/download-link)');
    if (now > q.expires) throw fail(403, 'download link expired (ask for a new link: POST /v1/checkpoints/{id}/download-link)');
  }

  private sign(id: string, q: { format: string; width?: string }, expires: number): string {
    return createHmac('sha256', this.cfg.FERRY_ADMIN_TOKEN).update(`ferry-download:${id}\n${q.format}\n${q.width ?? ''}\n${expires}`).digest('base64url');
  }

  /** Opens the image in the store for a download (checks the record first: 404 for unknown ids). */
  async open(id: string, q: { format: 'v2' | 'legacy'; width?: '32' | '64' }, range: string | undefined, signal: AbortSignal): Promise<Response> {
    const s = await this.mustGet(id);
    try {
      return await this.store.open(id, q, q.format === 'v2' ? range : undefined, signal);
    } catch (e) {
      // The store no longer has it: forget it here too.
      if ((e as { getStatus?: () => number }).getStatus?.() === 404) await this.forget(s.rec);
      throw e;
    }
  }
}
