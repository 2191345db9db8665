/** Small stream stages of the data path: rate limits, hashing/counting, chunk splitting. */
import { createHash, type Hash } from 'node:crypto';
import { sleep } from './control-plane';

/** A token bucket in virtual time: take(n) waits until n more bytes fit under the rate. Shared limiters serialize fairly. */
export class RateLimiter {
  private next = 0;
  constructor(
    readonly bytesPerSec: number,
    private readonly burstMs = 50,
  ) {}
  async take(n: number, signal?: AbortSignal): Promise<void> {
    if (this.bytesPerSec <= 0) return;
    const now = Date.now();
    const start = Math.max(now - this.burstMs, this.next);
    this.next = start + (n / this.bytesPerSec) * 1000;
    const wait = this.next - now - this.burstMs;
    if (wait > 0) await sleep(wait, signal);
  }
}

/** Applies every limiter (per migration, per host) to the stream; big chunks are cut so pacing stays smooth. */
export async function* throttle(source: AsyncIterable<Uint8Array>, limiters: (RateLimiter | null)[], signal?: AbortSignal): AsyncGenerator<Uint8Array, void, undefined> {
  const active = limiters.filter((l): l is RateLimiter => !!l && l.bytesPerSec > 0);
  if (!active.length) {
    yield* source;
    return;
  }
  const slice = Math.max(16 * 1024, Math.min(...active.map((l) => Math.floor(l.bytesPerSec / 20))));
  for await (const chunk of source) {
    for (let o = 0; o < chunk.byteLength; o += slice) {
      const part = chunk.subarray(o, Math.min(chunk.byteLength, o + slice));
      for (const l of active) await l.take(part.byteLength, signal);
      yield part;
    }
  }
}

/**
 * Counts and hashes (sha256) what flows through. (Hashing on a worker thread was tried: the copy and
 * messaging cost more CPU than they saved on a 2-core host.)
 */
export class Tap {
  bytes = 0;
  private readonly hash: Hash | null;
  private hex: string | null = null;
  /** `hash: false` only counts (a stream someone else checks: the store's GET checks every block against its recorded CRC-32 and cuts the transfer on a mismatch). */
  constructor(
    private readonly onBytes?: (total: number) => void,
    opts: { hash?: boolean } = {},
  ) {
    this.hash = opts.hash === false ? null : createHash('sha256');
  }
  async *pipe(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array, void, undefined> {
    for await (const chunk of source) {
      this.hash?.update(chunk);
      this.bytes += chunk.byteLength;
      this.onBytes?.(this.bytes);
      yield chunk;
    }
  }
  /** sha256 (hex) of everything that went through. */
  async sha256(): Promise<string> {
    if (!this.hash) throw new Error('this tap only counts');
    this.hex ??= this.hash.digest('hex');
    return this.hex;
  }
}
