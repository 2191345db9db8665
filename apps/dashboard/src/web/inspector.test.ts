import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { inspectFile } from './inspector';

const ROOT = path.resolve(__dirname, '../../../..');
const GOLDEN = path.join(ROOT, 'libs/stream-codec/test/legacy/golden');

/** `ferry stream detect --json`: what the CLI says about the same file. */
function cliDetect(file: string): { confidence: string; reasons: string[]; width: number; guest: string; xl: boolean } {
  return JSON.parse(execFileSync(process.execPath, [path.join(ROOT, 'apps/cli/bin/ferry.js'), 'stream', 'detect', file, '--json'], { encoding: 'utf8' }));
}

describe('the inspector on legacy images', () => {
  for (const name of ['pv32-w32-libxc-xl.legacy', 'hvm-w64-libxl-xl.legacy', 'hvm-w32-libxc.legacy']) {
    it(`${name}: detection with confidence and reasons, as the CLI has them`, async () => {
      const file = path.join(GOLDEN, name);
      const r = await inspectFile(Object.assign(new Blob([readFileSync(file)]), { name }));
      const cli = cliDetect(file);
      expect(r.detection, r.errors.join('; ')).not.toBeNull();
      expect(r.detection).toMatchObject({ width: cli.width, guest: cli.guest, xl: cli.xl, confidence: cli.confidence, reasons: cli.reasons });
      expect(r.detection!.xl).toBe(name.includes('-xl'));
      expect(r.width?.source).toMatch(/^(detected|declared)/);
    });
  }

  it('a v2 image has no legacy detection', async () => {
    const name = 'hvm-w64-libxl-xl.v2';
    const r = await inspectFile(Object.assign(new Blob([readFileSync(path.join(GOLDEN, name))]), { name }));
    expect(r.detection).toBeNull();
    expect(r.report?.verdict.valid).toBe(true);
  });
});
