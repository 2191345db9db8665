/** Redis I/O of the control plane's checkpoint records (the images themselves live in the suspend-store). */
import { Inject, Injectable } from '@nestjs/common';
import type Redis from 'ioredis';
import type { CheckpointImageDto, CheckpointSummary, VmSpec } from '@ferry/contracts';
import { REDIS } from '../config';
import { parseJson } from './redis';
import { RedisKeys } from './repos';

/** One checkpoint as the control plane knows it: what the suspend reported, and the store's metadata once read. */
export interface CheckpointRecord extends CheckpointSummary {
  vm: VmSpec | null;
  operationId: string | null;
  image: CheckpointImageDto | null;
}

export interface StoredCheckpoint {
  rec: CheckpointRecord;
  /** The last resume operation that pinned it (it may have finished since). */
  pinnedBy: string | null;
  /** A delete is under way: no resume may pin it. */
  deleting: boolean;
}

function toStored(h: Record<string, string>): StoredCheckpoint | null {
  const rec = parseJson<CheckpointRecord | null>(h.doc, null);
  if (!rec) return null;
  return { rec, pinnedBy: h.pinnedBy || null, deleting: h.deleting === '1' };
}

@Injectable()
export class CheckpointsRepository {
  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    private readonly k: RedisKeys,
  ) {}

  /** Records a checkpoint (idempotent: a repeated completion report writes the same record). */
  async add(rec: CheckpointRecord): Promise<void> {
    const score = Date.parse(rec.createdAt);
    await this.redis
      .multi()
      .hset(this.k.ckpt(rec.id), 'doc', JSON.stringify(rec))
      .zadd(this.k.ckpts(), score, rec.id)
      .zadd(this.k.ckptsVm(rec.vmId), score, rec.id)
      .exec();
  }

  async get(id: string): Promise<StoredCheckpoint | null> {
    return toStored(await this.redis.hgetall(this.k.ckpt(id)));
  }

  async many(ids: string[]): Promise<StoredCheckpoint[]> {
    if (!ids.length) return [];
    const p = this.redis.pipeline();
    for (const id of ids) p.hgetall(this.k.ckpt(id));
    const res = (await p.exec()) ?? [];
    return res.map(([, h]) => toStored((h as Record<string, string>) ?? {})).filter((c): c is StoredCheckpoint => c !== null);
  }

  /** A page of ids, newest first, of all checkpoints or of one VM's. */
  async page(vmId: string | undefined, offset: number, limit: number): Promise<{ ids: string[]; total: number }> {
    const index = vmId === undefined ? this.k.ckpts() : this.k.ckptsVm(vmId);
    const [total, ids] = await Promise.all([this.redis.zcard(index), this.redis.zrevrange(index, offset, offset + limit - 1)]);
    return { ids, total };
  }

  /** Every checkpoint id of one VM, newest first (ties: by id, as the store's retention orders them). */
  async idsOfVm(vmId: string): Promise<string[]> {
    return this.redis.zrevrange(this.k.ckptsVm(vmId), 0, -1);
  }

  async setImage(id: string, image: CheckpointImageDto): Promise<void> {
    const cur = await this.get(id);
    if (cur) await this.redis.hset(this.k.ckpt(id), 'doc', JSON.stringify({ ...cur.rec, image }));
  }

  async pin(id: string, opId: string): Promise<'pinned' | 'deleting' | 'missing'> {
    const r = await this.redis.pinCheckpoint(this.k.ckpt(id), opId);
    return r === 1 ? 'pinned' : r === 0 ? 'deleting' : 'missing';
  }

  async markDeleting(id: string, sawPinnedBy: string | null): Promise<'marked' | 'changed' | 'missing'> {
    const r = await this.redis.markCheckpointDeleting(this.k.ckpt(id), sawPinnedBy ?? '');
    return r === 1 ? 'marked' : r === 0 ? 'changed' : 'missing';
  }

  async unmarkDeleting(id: string): Promise<void> {
    await this.redis.unmarkCheckpointDeleting(this.k.ckpt(id));
  }

  async remove(id: string, vmId: string): Promise<void> {
    await this.redis.multi().del(this.k.ckpt(id)).zrem(this.k.ckpts(), id).zrem(this.k.ckptsVm(vmId), id).exec();
  }
}
