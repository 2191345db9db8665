import { writeV2 } from '../src/sim/streams';
import { GuestMemory, renderPages } from '../src/sim/memory';
const pages = 256 * 256;
async function* batches(mem: GuestMemory) { for (let i = 0; i < pages; i += 1024) { const pf = Uint32Array.from({length: 1024}, (_, k) => i + k); yield { pfns: pf, data: renderPages(mem.seed, pf, mem.versions) }; } }
async function main() {
  const mem = GuestMemory.fresh(5, pages);
  for (let k = 0; k < 3; k++) {
  let t = performance.now(); let n = 0, c = 0;
  for await (const ch of writeV2({ guest: 'pv', guestWidth: 64, vcpus: 2, pages, xenVersion: '4.17', batches: batches(mem) })) { n += ch.byteLength; c++; }
  console.log('render+encode', (performance.now() - t).toFixed(0), 'ms', c, n);
  }
}
main();
