/// <reference types="node" />
/**
 * Node adapters for the codec (the core itself never imports node:*).
 *
 * - fileChunks(pathOrFd): the chunks of a file or descriptor in 1 MiB reads, each
 *   into a fresh buffer (every view the codec hands out stays valid forever).
 * - pooledFileChunks(pathOrFd, releasedBefore): the same reads into a small pool
 *   of reused buffers: a buffer is refilled only once every byte it holds lies
 *   before `releasedBefore()`, an absolute offset the consumer advances when it
 *   no longer holds views of earlier bytes (verifyV2 advances it after each item).
 *   No page faults, no garbage: what lets the verifier run near the speed of `cat`.
 * - alignedBytes(n): a buffer that starts on a page boundary, for reads from the kernel.
 */
import * as fs from 'node:fs';

/**
 * n bytes starting on a page boundary: the memory of a WebAssembly.Memory, which engines map
 * page-aligned, or a plain Uint8Array where WebAssembly cannot be had (node --jitless, no address
 * space left). Why: the kernel copies a read into the caller's buffer with `rep movsb`, which on
 * the AMD EPYC hosts measured here runs at half speed into a buffer that is not 64-byte aligned.
 * A large plain Uint8Array comes from malloc, 16 bytes past a page boundary: reading 1 GiB from the
 * page cache in 512 KiB reads took 128-132 ms into one, 70-73 ms into this (C's read(2) into an
 * aligned buffer: 69 ms).
 */
export function alignedBytes(n: number): Uint8Array {
  const wasm = (globalThis as { WebAssembly?: typeof WebAssembly }).WebAssembly;
  if (wasm && n >= 4096) {
    const pages = Math.ceil(n / 65536);
    try {
      return new Uint8Array(new wasm.Memory({ initial: pages, maximum: pages }).buffer, 0, n);
    } catch {
      /* no address space for another memory: a plain buffer still works */
    }
  }
  return new Uint8Array(n);
}

// 1 MiB, into page-aligned buffers (alignedBytes). Verifying 1 GiB from the page cache, median of 5:
// 117 ms with 128 KiB reads, 110 ms with 256 KiB, 93 ms with 512 KiB, 76 ms with 1 MiB, 73 ms with
// 2 MiB (`cat` to /dev/null: 89 ms). Into malloc'd buffers, which are not 64-byte aligned, every size
// ran 105-178 ms and 128 KiB was best: the kernel's copy into a misaligned buffer is what made
// larger reads look slower.
export const READ_CHUNK = 1024 * 1024;

function openFd(file: string | number): { fd: number; own: boolean } {
  return typeof file === 'number' ? { fd: file, own: false } : { fd: fs.openSync(file, 'r'), own: true };
}

function readAsync(fd: number, buf: Uint8Array, off: number, len: number): Promise<number> {
  return new Promise((res, rej) => fs.read(fd, buf, off, len, null, (err, n) => (err ? rej(err) : res(n))));
}

/** Fills buf from fd (short only at end of input); returns the byte count. */
async function fill(fd: number, buf: Uint8Array, sync = false): Promise<number> {
  let n = 0;
  while (n < buf.byteLength) {
    const got = sync ? fs.readSync(fd, buf, n, buf.byteLength - n, null) : await readAsync(fd, buf, n, buf.byteLength - n);
    if (got === 0) break;
    n += got;
  }
  return n;
}

/** Chunks of a file or descriptor, each read into a fresh buffer. */
export async function* fileChunks(file: string | number, chunkSize = READ_CHUNK): AsyncGenerator<Uint8Array, void, undefined> {
  const { fd, own } = openFd(file);
  try {
    for (;;) {
      const buf = new Uint8Array(chunkSize);
      const n = await fill(fd, buf);
      if (n === 0) return;
      yield buf.subarray(0, n);
      if (n < chunkSize) return;
    }
  } finally {
    if (own) fs.closeSync(fd);
  }
}

/**
 * Chunks of a file or descriptor read into reused buffers. `releasedBefore()`
 * must return an absolute offset such that the consumer holds no view of any
 * byte before it; buffers wholly before it are refilled. The pool grows only
 * while one record spans more buffers than it has.
 */
export async function* pooledFileChunks(file: string | number, releasedBefore: () => number, chunkSize = READ_CHUNK): AsyncGenerator<Uint8Array, void, undefined> {
  const { fd, own } = openFd(file);
  // Regular files: synchronous reads (page-cache copies of well under a millisecond;
  // a thread-pool round trip per read costs more than the copy). Pipes: async.
  const sync = fs.fstatSync(fd).isFile();
  const pool: { buf: Uint8Array; end: number }[] = [];
  let offset = 0;
  try {
    for (;;) {
      const safe = releasedBefore();
      let slot = pool.find((s) => s.end <= safe);
      if (!slot) {
        slot = { buf: alignedBytes(chunkSize), end: 0 };
        pool.push(slot);
      }
      slot.end = Number.POSITIVE_INFINITY; // in use until released
      const n = await fill(fd, slot.buf, sync);
      if (n === 0) return;
      offset += n;
      slot.end = offset;
      yield slot.buf.subarray(0, n);
      if (n < chunkSize) return;
    }
  } finally {
    if (own) fs.closeSync(fd);
  }
}
