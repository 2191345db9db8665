import * as fs from 'node:fs';
import type { Writable } from 'node:stream';

/** Read size for files: large reads keep the codec at the speed of the disk. */
export const READ_CHUNK = 4 * 1024 * 1024;

export interface Input {
  source: AsyncIterable<Uint8Array>;
  /** Total size when known (regular files), for progress and ETA. */
  size: number | undefined;
  name: string;
}

/**
 * Opens "-" (stdin), a numeric file descriptor (as Xen's tools accept, e.g. when
 * libxl hands over a pipe) or a path.
 */
export function openInput(spec: string | undefined): Input {
  if (spec === undefined || spec === '-' || spec === '0') return fromFd(0, 'stdin');
  if (/^\d+$/.test(spec)) return fromFd(Number(spec), `fd ${spec}`);
  const st = fs.statSync(spec);
  if (st.isDirectory()) throw new Error(`${spec} is a directory`);
  return {
    source: fs.createReadStream(spec, { highWaterMark: READ_CHUNK }),
    size: st.isFile() ? st.size : undefined,
    name: spec,
  };
}

function fromFd(fd: number, name: string): Input {
  let size: number | undefined;
  try {
    const st = fs.fstatSync(fd);
    if (st.isFile()) size = st.size;
  } catch {
    throw new Error(`cannot read ${name}: bad file descriptor`);
  }
  return { source: fs.createReadStream('', { fd, highWaterMark: READ_CHUNK, autoClose: fd > 2 }), size, name };
}

/** Opens "-" (stdout), a numeric file descriptor or a path for writing. */
export function openOutput(spec: string | undefined): { sink: Writable; name: string } {
  if (spec === undefined || spec === '-' || spec === '1') return { sink: fs.createWriteStream('', { fd: 1, autoClose: false }), name: 'stdout' };
  if (/^\d+$/.test(spec)) return { sink: fs.createWriteStream('', { fd: Number(spec), autoClose: true }), name: `fd ${spec}` };
  return { sink: fs.createWriteStream(spec), name: spec };
}

/**
 * Writes chunks with backpressure; resolves when everything is flushed.
 * Chunks are handed to the sink as they are (views, no copies).
 */
export async function writeAll(chunks: AsyncIterable<Uint8Array>, sink: Writable): Promise<void> {
  for await (const c of chunks) {
    if (!sink.write(c)) await new Promise<void>((res, rej) => {
      const onErr = (e: Error) => { sink.off('drain', onDrain); rej(e); };
      const onDrain = () => { sink.off('error', onErr); res(); };
      sink.once('drain', onDrain);
      sink.once('error', onErr);
    });
  }
  await new Promise<void>((res, rej) => {
    sink.once('error', rej);
    sink.end(() => res());
  });
}

/** A progress bar on stderr, shown only on a terminal; a no-op otherwise. */
export class Progress {
  private done = 0;
  private last = 0;
  private readonly started = Date.now();
  private readonly enabled: boolean;
  constructor(
    private readonly total: number | undefined,
    private readonly label: string,
    enabled = process.stderr.isTTY === true,
  ) {
    this.enabled = enabled;
  }
  /** Wraps a source so every chunk read advances the bar. */
  track(source: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
    if (!this.enabled) return source;
    const add = (n: number): void => this.add(n);
    return (async function* () {
      for await (const c of source) {
        add(c.byteLength);
        yield c;
      }
    })();
  }
  add(n: number): void {
    this.done += n;
    const now = Date.now();
    if (!this.enabled || now - this.last < 100) return;
    this.last = now;
    this.render();
  }
  private render(): void {
    const secs = Math.max((Date.now() - this.started) / 1000, 0.001);
    const rate = this.done / secs;
    const mb = (n: number) => (n / 1048576).toFixed(0);
    let line: string;
    if (this.total) {
      const frac = Math.min(this.done / this.total, 1);
      const width = 30;
      const fill = Math.round(frac * width);
      const eta = rate > 0 ? Math.max(0, (this.total - this.done) / rate) : 0;
      line = `${this.label} [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${(frac * 100).toFixed(0)}% ${mb(this.done)}/${mb(this.total)} MiB ${mb(rate)} MiB/s ETA ${eta.toFixed(0)}s`;
    } else {
      line = `${this.label} ${mb(this.done)} MiB ${mb(rate)} MiB/s`;
    }
    process.stderr.write(`\r${line}\x1b[K`);
  }
  finish(): void {
    if (this.enabled) process.stderr.write('\r\x1b[K');
  }
}
