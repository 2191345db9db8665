import { TruncatedStreamError } from './errors';
import { chunksOf, concatBytes, type ByteSource } from './source';

/**
 * A pull reader over a chunked byte source. It never copies what it can hand out
 * as a view: `read` returns a subarray of the caller's chunk when the bytes lie in
 * one chunk (and copies only the few bytes that straddle a boundary), `segments`
 * and `stream` return views only. It buffers at most what a single call asks for
 * plus one chunk, so memory is bounded by the caller's requests, never by the input.
 */
export class StreamReader {
  private readonly it: AsyncIterator<Uint8Array>;
  private readonly queue: Uint8Array[] = [];
  private qHead = 0; // index of the first live chunk in queue
  private cHead = 0; // offset into queue[qHead]
  private buffered = 0;
  private eof = false;
  /** Absolute offset of the next unread byte. */
  offset = 0;
  /**
   * The consumer holds no view of any byte before this offset, so a source that
   * recycles its buffers may refill them (node: pooledFileChunks, the CLI's
   * PooledInput). `discard` and `passOn` advance it as they go; a consumer that
   * copies what it keeps may also set it. It never passes `offset`.
   */
  unheldBefore = 0;
  /** Called with every chunk as it arrives (progress, hashing the input). */
  onChunk: ((chunk: Uint8Array) => void) | undefined;
  /**
   * Set by a host that can move input bytes to where the output goes without reading them (the
   * CLI's PooledInput: a kernel copy between descriptors). passOn hands it whatever part of its
   * bytes is not buffered yet, instead of pulling and yielding them; the host must first write out
   * everything the consumer was given. It resolves with the bytes moved (0: the input ended) or
   * null when it cannot (passOn then reads them as usual, and does not ask again). Never used
   * while onChunk is set, which must see every byte.
   */
  forward: ((n: number) => Promise<number | null>) | undefined;

  constructor(source: ByteSource) {
    // An async iterable is pulled directly (pull() skips empty chunks): one generator fewer per chunk.
    const direct = typeof source === 'object' && source !== null && Symbol.asyncIterator in source && typeof (source as { getReader?: unknown }).getReader !== 'function';
    this.it = direct ? (source as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]() : chunksOf(source)[Symbol.asyncIterator]();
  }

  /** Bytes already buffered and not yet consumed. */
  get available(): number {
    return this.buffered;
  }

  private async pull(): Promise<boolean> {
    if (this.eof) return false;
    let r = await this.it.next();
    while (!r.done && r.value.byteLength === 0) r = await this.it.next();
    if (r.done) {
      this.eof = true;
      return false;
    }
    if (this.qHead > 64 && this.qHead * 2 > this.queue.length) {
      this.queue.splice(0, this.qHead);
      this.qHead = 0;
    }
    this.queue.push(r.value);
    this.buffered += r.value.byteLength;
    this.onChunk?.(r.value);
    return true;
  }

  /** Buffers at least n bytes; false if the input ends first. */
  async ensure(n: number): Promise<boolean> {
    while (this.buffered < n) if (!(await this.pull())) return false;
    return true;
  }

  /** True when every byte has been consumed and the input has ended. */
  async atEnd(): Promise<boolean> {
    return this.buffered === 0 && !(await this.ensure(1));
  }

  private truncated(n: number, context: string): never {
    throw new TruncatedStreamError(this.offset + this.buffered, n - this.buffered, context);
  }

  /** Exactly n bytes: a view when contiguous, else a copy of just those n bytes. */
  async read(n: number, context: string): Promise<Uint8Array> {
    if (this.buffered < n && !(await this.ensure(n))) this.truncated(n, context);
    return this.take(n);
  }

  /** Like read, but returns at most n bytes without consuming them. */
  async peek(n: number): Promise<Uint8Array> {
    await this.ensure(n);
    const m = Math.min(n, this.buffered);
    const first = this.queue[this.qHead];
    if (first && first.byteLength - this.cHead >= m) return first.subarray(this.cHead, this.cHead + m);
    const parts: Uint8Array[] = [];
    let want = m;
    for (let i = this.qHead, off = this.cHead; want > 0; i++, off = 0) {
      const c = this.queue[i]!;
      const piece = c.subarray(off, off + Math.min(want, c.byteLength - off));
      parts.push(piece);
      want -= piece.byteLength;
    }
    return concatBytes(parts);
  }

  /** Exactly n bytes as views of the input chunks (no copy). */
  async segments(n: number, context: string): Promise<Uint8Array[]> {
    if (this.buffered < n && !(await this.ensure(n))) this.truncated(n, context);
    const out: Uint8Array[] = [];
    let want = n;
    while (want > 0) {
      const piece = this.takeUpTo(want);
      out.push(piece);
      want -= piece.byteLength;
    }
    return out;
  }

  /**
   * Exactly n bytes, yielded as views while they arrive: constant memory however
   * large n is. Throws TruncatedStreamError if the input ends first.
   */
  async *stream(n: number, context: string): AsyncGenerator<Uint8Array, void, undefined> {
    let want = n;
    while (want > 0) {
      if (this.buffered === 0 && !(await this.pull())) this.truncated(want, context);
      const piece = this.takeUpTo(want);
      want -= piece.byteLength;
      yield piece;
    }
  }

  /**
   * Like `stream`, for a caller that passes each piece on and keeps nothing it read before:
   * each time the consumer asks for the next piece, `unheldBefore` moves to the current
   * offset. With `forward` set, the bytes not buffered yet may go to the output without being
   * yielded at all. (Whoever the pieces went to downstream must be done with them before a recycling
   * source refills their buffer; convert-legacy-stream's source flushes its writer first.)
   */
  async *passOn(n: number, context: string): AsyncGenerator<Uint8Array, void, undefined> {
    let want = n;
    this.unheldBefore = this.offset;
    while (want > 0) {
      if (this.buffered === 0 && this.forward && !this.onChunk && !this.eof) {
        const moved = await this.forward(want);
        if (moved === null) this.forward = undefined;
        else if (moved > 0) {
          this.offset += moved;
          this.unheldBefore = this.offset;
          want -= moved;
          continue;
        }
      }
      if (this.buffered === 0 && !(await this.pull())) this.truncated(want, context);
      const piece = this.takeUpTo(want);
      want -= piece.byteLength;
      yield piece;
      this.unheldBefore = this.offset;
    }
  }

  /** Discards exactly n bytes without buffering them all. */
  async skip(n: number, context: string): Promise<void> {
    for await (const _ of this.stream(n, context)) {
      /* discard */
    }
  }

  /**
   * Discards exactly n bytes, declaring after each piece that the caller holds
   * no view before the new offset (`unheldBefore`): with a recycling source, a
   * long run of discarded bytes flows through the same few buffers. Only for
   * callers that keep nothing they read earlier as a view.
   */
  async discard(n: number, context: string): Promise<void> {
    // passOn's loop without its generator: this runs once per PAGE_DATA record of every verify.
    let want = n;
    this.unheldBefore = this.offset;
    while (want > 0) {
      if (this.buffered === 0 && !(await this.pull())) this.truncated(want, context);
      want -= this.takeUpTo(want).byteLength;
      this.unheldBefore = this.offset;
    }
  }

  private takeUpTo(n: number): Uint8Array {
    const c = this.queue[this.qHead]!;
    const avail = c.byteLength - this.cHead;
    const m = Math.min(n, avail);
    const v = c.subarray(this.cHead, this.cHead + m);
    this.consume(m, avail);
    return v;
  }

  private take(n: number): Uint8Array {
    const c = this.queue[this.qHead];
    if (n === 0) return new Uint8Array(0);
    const avail = c!.byteLength - this.cHead;
    if (avail >= n) {
      const v = c!.subarray(this.cHead, this.cHead + n);
      this.consume(n, avail);
      return v;
    }
    const out = new Uint8Array(n);
    let o = 0;
    while (o < n) {
      const piece = this.takeUpTo(n - o);
      out.set(piece, o);
      o += piece.byteLength;
    }
    return out;
  }

  private consume(m: number, availInHead: number): void {
    this.buffered -= m;
    this.offset += m;
    if (m === availInHead) {
      this.queue[this.qHead] = EMPTY;
      this.qHead++;
      this.cHead = 0;
    } else {
      this.cHead += m;
    }
  }
}

const EMPTY = new Uint8Array(0);
