/**
 * Per-stage costs of the sim data path in one process (no network): render+encode (source),
 * sha256, the codec's verifying tee, restore (decode + page checks) on the target.
 *   node apps/cli/bin/run-ts.js apps/host-agent/bench/stages.ts [MiB]
 */
import { createHash } from 'node:crypto';
import { verifyingTee } from '@ferry/stream-codec';
import { GuestMemory, renderPages } from '../src/sim/memory';
import { readImage, writeV2 } from '../src/sim/streams';

const MIB = Number(process.argv[2] ?? 256);
const pages = MIB * 256;

async function* batches(mem: GuestMemory): AsyncGenerator<{ pfns: Uint32Array; data: Uint8Array }> {
  for (let i = 0; i < pages; i += 1024) {
    const pfns = Uint32Array.from({ length: Math.min(1024, pages - i) }, (_, k) => i + k);
    yield { pfns, data: renderPages(mem.seed, pfns, mem.versions) };
  }
}

async function main(): Promise<void> {
  const mem = GuestMemory.fresh(5, pages);
  for (let pass = 1; pass <= 2; pass++) {
    let t = performance.now();
    const chunks: Uint8Array[] = [];
    for await (const c of writeV2({ guest: 'pv', guestWidth: 64, vcpus: 2, pages, xenVersion: '4.17', batches: batches(mem) })) chunks.push(c);
    const enc = performance.now() - t;
    t = performance.now();
    const h = createHash('sha256');
    for (const c of chunks) h.update(c);
    h.digest();
    const sha = performance.now() - t;
    t = performance.now();
    const v = verifyingTee(chunks);
    for await (const c of v.output) void c;
    await v.facts;
    const ver = performance.now() - t;
    t = performance.now();
    const target = new GuestMemory(0, new Uint32Array(pages), 'missing');
    await readImage({ xenVersion: '4.17', bitness: 64, streamFormat: 'v2' }, (async function* () {
      yield* chunks;
    })(), target);
    const rd = performance.now() - t;
    console.log(`pass ${pass}, ${MIB} MiB: render+encode ${enc.toFixed(0)} ms, sha256 ${sha.toFixed(0)} ms, verify ${ver.toFixed(0)} ms, restore ${rd.toFixed(0)} ms, digest ${target.digest() === mem.digest() ? 'equal' : 'DIFFERS'}`);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
