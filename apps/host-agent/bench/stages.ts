import { createHash } from 'node:crypto';
import { writeV2 } from '../src/sim/streams';
import { GuestMemory, renderPages } from '../src/sim/memory';
import { readImage } from '../src/sim/streams';
import { verifyingTee, decodeV2 } from '@ferry/stream-codec';
const MIB = 256; const pages = MIB * 256;
async function* batches(mem: GuestMemory) { for (let i = 0; i < pages; i += 1024) { const pf = Uint32Array.from({length: 1024}, (_, k) => i + k); yield { pfns: pf, data: renderPages(mem.seed, pf, mem.versions) }; } }
async function main() {
  const mem = GuestMemory.fresh(5, pages);
  let t = performance.now(); let n = 0;
  for await (const b of batches(mem)) n += b.data.length;
  console.log('render', (performance.now() - t).toFixed(0), 'ms');
  t = performance.now(); const chunks: Uint8Array[] = [];
  for await (const c of writeV2({ guest: 'pv', guestWidth: 64, vcpus: 2, pages, xenVersion: '4.17', batches: batches(mem) })) chunks.push(c);
  console.log('render+encode', (performance.now() - t).toFixed(0), 'ms', chunks.length, 'chunks');
  t = performance.now(); const h = createHash('sha256'); for (const c of chunks) h.update(c); h.digest();
  console.log('sha256', (performance.now() - t).toFixed(0));
  t = performance.now(); const v = verifyingTee(chunks); for await (const c of v.output) void c; await v.facts;
  console.log('verifyingTee', (performance.now() - t).toFixed(0));
  t = performance.now(); for await (const it of decodeV2(chunks)) void it;
  console.log('decodeV2', (performance.now() - t).toFixed(0));
  t = performance.now(); const tm = new GuestMemory(0, new Uint32Array(pages), 'missing');
  await readImage({ xenVersion: '4.17', bitness: 64, streamFormat: 'v2' }, (async function* () { yield* chunks; })(), tm);
  console.log('readImage', (performance.now() - t).toFixed(0), tm.digest() === mem.digest());
}
main();
