/**
 * The wire protocol of `xl migrate` / `xl migrate-receive`, as the agents see it in the middle.
 *
 * Sender (xl migrate, through its transport command's stdin) -> receiver (xl migrate-receive's stdin):
 *   the xl save header with the domain config, then the libxl v2 stream up to its END record, then
 *   GO (after READY came back). Receiver -> sender: BANNER first, READY once the domain is built
 *   (paused), then REPORT and one status byte after GO (0: started; else the receiver destroyed its
 *   copy and sends GO back, giving the domain back to the sender).
 * Nothing delimits the v2 stream but its own END record: the same byte stream carries GO right after
 * it, so the agents walk the records (V2Walker) to find where the stream ends.
 */
import { Buffer } from 'node:buffer';
import type { Readable } from 'node:stream';
import { DHDR_SIZE, IHDR_OPT_BIG_ENDIAN, IHDR_SIZE, LIBXL_HDR_SIZE, LIBXL_IDENT, LIBXL_OPT_BIG_ENDIAN, LIBXL_REC, REC, RHDR_SIZE, XL_BYTEORDER_MARKER, XL_HDR_SIZE, XL_MAGIC, XL_MANDATORY_FLAG_STREAMV2 } from '@ferry/stream-codec';

/** The receiver's first words (no terminating NUL on the wire). */
export const XL_BANNER = Buffer.from('xl migration receiver ready, send binary domain data.\n', 'latin1');
/** Receiver: the domain is built and paused; may it start? (NUL-terminated on the wire, as every message below.) */
export const XL_READY = Buffer.from('domain received, ready to unpause\0', 'latin1');
/** Sender -> receiver: start it (the sender's point of no return). Receiver -> sender after a failed start: take it back. */
export const XL_GO = Buffer.from('domain is yours, you are cleared to unpause\0', 'latin1');
/** Receiver: followed by one status byte (0 = the domain started). */
export const XL_REPORT = Buffer.from('my copy unpause results are as follows\0', 'latin1');

export class XlProtocolError extends Error {
  override name = 'XlProtocolError';
}

export interface PageBatch {
  /** First pfn of the PAGE_DATA record. */
  firstPfn: number;
  count: number;
  /** Record bytes, header and padding included. */
  bytes: number;
}

export interface WalkerEvents {
  onPageBatch?(b: PageBatch): void;
  /** The first libxc record after page data that is not page data: memory is all sent (the domain is suspended). */
  onMemoryEnd?(): void;
}

type State = 'xl-header' | 'xl-optional' | 'libxl-header' | 'libxl-record' | 'libxl-body' | 'image-header' | 'domain-header' | 'libxc-record' | 'page-head' | 'libxc-body' | 'done';

const pad8 = (n: number): number => (n + 7) & ~7;

/**
 * Walks the sender's byte stream record by record without keeping any of it: it only reads headers
 * (never more than 48 bytes at a time) and skips bodies by count, so a lying length costs a long
 * skip, never an allocation. `feed` says how many bytes of a chunk belong to the v2 stream; once
 * the libxl END record is through, `done` is true and the rest of the chunk is the handshake's.
 */
export class V2Walker {
  private state: State = 'xl-header';
  private need = XL_HDR_SIZE;
  private readonly head = Buffer.alloc(XL_HDR_SIZE);
  private have = 0;
  private skip = 0;
  private libxlLE = true;
  private libxcLE = true;
  private recType = 0;
  private recLen = 0;
  private pagesSeen = false;
  private memoryEnded = false;
  bytes = 0;

  constructor(private readonly events: WalkerEvents = {}) {}

  get done(): boolean {
    return this.state === 'done';
  }

  /** Bytes of `chunk` that belong to the v2 stream (all of it until the END record). */
  feed(chunk: Uint8Array): number {
    let i = 0;
    while (i < chunk.length && this.state !== 'done') {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - i);
        this.skip -= n;
        i += n;
        continue;
      }
      const n = Math.min(this.need - this.have, chunk.length - i);
      this.head.set(chunk.subarray(i, i + n), this.have);
      this.have += n;
      i += n;
      if (this.have === this.need) {
        this.have = 0;
        this.onHead(this.head.subarray(0, this.need));
      }
    }
    this.bytes += i;
    return i;
  }

  private expect(state: State, need: number): void {
    this.state = state;
    this.need = need;
  }

  private skipThen(n: number, state: State, need: number): void {
    this.expect(state, need);
    this.skip = n;
  }

  private u32(b: Buffer, off: number, le: boolean): number {
    return le ? b.readUInt32LE(off) : b.readUInt32BE(off);
  }

  private onHead(h: Buffer): void {
    switch (this.state) {
      case 'xl-header': {
        if (h.subarray(0, 32).toString('latin1') !== XL_MAGIC) throw new XlProtocolError('migration stream does not start with the xl header');
        const le = h.readUInt32LE(32) === XL_BYTEORDER_MARKER;
        if (!le && h.readUInt32BE(32) !== XL_BYTEORDER_MARKER) throw new XlProtocolError('xl header: unknown byte order marker');
        if ((this.u32(h, 36, le) & XL_MANDATORY_FLAG_STREAMV2) === 0) throw new XlProtocolError('xl header: the stream is not v2 (a Xen < 4.6 sender)');
        this.skipThen(this.u32(h, 44, le), 'libxl-header', LIBXL_HDR_SIZE);
        return;
      }
      case 'libxl-header':
        if (h.subarray(0, 8).toString('latin1') !== LIBXL_IDENT) throw new XlProtocolError('no libxl stream header after the xl header');
        this.libxlLE = (h.readUInt32BE(12) & LIBXL_OPT_BIG_ENDIAN) === 0;
        this.expect('libxl-record', RHDR_SIZE);
        return;
      case 'libxl-record': {
        const type = this.u32(h, 0, this.libxlLE);
        const len = this.u32(h, 4, this.libxlLE);
        if (type === LIBXL_REC.END) {
          if (len !== 0) throw new XlProtocolError('libxl END record with a body');
          this.state = 'done';
        } else if (type === LIBXL_REC.LIBXC_CONTEXT) this.skipThen(pad8(len), 'image-header', IHDR_SIZE);
        else this.skipThen(pad8(len), 'libxl-record', RHDR_SIZE);
        return;
      }
      case 'image-header':
        this.libxcLE = (h.readUInt16BE(16) & IHDR_OPT_BIG_ENDIAN) === 0;
        this.expect('domain-header', DHDR_SIZE);
        return;
      case 'domain-header':
        this.expect('libxc-record', RHDR_SIZE);
        return;
      case 'libxc-record': {
        this.recType = this.u32(h, 0, this.libxcLE);
        this.recLen = this.u32(h, 4, this.libxcLE);
        if (this.recType === REC.PAGE_DATA && this.recLen >= 16) {
          this.expect('page-head', 16);
          return;
        }
        if (this.pagesSeen && !this.memoryEnded && this.recType !== REC.PAGE_DATA) {
          this.memoryEnded = true;
          this.events.onMemoryEnd?.();
        }
        if (this.recType === REC.END) this.skipThen(pad8(this.recLen), 'libxl-record', RHDR_SIZE);
        else this.skipThen(pad8(this.recLen), 'libxc-record', RHDR_SIZE);
        return;
      }
      case 'page-head': {
        const count = this.u32(h, 0, this.libxcLE);
        const entry = this.libxcLE ? h.readBigUInt64LE(8) : h.readBigUInt64BE(8);
        this.pagesSeen = true;
        this.events.onPageBatch?.({ firstPfn: Number(entry & 0xf_ffff_ffff_ffffn), count, bytes: RHDR_SIZE + pad8(this.recLen) });
        this.skipThen(pad8(this.recLen) - 16, 'libxc-record', RHDR_SIZE);
        return;
      }
      default:
        throw new XlProtocolError(`walker in state ${this.state}`);
    }
  }
}

/** One pre-copy round as the stream shows it: PAGE_DATA batches in ascending pfn order. */
export interface WireRound {
  round: number;
  startedAt: number;
  bytes: number;
  pages: number;
  endedAt: number;
}

/**
 * Pre-copy rounds from the page batches: libxc sends each round's pages in ascending pfn order, so a
 * batch starting below the previous one starts a new round. The round in flight when memory ends is
 * the stop-copy (sent with the domain suspended); when the final dirty set is empty, that is the
 * last pre-copy round instead and the downtime measured from its start is an upper bound.
 */
export class RoundTracker {
  readonly rounds: WireRound[] = [];
  private lastPfn = -1;
  memoryEndedAt = 0;

  constructor(
    private readonly onRound?: (done: WireRound, next: WireRound) => void,
    private readonly now: () => number = Date.now,
  ) {}

  batch(b: PageBatch): void {
    const t = this.now();
    let cur = this.rounds[this.rounds.length - 1];
    if (!cur || b.firstPfn < this.lastPfn) {
      const next: WireRound = { round: this.rounds.length + 1, startedAt: t, bytes: 0, pages: 0, endedAt: t };
      this.rounds.push(next);
      if (cur) this.onRound?.(cur, next);
      cur = next;
    }
    this.lastPfn = b.firstPfn;
    cur.bytes += b.bytes;
    cur.pages += b.count;
    cur.endedAt = t;
  }

  memoryEnd(): void {
    this.memoryEndedAt = this.now();
  }

  /** When the domain was suspended, as near as the stream tells: the start of the last round. */
  get pausedAt(): number {
    return this.rounds[this.rounds.length - 1]?.startedAt ?? this.memoryEndedAt;
  }
}

/**
 * Reads exactly `n` bytes (a handshake message: tens of bytes) from a paused-mode stream. Rejects if
 * the stream ends or fails first.
 */
export async function readExactly(r: Readable, n: number, what: string): Promise<Buffer> {
  for (;;) {
    const b = r.read(n) as Buffer | null;
    if (b) {
      if (b.length < n) throw new XlProtocolError(`${what}: the stream ended after ${b.length} of ${n} bytes`);
      return b;
    }
    if (r.readableEnded || r.destroyed) throw new XlProtocolError(`${what}: the stream ended`);
    await readableOrEnd(r);
  }
}

/** Reads whatever is buffered (waiting for some); null at the end of the stream. */
export async function readSome(r: Readable): Promise<Buffer | null> {
  for (;;) {
    const b = r.read() as Buffer | null;
    if (b) return b;
    if (r.readableEnded || r.destroyed) return null;
    await readableOrEnd(r);
  }
}

function readableOrEnd(r: Readable): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      r.off('readable', done);
      r.off('end', done);
      r.off('close', done);
      r.off('error', done);
      resolve();
    };
    r.on('readable', done);
    r.on('end', done);
    r.on('close', done);
    r.on('error', done);
  });
}

/** Reads `msg` exactly from `r`, or throws saying what came instead. */
export async function expectMessage(r: Readable, msg: Buffer, what: string): Promise<Buffer> {
  const b = await readExactly(r, msg.length, what);
  if (!b.equals(msg)) throw new XlProtocolError(`${what}: unexpected bytes ${JSON.stringify(b.toString('latin1').slice(0, 60))}`);
  return b;
}

/**
 * The sender's v2 stream out of `r`, chunk by chunk, ending exactly after the libxl END record; any
 * bytes after it are pushed back into `r` for the handshake. Throws if `r` ends first.
 */
export async function* v2StreamOf(r: Readable, walker: V2Walker): AsyncGenerator<Uint8Array, void, undefined> {
  while (!walker.done) {
    const chunk = await readSome(r);
    if (!chunk) throw new XlProtocolError(`the migration stream ended after ${walker.bytes} bytes, before its END record`);
    const n = walker.feed(chunk);
    if (n < chunk.length) r.unshift(chunk.subarray(n));
    yield n === chunk.length ? chunk : chunk.subarray(0, n);
  }
}
