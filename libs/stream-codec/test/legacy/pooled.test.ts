import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
// eslint-disable-next-line @nx/enforce-module-boundaries -- exercises the CLI's recycled-buffer input against the codec's golden files
import { FdSink, PooledInput } from '../../../../apps/cli/src/commands/stream-convert';
import { StreamReader, convertLegacy } from '../../src/index';
import { GOLDEN, eq, golden, manifest } from './helpers';

// convert-legacy-stream reads into a few recycled buffers; tiny buffers make every
// record straddle them and recycle them constantly: the output must not change.
describe('recycled input buffers (convert-legacy-stream I/O path)', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-pool-'));
  for (const size of [61, 4099]) {
    it(`all golden images, ${size}-byte reads`, async () => {
      for (const e of manifest()) {
        const g = golden(e.name);
        const out = path.join(tmp, `${e.name}.v2`);
        const inFd = fs.openSync(path.join(GOLDEN, `${e.name}.legacy`), 'r');
        const fd = fs.openSync(out, 'w');
        const sink = new FdSink(fd);
        const input = new PooledInput(inFd, sink, size);
        const r = new StreamReader(input.chunks());
        input.reader = r;
        const a = e.args;
        const { output } = convertLegacy(r, { width: 'auto', guest: 'auto', xl: 'auto', format: a[a.indexOf('-f') + 1] as 'libxc' | 'libxl', qemu: !a.includes('--skip-qemu') });
        await sink.drain(output);
        fs.closeSync(fd);
        fs.closeSync(inFd);
        expect(eq(fs.readFileSync(out), g.v2), e.name).toBe(true);
      }
    });
  }
});
