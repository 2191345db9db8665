import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { assertSafeKey, compareChildNames, type ByteRange, type ObjectBackend, type ObjectInfo } from './backend';

const TMP = 'tmp';

/**
 * A local folder: every object is a file under the root. Writes go to `tmp/` first, are
 * fsynced and then renamed into place (rename is atomic on one filesystem), and the folder
 * is fsynced so the new name survives a crash.
 */
export class FsBackend implements ObjectBackend {
  readonly kind = 'fs' as const;
  readonly description: string;

  constructor(private readonly root: string) {
    this.description = `folder ${root}`;
  }

  async init(): Promise<void> {
    await fsp.mkdir(path.join(this.root, TMP), { recursive: true });
  }

  async ready(): Promise<void> {
    await fsp.access(path.join(this.root, TMP), fs.constants.W_OK);
  }

  private file(key: string): string {
    assertSafeKey(key);
    return path.join(this.root, ...key.split('/').filter(Boolean));
  }

  private tmpFile(): string {
    return path.join(this.root, TMP, `${Date.now()}-${randomUUID()}.part`);
  }

  private async commit(tmp: string, key: string): Promise<void> {
    const dest = this.file(key);
    await fsp.mkdir(path.dirname(dest), { recursive: true });
    await fsp.rename(tmp, dest);
    await fsyncDir(path.dirname(dest));
  }

  async putStream(key: string, body: AsyncIterable<Uint8Array>, signal?: AbortSignal, expected?: number): Promise<{ size: number }> {
    this.file(key);
    const tmp = this.tmpFile();
    const fh = await fsp.open(tmp, 'wx', 0o600);
    let size = 0;
    try {
      for await (const chunk of body) {
        signal?.throwIfAborted();
        let off = 0;
        while (off < chunk.byteLength) {
          const { bytesWritten } = await fh.write(chunk, off, chunk.byteLength - off);
          off += bytesWritten;
        }
        size += chunk.byteLength;
      }
      signal?.throwIfAborted();
      if (expected !== undefined && size !== expected) throw new Error(`body has ${size} bytes, ${expected} were announced`);
      await fh.sync();
      await fh.close();
      await this.commit(tmp, key);
      return { size };
    } catch (e) {
      await fh.close().catch(() => undefined);
      await fsp.rm(tmp, { force: true });
      throw e;
    }
  }

  async putBytes(key: string, data: Uint8Array): Promise<void> {
    this.file(key);
    const tmp = this.tmpFile();
    try {
      const fh = await fsp.open(tmp, 'wx', 0o600);
      try {
        await fh.writeFile(data);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await this.commit(tmp, key);
    } catch (e) {
      await fsp.rm(tmp, { force: true });
      throw e;
    }
  }

  async getBytes(key: string): Promise<Buffer | null> {
    try {
      return await fsp.readFile(this.file(key));
    } catch (e) {
      if (isNotFound(e)) return null;
      throw e;
    }
  }

  async getStream(key: string, range?: ByteRange): Promise<Readable | null> {
    const file = this.file(key);
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(file, 'r');
    } catch (e) {
      if (isNotFound(e)) return null;
      throw e;
    }
    return fh.createReadStream({
      highWaterMark: 1024 * 1024,
      ...(range ? { start: range.start, end: range.end } : {}),
    });
  }

  async head(key: string): Promise<ObjectInfo | null> {
    try {
      const st = await fsp.stat(this.file(key));
      return st.isFile() ? { key, size: st.size, modified: st.mtime } : null;
    } catch (e) {
      if (isNotFound(e)) return null;
      throw e;
    }
  }

  async delete(key: string): Promise<void> {
    const file = this.file(key);
    await fsp.rm(file, { force: true });
    // Drop folders left empty, up to (not including) the root's first level.
    let dir = path.dirname(file);
    while (path.dirname(dir) !== this.root && dir.startsWith(this.root + path.sep)) {
      try {
        await fsp.rmdir(dir);
      } catch {
        break;
      }
      dir = path.dirname(dir);
    }
  }

  async listChildren(prefix: string, after: string | undefined, limit: number): Promise<{ names: string[]; truncated: boolean }> {
    let entries: fs.Dirent[];
    try {
      entries = await fsp.readdir(this.file(prefix), { withFileTypes: true });
    } catch (e) {
      if (isNotFound(e)) return { names: [], truncated: false };
      throw e;
    }
    const names = entries
      .filter((d) => d.isDirectory())
      .map((d) => d.name)
      .filter((n) => after === undefined || compareChildNames(n, after) > 0)
      .sort(compareChildNames);
    return { names: names.slice(0, limit), truncated: names.length > limit };
  }

  async listObjects(prefix: string): Promise<ObjectInfo[]> {
    const dir = this.file(prefix);
    let entries: fs.Dirent[];
    try {
      entries = await fsp.readdir(dir, { withFileTypes: true });
    } catch (e) {
      if (isNotFound(e)) return [];
      throw e;
    }
    const out: ObjectInfo[] = [];
    for (const d of entries) {
      if (!d.isFile()) continue;
      const st = await fsp.stat(path.join(dir, d.name)).catch(() => null);
      if (st) out.push({ key: prefix + d.name, size: st.size, modified: st.mtime });
    }
    return out.sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)));
  }

  async sweepStaleUploads(olderThanMs: number): Promise<number> {
    const dir = path.join(this.root, TMP);
    const now = Date.now();
    let n = 0;
    for (const name of await fsp.readdir(dir).catch(() => [] as string[])) {
      const st = await fsp.stat(path.join(dir, name)).catch(() => null);
      if (st && now - st.mtimeMs >= olderThanMs) {
        await fsp.rm(path.join(dir, name), { force: true, recursive: true });
        n++;
      }
    }
    return n;
  }

  async close(): Promise<void> {}
}

function isNotFound(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r');
  try {
    await fh.sync();
  } catch {
    // Some filesystems refuse fsync on a folder; the rename itself is still atomic.
  } finally {
    await fh.close();
  }
}
