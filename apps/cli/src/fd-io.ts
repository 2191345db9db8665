/**
 * Descriptor I/O for the converters: blocking reads into a small pool of reused buffers and
 * writev straight to a file descriptor, so the codec's views (page data never copied) reach
 * the kernel in few system calls; page data not read yet goes from descriptor to descriptor
 * inside the kernel where the native helper allows it (PooledInput.forward, native.ts). Kept
 * apart from the commands so that convert-legacy-stream, a helper libxl spawns per migration,
 * loads only what it uses.
 */
import * as fs from 'node:fs';
import { constants as osConstants } from 'node:os';
import * as path from 'node:path';
import type { StreamReader } from '@ferry/stream-codec/legacy';
import { alignedBytes } from '@ferry/stream-codec/node';
import type { FdCopy } from './native';

/** optparse accepts any unique prefix of a long option (libxl passes --guest for --guest-type). */
export function expandLongOptions(argv: string[], names: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      out.push(...argv.slice(i));
      break;
    }
    const m = /^--([^=]+)(=.*)?$/.exec(a);
    if (!m || names.includes(m[1]!)) {
      out.push(a);
      continue;
    }
    const hits = names.filter((n) => n.startsWith(m[1]!));
    out.push(hits.length === 1 ? `--${hits[0]}${m[2] ?? ''}` : a);
  }
  return out;
}

/**
 * Where a converter writes: "-" or "1" is stdout, digits an inherited descriptor (closed when
 * done, stdout is not), anything else a path. A path is written through a temporary file in the same
 * folder, renamed onto it by commit(); discard() (any failure) removes it, so a failed
 * conversion leaves neither a partial file nor an empty one, and a file already at the path
 * stays as it was. With `onSignal`, SIGINT, SIGTERM and SIGHUP remove it too before the process
 * ends; only for callers whose event loop runs between reads: a handler makes these signals wait
 * for the loop, and a process blocked in a synchronous read of a pipe would never end. Without
 * it (and after SIGKILL) a signal can leave the temporary file: a dot-file named after the
 * output. No fsync before the rename: the point is never to show a partial output, not to
 * survive a power cut.
 */
export class OutputFile {
  private done = false;
  private readonly onSignal?: (sig: NodeJS.Signals) => void;

  private constructor(
    readonly fd: number,
    /** The path to rename onto, and the temporary file; absent for stdout and descriptors. */
    private readonly target?: { path: string; temp: string },
    cleanupOnSignal = false,
  ) {
    if (!target || !cleanupOnSignal) return;
    this.onSignal = (sig) => {
      this.discard();
      process.kill(process.pid, sig); // the default action now that our handlers are gone
    };
    for (const sig of SIGNALS) process.once(sig, this.onSignal);
  }

  static open(spec: string, opts: { onSignal?: 'remove' } = {}): OutputFile {
    if (spec === '-' || spec === '1') return new OutputFile(1);
    if (/^\d+$/.test(spec)) {
      const fd = Number(spec);
      fs.fstatSync(fd); // EBADF now rather than at the first write
      return new OutputFile(fd);
    }
    const dir = path.dirname(spec);
    if (fs.statSync(spec, { throwIfNoEntry: false })?.isDirectory()) throw new Error(`${spec} is a directory`);
    // created exclusively: never someone else's file (a name taken is skipped)
    for (let n = 0; ; n++) {
      const temp = path.join(dir, `.${path.basename(spec)}.${process.pid}.${n}.tmp`);
      try {
        return new OutputFile(fs.openSync(temp, 'wx'), { path: spec, temp }, opts.onSignal === 'remove');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || n >= 100) throw e;
      }
    }
  }

  /** The conversion succeeded: the output takes its name. */
  commit(): void {
    if (this.done) return;
    this.done = true;
    this.unhook();
    this.close();
    if (!this.target) return;
    try {
      fs.renameSync(this.target.temp, this.target.path);
    } catch (e) {
      fs.rmSync(this.target.temp, { force: true });
      throw e;
    }
  }

  /** The conversion failed: nothing of it stays. Safe to call again, and after commit(). */
  discard(): void {
    if (this.done) return;
    this.done = true;
    this.unhook();
    this.close();
    if (this.target) fs.rmSync(this.target.temp, { force: true });
  }

  private close(): void {
    try {
      if (this.fd > 2) fs.closeSync(this.fd);
    } catch {
      /* closed by its other owner (an inherited descriptor) */
    }
  }

  private unhook(): void {
    if (this.onSignal) for (const sig of SIGNALS) process.off(sig, this.onSignal);
  }
}
const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

const IOV_MAX = 1024;
// Small batches: the bytes just read are still in the CPU cache when they are written.
// On the machines measured, 4-8 MiB writev calls ran at a third of the speed of 256 KiB ones.
const BATCH_BYTES = 256 * 1024;

/**
 * Blocking I/O: a converter has nothing else to do meanwhile, and a synchronous call
 * costs microseconds where a thread-pool round trip costs tens. A descriptor someone
 * left non-blocking (EAGAIN) is retried after a short sleep.
 */
async function writev(fd: number, bufs: Uint8Array[]): Promise<number> {
  for (;;) {
    try {
      return fs.writevSync(fd, bufs);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      await new Promise((r) => setTimeout(r, 1));
    }
  }
}

async function flushAll(fd: number, bufs: Uint8Array[]): Promise<void> {
  let list = bufs;
  while (list.length) {
    let n = await writev(fd, list);
    // Partial write: drop what went out.
    let i = 0;
    while (i < list.length && n >= list[i]!.byteLength) n -= list[i++]!.byteLength;
    list = list.slice(i);
    if (n > 0) list[0] = list[0]!.subarray(n);
  }
}

/**
 * A writev sink that batches chunks (views, never copied) into system calls of up
 * to 256 KiB / 1024 pieces. `flush()` may be called from elsewhere while the sink is
 * waiting for its next chunk (the pooled input does, before it reuses a buffer).
 */
export class FdSink {
  private batch: Uint8Array[] = [];
  private bytes = 0;
  total = 0;
  constructor(
    readonly fd: number,
    private readonly onBytes?: (n: number) => void,
  ) {}
  push(c: Uint8Array): Promise<void> | undefined {
    if (!c.byteLength) return undefined;
    this.batch.push(c);
    this.bytes += c.byteLength;
    return this.batch.length >= IOV_MAX || this.bytes >= BATCH_BYTES ? this.flush() : undefined;
  }
  async flush(): Promise<void> {
    if (!this.batch.length) return;
    const b = this.batch;
    const n = this.bytes;
    this.batch = [];
    this.bytes = 0;
    await flushAll(this.fd, b);
    this.counted(n);
  }
  /** Bytes that reached the descriptor: through flush(), or without passing through the sink (PooledInput.forward). */
  counted(n: number): void {
    this.total += n;
    this.onBytes?.(n);
  }
  async drain(chunks: AsyncIterable<Uint8Array>): Promise<number> {
    for await (const c of chunks) {
      const p = this.push(c);
      if (p) await p;
    }
    await this.flush();
    return this.total;
  }
}

/** Writes chunks (views, never copied) with writev in batches of up to 256 KiB / 1024 pieces. */
export function writeToFd(chunks: AsyncIterable<Uint8Array>, fd: number, onBytes?: (n: number) => void): Promise<number> {
  return new FdSink(fd, onBytes).drain(chunks);
}

async function readInto(fd: number, buf: Uint8Array): Promise<number> {
  for (;;) {
    try {
      return fs.readSync(fd, buf, 0, buf.byteLength, null);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EOF') return 0;
      if (code !== 'EAGAIN') throw e;
      await new Promise((r) => setTimeout(r, 1));
    }
  }
}

/**
 * Reads a file descriptor in chunks into a small pool of reused buffers, so a long
 * conversion neither faults in fresh memory for every read nor strays out of the CPU
 * cache. A buffer is refilled only when every byte of it lies before the reader's
 * `unheldBefore` (the codec keeps no view of it: the legacy converter declares this
 * while it passes page data on) and the sink has written everything it was handed (it
 * is flushed before every read); if none is free, the pool grows. In the steady state
 * of a conversion that is one buffer, refilled in place.
 */
export class PooledInput {
  private readonly pool: { buf: Uint8Array; end: number }[] = [];
  reader: StreamReader | undefined;
  bytes = 0;
  /** Of `bytes`, those that went to the output inside the kernel (forward). */
  forwarded = 0;
  constructor(
    private readonly fd: number,
    private readonly sink: FdSink,
    private readonly chunk = 1024 * 1024,
    private readonly onBytes?: (n: number) => void,
    /** Loads the kernel-copy helper (native.ts loadFdCopy), on the first forward(). */
    private readonly loadCopy: () => FdCopy | null = () => null,
  ) {}
  private copy: FdCopy | null | undefined;
  private readSize = Infinity;

  /**
   * Moves the next `n` input bytes, which nobody has read yet, straight to the sink's descriptor
   * in the kernel (`copy`, the native helper), after flushing what the sink holds so the output
   * stays in order. Resolves with the bytes moved (fewer than n only at the end of the input), or
   * null when these descriptors do not allow it (the caller then reads and writes them itself).
   * The reader calls it from passOn (StreamReader.forward).
   */
  async forward(n: number): Promise<number | null> {
    if (this.copy === undefined) this.copy = this.loadCopy();
    if (!this.copy) return null;
    await this.sink.flush();
    for (;;) {
      const r = this.copy(this.fd, this.sink.fd, n);
      if (r >= 0) {
        // From now on read in small pieces: what a read takes of the next batch's page data goes
        // through JavaScript, the rest of it through the kernel.
        this.readSize = FORWARDING_READ;
        this.forwarded += r;
        this.bytes += r;
        this.sink.counted(r);
        this.onBytes?.(r);
        return r;
      }
      const errno = -r;
      if (errno === osConstants.errno.EAGAIN) {
        await new Promise((res) => setTimeout(res, 1));
        continue;
      }
      if (NOT_HERE.has(errno)) {
        this.copy = null;
        return null;
      }
      const name = Object.entries(osConstants.errno).find(([, v]) => v === errno)?.[0] ?? `errno ${errno}`;
      throw Object.assign(new Error(`${name}: copying page data between descriptors failed`), { code: name, errno: -errno, syscall: 'splice' });
    }
  }
  private take(): { buf: Uint8Array; end: number } {
    const unheld = this.reader ? Math.min(this.reader.unheldBefore, this.reader.offset) : 0;
    for (const e of this.pool) if (e.end <= unheld) return e;
    const e = { buf: alignedBytes(this.chunk), end: Infinity };
    this.pool.push(e);
    return e;
  }
  async *chunks(): AsyncGenerator<Uint8Array, void, undefined> {
    for (;;) {
      await this.sink.flush();
      const e = this.take();
      e.end = Infinity;
      const n = await readInto(this.fd, this.readSize < e.buf.byteLength ? e.buf.subarray(0, this.readSize) : e.buf);
      if (n === 0) return;
      this.bytes += n;
      e.end = this.bytes;
      this.onBytes?.(n);
      yield e.buf.subarray(0, n);
    }
  }
}

/**
 * Read size once page data is being forwarded: a legacy batch header and its pfns (4 or 8 KiB for a
 * 1024-page batch from a 32- or 64-bit toolstack) and a little page data, which then goes through
 * JavaScript; the rest of the batch goes through the kernel.
 */
const FORWARDING_READ = 16 * 1024;

/** What the kernel answers when a pair of descriptors cannot be copied between (nothing was moved). */
const NOT_HERE = new Set([osConstants.errno.EXDEV, osConstants.errno.EINVAL, osConstants.errno.ENOSYS, osConstants.errno.EOPNOTSUPP, osConstants.errno.EBADF, osConstants.errno.ESPIPE]);

/** Opens a path, "-" (stdin) or a numeric descriptor for reading; size when it is a regular file. */
export function openInputFd(spec: string): { fd: number; size: number | undefined } {
  const fd = spec === '-' ? 0 : /^\d+$/.test(spec) ? Number(spec) : fs.openSync(spec, 'r');
  const st = fs.fstatSync(fd);
  if (st.isDirectory()) throw new Error(`${spec} is a directory`);
  return { fd, size: st.isFile() ? st.size : undefined };
}
