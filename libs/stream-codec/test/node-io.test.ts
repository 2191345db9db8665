/**
 * The Node adapters' reads (src/node): pooled chunks come back complete and in order whatever
 * the chunk size, and the page-aligned buffers they read into behave as plain bytes, with a plain
 * buffer where WebAssembly cannot be had.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { alignedBytes, fileChunks, pooledFileChunks } from '../src/node/index';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-node-io-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('alignedBytes', () => {
  it('gives n writable bytes, zeroed, that fs reads fill', () => {
    const b = alignedBytes(100_000);
    expect(b.byteLength).toBe(100_000);
    expect(b.every((x) => x === 0)).toBe(true);
    const file = path.join(tmp, 'a.bin');
    fs.writeFileSync(file, Buffer.alloc(100_000, 7));
    const fd = fs.openSync(file, 'r');
    try {
      expect(fs.readSync(fd, b, 0, b.byteLength, null)).toBe(100_000);
    } finally {
      fs.closeSync(fd);
    }
    expect(b.every((x) => x === 7)).toBe(true);
  });

  it('is a WebAssembly memory (whole 64 KiB pages), or a plain buffer without WebAssembly and for small sizes', () => {
    expect(alignedBytes(70_000).buffer.byteLength).toBe(131_072);
    const g = globalThis as { WebAssembly?: unknown };
    const saved = g.WebAssembly;
    g.WebAssembly = undefined;
    try {
      const plain = alignedBytes(70_000);
      expect(plain.byteLength).toBe(70_000);
      expect(plain.buffer.byteLength).toBe(70_000);
    } finally {
      g.WebAssembly = saved;
    }
    expect(alignedBytes(10).buffer.byteLength).toBe(10);
  });
});

describe('file chunks', () => {
  const data = Buffer.alloc(3 * 1024 * 1024 + 12345);
  for (let i = 0; i < data.length; i++) data[i] = (i * 31 + (i >> 10)) & 0xff;
  const file = path.join(tmp, 'data.bin');
  fs.writeFileSync(file, data);

  it.each([4096, 65536, 1024 * 1024])('pooled reads of %i bytes give every byte in order', async (size) => {
    const parts: Buffer[] = [];
    let released = 0;
    let at = 0;
    for await (const c of pooledFileChunks(file, () => released, size)) {
      parts.push(Buffer.from(c)); // copied: the buffer is refilled once released
      at += c.byteLength;
      released = at;
    }
    expect(Buffer.concat(parts).equals(data)).toBe(true);
  });

  it('fresh reads give every byte in order', async () => {
    const parts: Uint8Array[] = [];
    for await (const c of fileChunks(file)) parts.push(c);
    expect(Buffer.concat(parts).equals(data)).toBe(true);
  });
});
