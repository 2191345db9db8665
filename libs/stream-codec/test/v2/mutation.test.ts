/**
 * Mutation test: thousands of corrupted and truncated streams. Each must end in
 * success or in exactly one clean StreamCodecError (never a RangeError or
 * TypeError from a bad length or offset), in bounded time and memory.
 */
import { describe, expect, it } from 'vitest';
import { StreamCodecError } from '../../src/errors';
import { inspectStream } from '../../src/inspect';
import { REC } from '../../src/v2/constants';
import { synthStream, type SynthOptions } from '../../src/v2/synth';
import type { V2Item } from '../../src/v2/types';
import { verifyV2 } from '../../src/verify';
import { encodeItems, randomChunks, rng } from './helpers';
import { mutate } from './mutate';

const BASES: SynthOptions[] = [
  { guest: 'pv', framing: 'xl', pages: 6, batch: 3, xtabEvery: 4 },
  { guest: 'hvm', framing: 'libxl', byteOrder: 'big', pages: 5, batch: 2, vcpus: 2 },
  { guest: 'pv', framing: 'libxc', version: 2, pages: 4, guestWidth: 4 },
  { guest: 'hvm', framing: 'xl', pages: 3, xtabEvery: 2 },
];

/** A PV stream with a checkpoint (libxc CHECKPOINT, libxl CHECKPOINT_END, more records). */
function checkpointed(): V2Item[] {
  const l = [...synthStream({ guest: 'pv', framing: 'libxl', pages: 3 })];
  const at = l.findIndex((i) => i.kind === 'libxc-record' && i.type === REC.X86_TSC_INFO);
  const E = new Uint8Array(0);
  l.splice(
    at,
    0,
    { kind: 'libxc-record', offset: 0, type: REC.CHECKPOINT, length: 0, padding: E, body: { kind: 'empty' } },
    { kind: 'libxl-record', offset: 0, type: 4, length: 0, padding: E, body: { kind: 'empty' } },
  );
  return l;
}

async function outcome(b: Uint8Array, seed: number, inspect: boolean): Promise<string> {
  const chunks = [...randomChunks(b, seed, 700)];
  try {
    if (inspect) {
      const rep = await inspectStream(chunks);
      return rep.verdict.valid ? 'ok' : 'error';
    }
    await verifyV2(chunks);
    return 'ok';
  } catch (e) {
    if (e instanceof StreamCodecError) return 'error';
    throw new Error(`seed ${seed}: not a StreamCodecError: ${String(e)}\n${(e as Error).stack}`);
  }
}

describe('mutation: corrupted and truncated streams fail cleanly', () => {
  it('4000 mutants: success or one StreamCodecError, each fast, memory bounded', async () => {
    const bases = [...(await Promise.all(BASES.map((o) => encodeItems(synthStream(o))))), await encodeItems(checkpointed())];
    const r = rng(20261125);
    const counts = { ok: 0, error: 0 };
    const heap0 = process.memoryUsage().heapUsed;
    let slowest = 0;
    for (let i = 0; i < 4000; i++) {
      const base = bases[i % bases.length]!;
      let m = mutate(base, r);
      if (r() < 0.2) m = mutate(m, r);
      const t = performance.now();
      const o = await outcome(m, i + 1, i % 10 === 0);
      slowest = Math.max(slowest, performance.now() - t);
      counts[o as 'ok' | 'error']++;
    }
    const heapGrowth = process.memoryUsage().heapUsed - heap0;
    expect(counts.error).toBeGreaterThan(1500); // most bytes are page contents, which any value fits
    expect(counts.ok).toBeGreaterThan(0); // some mutations hit page contents only
    expect(slowest).toBeLessThan(2000);
    expect(heapGrowth).toBeLessThan(256 * 1024 * 1024);
  }, 120000);

  it('every truncation of a stream is an error', async () => {
    const b = await encodeItems(checkpointed());
    for (let cut = 0; cut < b.byteLength; cut += 13) expect(await outcome(b.subarray(0, cut), cut, false)).toBe('error');
  }, 60000);
});
