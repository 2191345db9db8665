import * as fs from 'node:fs';
import { StreamReader } from './libs/stream-codec/src/reader';
import { convertLegacy } from './libs/stream-codec/src/legacy/convert';
import { FdSink, PooledInput } from './apps/cli/src/commands/stream-convert';
async function main() {
  const chunk = Number(process.argv[2]) * 1024;
  const mode = process.argv[3];
  for (let i = 0; i < 4; i++) {
    fs.rmSync('/tmp/ferry-bench/o.v2', { force: true }); require('node:child_process').spawnSync('sync');
    const t0 = process.hrtime.bigint();
    const inFd = fs.openSync('/tmp/ferry-bench/legacy-pv-w32-1g.img', 'r');
    const fd = fs.openSync('/tmp/ferry-bench/o.v2', 'w');
    const sink = new FdSink(fd);
    const input = new PooledInput(inFd, sink, chunk);
    const r = new StreamReader(input.chunks());
    input.reader = r;
    if (mode === 'copy') await sink.drain(input.chunks());
    else { const { output } = convertLegacy(r, { width: 32, guest: 'pv' }); await sink.drain(output); }
    fs.closeSync(fd); fs.closeSync(inFd);
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    console.log(chunk/1024, mode, (1073741824 / 1e6 / s).toFixed(0), 'MB/s', (process.memoryUsage().rss / 1048576).toFixed(0), 'MiB rss');
  }
}
main();
