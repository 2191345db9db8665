/**
 * The Xen drop-ins as libxl and operators run them: through the npm bin links (no `.js` in the
 * name). A garbage stream must be refused with exit 1, never "verified" with exit 0.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

const BIN = path.resolve(__dirname, '../../../node_modules/.bin');
const garbage = Buffer.from('this is not a Xen save image, not even close'.repeat(4));

describe('drop-ins through their bin links', () => {
  it('verify-stream-v2 refuses garbage with exit 1', () => {
    const r = spawnSync(path.join(BIN, 'verify-stream-v2'), ['-f', 'libxc'], { input: garbage });
    expect(r.status).toBe(1);
    expect(String(r.stderr)).toMatch(/malformed|truncated/i);
  });
  it('convert-legacy-stream refuses garbage with exit 1', () => {
    const r = spawnSync(path.join(BIN, 'convert-legacy-stream'), ['-i', '0', '-o', '/dev/null', '-w', 'auto', '-g', 'auto'], { input: garbage });
    expect(r.status).toBe(1);
    expect(String(r.stderr).trim().split('\n').length).toBeLessThanOrEqual(3);
  });
  it('convert-legacy-stream, refusing a stream for libxl, has written libxl\'s stream header first', () => {
    // As Xen's script does. Real xl 4.17 (tools/real-xen, results-2026-12-06.md) crashes when the
    // helper wrote nothing at all ("Invalid ident ... got 0", then a segfault) and leaves the
    // half-built domain behind; after the header it fails cleanly and destroys it.
    const r = spawnSync(path.join(BIN, 'convert-legacy-stream'), ['--in', '0', '--out', '1', '--width', '64', '--guest', 'pv', '--format', 'libxl'], { input: garbage });
    expect(r.status).toBe(1);
    expect(r.stdout.subarray(0, 8).toString('latin1')).toBe('LibxlFmt');
    expect(r.stdout.byteLength).toBe(16 + 8); // the header, then the empty LIBXC_CONTEXT record
  });
  it('both print their help', () => {
    for (const b of ['verify-stream-v2', 'convert-legacy-stream']) {
      const r = spawnSync(path.join(BIN, b), ['--help']);
      expect(r.status).toBe(0);
      expect(String(r.stdout)).toMatch(new RegExp(`Usage: ${b}`));
    }
  });
});
