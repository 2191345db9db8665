import { Inject, Injectable, Logger } from '@nestjs/common';
import type { Readable } from 'node:stream';
import { OBJECT_BACKEND, type ByteRange, type ObjectBackend, type ObjectInfo } from '../backends/backend';
import { CHECKPOINTS, folderKey, imageKey, metaKey, parseMeta, type CheckpointMeta } from './checkpoint.model';

/** Checkpoint metadata and images in the object store. */
@Injectable()
export class CheckpointRepository {
  private readonly log = new Logger('CheckpointRepository');

  constructor(@Inject(OBJECT_BACKEND) private readonly backend: ObjectBackend) {}

  async getMeta(id: string): Promise<CheckpointMeta | null> {
    const raw = await this.backend.getBytes(metaKey(id));
    return raw ? parseMeta(raw, id) : null;
  }

  async exists(id: string): Promise<boolean> {
    return (await this.backend.head(metaKey(id))) !== null;
  }

  /** Streams the image into its own object (invisible until commit). */
  putImage(id: string, object: string, body: AsyncIterable<Uint8Array>, signal?: AbortSignal, size?: number): Promise<{ size: number }> {
    return this.backend.putStream(imageKey(id, object), body, signal, size);
  }

  /** The commit: the checkpoint becomes visible once its meta is there. */
  async commit(meta: CheckpointMeta): Promise<void> {
    await this.backend.putBytes(metaKey(meta.id), Buffer.from(JSON.stringify(meta)));
  }

  openImage(meta: CheckpointMeta, range?: ByteRange): Promise<Readable | null> {
    return this.backend.getStream(imageKey(meta.id, meta.object), range);
  }

  headImage(meta: CheckpointMeta): Promise<ObjectInfo | null> {
    return this.backend.head(imageKey(meta.id, meta.object));
  }

  deleteImageObject(id: string, object: string): Promise<void> {
    return this.backend.delete(imageKey(id, object));
  }

  /** Uncommits first (meta), then removes everything else in the folder. */
  async delete(id: string): Promise<void> {
    await this.backend.delete(metaKey(id));
    for (const o of await this.backend.listObjects(folderKey(id))) await this.backend.delete(o.key);
  }

  /** Checkpoint ids in key order after `after`. */
  listIds(after: string | undefined, limit: number): Promise<{ names: string[]; truncated: boolean }> {
    return this.backend.listChildren(CHECKPOINTS, after, limit);
  }

  listFolder(id: string): Promise<ObjectInfo[]> {
    return this.backend.listObjects(folderKey(id));
  }

  deleteObject(key: string): Promise<void> {
    return this.backend.delete(key);
  }

  /** Metadata of every checkpoint (for retention), page by page. */
  async *all(): AsyncGenerator<{ id: string; meta: CheckpointMeta | null }> {
    let after: string | undefined;
    for (;;) {
      const page = await this.listIds(after, 500);
      for (const id of page.names) {
        let meta: CheckpointMeta | null = null;
        try {
          meta = await this.getMeta(id);
        } catch (e) {
          this.log.warn(`checkpoint ${id}: ${(e as Error).message}`);
        }
        yield { id, meta };
      }
      if (!page.truncated || page.names.length === 0) return;
      after = page.names.at(-1);
    }
  }
}
