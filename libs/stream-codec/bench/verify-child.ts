/**
 * Child process of verify.bench.ts: verifies FILE once (READ_CHUNK reads, or CHUNK bytes) and prints
 * {"ms", "bytes", "maxRssKiB"} as JSON, so the parent can measure the peak RSS of
 * the verifier alone.
 */
import * as fs from 'node:fs';
import { verifyV2 } from '../src/verify';
import { READ_CHUNK, fileChunks, pooledFileChunks } from '../src/node/index';

async function main(): Promise<void> {
  const file = process.argv[2]!;
  const mode = process.argv[3] ?? 'pool';
  const t0 = process.hrtime.bigint();
  const facts =
    mode === 'stream'
      ? await verifyV2(fs.createReadStream(file, { highWaterMark: 4 << 20 }))
      : mode === 'fresh'
        ? await verifyV2(fileChunks(file))
        : await verifyV2((released) => pooledFileChunks(file, released, Number(process.env.CHUNK ?? READ_CHUNK)));
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  process.stdout.write(JSON.stringify({ ms, bytes: facts.bytes, pages: facts.pages, maxRssKiB: process.resourceUsage().maxRSS }) + '\n');
}

main().catch((e: unknown) => {
  process.stderr.write(String(e) + '\n');
  process.exitCode = 2;
});
