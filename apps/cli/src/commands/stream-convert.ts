/**
 * `ferry stream convert IN OUT`: legacy -> v2 or v2 -> legacy, deciding the
 * direction, width and guest type from the input unless told. Also the output
 * helpers convert-legacy-stream shares: writev straight to a file descriptor, so
 * the codec's views (page data never copied) reach the kernel in few system calls.
 */
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
// Deep imports keep convert-legacy-stream (which shares the I/O helpers below) from loading the v2 codec.
import { UnsupportedStreamError, isStreamCodecError } from '@ferry/stream-codec/src/errors';
import { convertLegacy } from '@ferry/stream-codec/src/legacy/convert';
import { StreamReader } from '@ferry/stream-codec/src/reader';
import { legacyFromV2 } from '@ferry/stream-codec/src/downconvert';
import { readerRemainder, sniffV2 } from '@ferry/stream-codec/src/ingest';
import { Progress, openInput } from '../io';

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

/** "-" or "1" is stdout; digits are an inherited descriptor; anything else a path (created/truncated). */
export function openOutputFd(spec: string): number {
  if (spec === '-' || spec === '1') return 1;
  if (/^\d+$/.test(spec)) {
    const fd = Number(spec);
    fs.fstatSync(fd); // EBADF now rather than at the first write
    return fd;
  }
  return fs.openSync(spec, 'w');
}

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
 * Reads a file descriptor in 4 MiB chunks into a small pool of reused buffers, so a
 * long conversion does not fault in fresh memory for every read. A buffer is reused
 * only when the reader has consumed all of it and the sink has written everything
 * it was handed (the sink is flushed before every read), so views of it that the
 * codec passed on have left the process; if none is free, the pool grows.
 */
export class PooledInput {
  private readonly pool: { buf: Uint8Array; end: number }[] = [];
  reader: StreamReader | undefined;
  bytes = 0;
  constructor(
    private readonly fd: number,
    private readonly sink: FdSink,
    private readonly chunk = 4 * 1024 * 1024,
    private readonly onBytes?: (n: number) => void,
  ) {}
  private take(): { buf: Uint8Array; end: number } {
    const consumed = this.reader ? this.reader.offset : 0;
    // Never the two most recently filled buffers: a small view taken from one may still be
    // held by the codec across one more read.
    const recent = [...this.pool].sort((a, b) => b.end - a.end).slice(0, 2);
    for (const e of this.pool) if (e.end <= consumed && !recent.includes(e)) return e;
    const e = { buf: new Uint8Array(this.chunk), end: Infinity };
    this.pool.push(e);
    return e;
  }
  async *chunks(): AsyncGenerator<Uint8Array, void, undefined> {
    for (;;) {
      await this.sink.flush();
      const e = this.take();
      e.end = Infinity;
      const n = await readInto(this.fd, e.buf);
      if (n === 0) return;
      this.bytes += n;
      e.end = this.bytes;
      this.onBytes?.(n);
      yield e.buf.subarray(0, n);
    }
  }
}

/** Opens a path, "-" (stdin) or a numeric descriptor for reading; size when it is a regular file. */
export function openInputFd(spec: string): { fd: number; size: number | undefined } {
  const fd = spec === '-' ? 0 : /^\d+$/.test(spec) ? Number(spec) : fs.openSync(spec, 'r');
  const st = fs.fstatSync(fd);
  if (st.isDirectory()) throw new Error(`${spec} is a directory`);
  return { fd, size: st.isFile() ? st.size : undefined };
}

const USAGE = `usage: ferry stream convert IN OUT [options]
  IN, OUT                 paths, "-" for stdin/stdout, or a numeric file descriptor
  --to v2|legacy          direction (default: v2 for a legacy input, legacy for a v2 input)
  --width auto|32|64      legacy toolstack width (input: default auto; output: required)
  --guest auto|pv|hvm     legacy guest type (default auto)
  --format libxl|libxc    v2 output framing (default libxl; an xl header keeps its place)
  --skip-qemu             leave an HVM image's qemu tail unconverted (libxc output)
  --json                  print a summary as JSON on stderr when done
  -v, --verbose           describe the stream while converting
`;

export async function run(argv: string[]): Promise<number> {
  let a;
  try {
    a = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        to: { type: 'string' },
        width: { type: 'string', short: 'w', default: 'auto' },
        guest: { type: 'string', short: 'g', default: 'auto' },
        format: { type: 'string', short: 'f', default: 'libxl' },
        'skip-qemu': { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        verbose: { type: 'boolean', short: 'v', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (e) {
    process.stderr.write(`ferry stream convert: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  const v = a.values;
  if (v.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (a.positionals.length !== 2) {
    process.stderr.write(USAGE);
    return 2;
  }
  const [inSpec, outSpec] = a.positionals as [string, string];
  const width = v.width as string;
  const guest = v.guest as string;
  const format = v.format as string;
  if (!['auto', '32', '64'].includes(width) || !['auto', 'pv', 'hvm'].includes(guest) || !['libxl', 'libxc'].includes(format) || (v.to && !['v2', 'legacy'].includes(v.to as string))) {
    process.stderr.write(`ferry stream convert: bad option value\n${USAGE}`);
    return 2;
  }
  let input;
  let fd: number;
  try {
    input = openInput(inSpec);
    fd = openOutputFd(outSpec);
  } catch (e) {
    process.stderr.write(`ferry stream convert: ${(e as Error).message}\n`);
    return 1;
  }
  const progress = new Progress(input.size, 'convert');
  const reader = new StreamReader(progress.track(input.source));
  const info = v.verbose ? (l: string) => process.stderr.write(l + '\n') : undefined;
  try {
    const isV2 = await sniffV2(reader);
    const to = (v.to as string | undefined) ?? (isV2 ? 'legacy' : 'v2');
    let summary: Record<string, unknown>;
    if (to === 'legacy') {
      if (!isV2) throw new UnsupportedStreamError('the input is not a v2 stream; only v2 converts to legacy');
      if (width === 'auto') {
        process.stderr.write('ferry stream convert: --width 32|64 is required for v2 -> legacy (the old host\'s toolstack width)\n');
        return 2;
      }
      const out = legacyFromV2(readerRemainder(reader), { width: Number(width) as 32 | 64 });
      const bytesOut = await writeToFd(out, fd);
      summary = { direction: 'v2->legacy', width: Number(width), bytesIn: reader.offset, bytesOut };
    } else {
      if (isV2) throw new UnsupportedStreamError('the input is already a v2 stream');
      const { output, summary: s } = convertLegacy(reader, {
        width: width === 'auto' ? 'auto' : (Number(width) as 32 | 64),
        guest: guest as 'auto' | 'pv' | 'hvm',
        format: format as 'libxl' | 'libxc',
        xl: 'auto',
        qemu: !v['skip-qemu'],
        onInfo: info,
      });
      await writeToFd(output, fd);
      summary = { direction: 'legacy->v2', ...s };
    }
    progress.finish();
    if (v.json) process.stderr.write(JSON.stringify(summary, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x)) + '\n');
    else process.stderr.write(`converted ${inSpec} -> ${outSpec} (${summary.direction as string})\n`);
    return 0;
  } catch (e) {
    progress.finish();
    process.stderr.write(`ferry stream convert: ${(e as Error).message}\n`);
    return isStreamCodecError(e) ? (e instanceof UnsupportedStreamError ? 2 : 1) : 2;
  } finally {
    if (fd > 2) fs.closeSync(fd);
  }
}

