import type { Writable } from 'node:stream';

/** Small async-iterable helpers; each holds a bounded number of bytes. */

/** Bytes read ahead between two stages of a transfer, so they overlap instead of taking turns. */
export const AHEAD = 4 * 1024 * 1024;

/** Yields `source` but keeps the latest chunk back until the next one arrives or `beforeLast` passes. */
export async function* holdLastChunk(
  source: AsyncIterable<Uint8Array>,
  beforeLast: () => void | Promise<void>,
): AsyncGenerator<Uint8Array> {
  let held: Uint8Array | undefined;
  for await (const c of source) {
    if (c.byteLength === 0) continue;
    if (held) yield held;
    held = c;
  }
  await beforeLast();
  if (held) yield held;
}

/**
 * Reads the first chunk now (so errors surface before any response header is sent) and returns
 * it together with an iterable of everything (first chunk included).
 */
export async function prime(source: AsyncIterable<Uint8Array>): Promise<AsyncIterable<Uint8Array>> {
  const it = source[Symbol.asyncIterator]();
  const first = await it.next();
  return (async function* () {
    if (first.done) return;
    yield first.value;
    for (;;) {
      const n = await it.next();
      if (n.done) return;
      yield n.value;
    }
  })();
}

/** Iterates a Node stream (or any async iterable of Buffers) as Uint8Array chunks. */
export async function* asBytes(source: AsyncIterable<unknown>): AsyncGenerator<Uint8Array> {
  for await (const c of source) {
    if (c instanceof Uint8Array) yield c;
    else if (typeof c === 'string') yield Buffer.from(c);
    else throw new Error('unexpected chunk type in a byte stream');
  }
}

/**
 * Writes every chunk to `out` with back-pressure, then ends it. Stops (closing the source)
 * when `out` closes early, e.g. the client went away.
 */
export async function writeAll(out: Writable, body: AsyncIterable<Uint8Array>, buffer = AHEAD): Promise<void> {
  // Socket-sized pieces (64 KiB from S3) go out corked, about 1 MiB per system call: on loopback
  // every write also runs the receiver's side of TCP, so fewer, larger writes cost less CPU.
  let corked = 0;
  for await (const c of body) {
    if (out.destroyed) return;
    if (corked === 0) out.cork();
    out.write(c);
    corked += c.byteLength;
    if (corked >= WRITE_BATCH) {
      out.uncork();
      corked = 0;
    }
    // Keep up to `buffer` bytes queued on the socket so reading the next piece overlaps sending this one.
    if (out.writableLength >= buffer) {
      if (corked) out.uncork();
      corked = 0;
      await drained(out);
    }
  }
  if (corked) out.uncork();
  if (!out.destroyed) out.end();
}

/** Bytes gathered (corked) into one write to the socket. */
const WRITE_BATCH = 1024 * 1024;

/**
 * The chunks of a request body, with back-pressure. Unlike a plain for-await over the stream,
 * stopping early does not destroy it: `discard()` lets the rest flow away unread, so the socket
 * stays usable and the client still reads the answer (a refusal) after sending everything.
 */
export interface RequestBody extends AsyncIterable<Uint8Array> {
  discard(): void;
}

export function bodyChunks(req: NodeJS.ReadableStream & { pause(): unknown; resume(): unknown }): RequestBody {
  const queue: Uint8Array[] = [];
  let queued = 0;
  let done = false;
  let failure: unknown;
  let attached = false;
  let wake: (() => void) | undefined;
  const notify = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const onData = (c: Buffer | string): void => {
    const b = typeof c === 'string' ? Buffer.from(c) : c;
    queue.push(b);
    queued += b.byteLength;
    // Read ahead up to AHEAD bytes while the consumer works, then let TCP push back.
    if (queued >= AHEAD) req.pause();
    notify();
  };
  const onEnd = (): void => {
    done = true;
    notify();
  };
  const onError = (e: unknown): void => {
    failure = e ?? new Error('request body failed');
    notify();
  };
  const onClose = (): void => {
    if (!done) failure ??= new Error('client closed the connection');
    notify();
  };
  const detach = (): void => {
    if (!attached) return;
    attached = false;
    req.off('data', onData);
    req.off('end', onEnd);
    req.off('error', onError);
    req.off('close', onClose);
  };
  return {
    discard(): void {
      detach();
      queue.length = 0;
      queued = 0;
      done = true;
      req.resume();
      notify();
    },
    [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
      if (!attached && !done) {
        attached = true;
        req.on('data', onData);
        req.on('end', onEnd);
        req.on('error', onError);
        req.on('close', onClose);
      }
      return {
        async next(): Promise<IteratorResult<Uint8Array>> {
          for (;;) {
            const c = queue.shift();
            if (c) {
              queued -= c.byteLength;
              if (queued < AHEAD && attached) req.resume();
              return { done: false, value: c };
            }
            if (failure) {
              detach();
              throw failure;
            }
            if (done) {
              detach();
              return { done: true, value: undefined };
            }
            const waiting = new Promise<void>((r) => (wake = r));
            req.resume();
            await waiting;
          }
        },
        async return(): Promise<IteratorResult<Uint8Array>> {
          detach();
          return { done: true, value: undefined };
        },
      };
    },
  };
}

/** Resolves on 'drain' or 'close', whichever comes first, leaving no listener behind. */
function drained(out: Writable): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      out.off('drain', done);
      out.off('close', done);
      resolve();
    };
    out.on('drain', done);
    out.on('close', done);
  });
}

/** Joins small chunks into pieces of at least `min` bytes (fewer, larger chunks: the codec and hashes run faster). */
export async function* coalesce(source: AsyncIterable<Uint8Array>, min: number): AsyncGenerator<Uint8Array> {
  let parts: Uint8Array[] = [];
  let n = 0;
  for await (const c of source) {
    if (c.byteLength >= min && n === 0) {
      yield c;
      continue;
    }
    parts.push(c);
    n += c.byteLength;
    if (n >= min) {
      yield parts.length === 1 ? parts[0]! : Buffer.concat(parts, n);
      parts = [];
      n = 0;
    }
  }
  if (n > 0) yield parts.length === 1 ? parts[0]! : Buffer.concat(parts, n);
}

/** The first chunk (undefined when empty) and an iterable of everything, the first chunk included. */
export async function peek(source: AsyncIterable<Uint8Array>): Promise<{ first: Uint8Array | undefined; all: AsyncIterable<Uint8Array> }> {
  const it = source[Symbol.asyncIterator]();
  const r = await it.next();
  const first = r.done ? undefined : r.value;
  return {
    first,
    all: (async function* () {
      if (first === undefined) return;
      yield first;
      for (let n = await it.next(); !n.done; n = await it.next()) yield n.value;
    })(),
  };
}

/**
 * Pulls from `source` in the background, up to `max` bytes ahead of the consumer, so a slow
 * consumer and a slow producer work at the same time. Stopping early closes the source.
 */
export async function* readAhead(source: AsyncIterable<Uint8Array>, max = AHEAD): AsyncGenerator<Uint8Array> {
  const it = source[Symbol.asyncIterator]();
  const queue: Uint8Array[] = [];
  let queued = 0;
  let done = false;
  let failure: { e: unknown } | undefined;
  let wakeConsumer: (() => void) | undefined;
  let wakeProducer: (() => void) | undefined;
  let stopped = false;
  let exhausted = false;
  const producer = (async () => {
    try {
      while (!stopped) {
        if (queued >= max) {
          await new Promise<void>((r) => (wakeProducer = r));
          continue;
        }
        const n = await it.next();
        if (n.done) {
          exhausted = true;
          break;
        }
        queue.push(n.value);
        queued += n.value.byteLength;
        wakeConsumer?.();
      }
    } catch (e) {
      exhausted = true;
      failure = { e };
    } finally {
      done = true;
      wakeConsumer?.();
    }
  })();
  try {
    for (;;) {
      const c = queue.shift();
      if (c) {
        queued -= c.byteLength;
        const w = wakeProducer;
        wakeProducer = undefined;
        w?.();
        yield c;
        continue;
      }
      if (failure) throw failure.e;
      if (done) return;
      await new Promise<void>((r) => (wakeConsumer = r));
      wakeConsumer = undefined;
    }
  } finally {
    stopped = true;
    const w = wakeProducer;
    wakeProducer = undefined;
    w?.();
    // Not awaited: a stalled source must not hold the consumer. The source is closed once its pending read settles.
    void producer.then(async () => {
      if (!exhausted) await it.return?.(undefined);
    }).catch(() => undefined);
  }
}
