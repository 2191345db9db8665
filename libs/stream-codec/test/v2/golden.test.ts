/**
 * Golden streams made with Xen's own Python tools (see golden/README.md), and a
 * differential test against Xen's verify-stream-v2: its recorded verdicts on
 * deterministic mutants of each golden stream must match ours, except where the
 * spec has a rule Xen's script does not check (listed below).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { inspectStream } from '../../src/inspect';
import { verifyV2 } from '../../src/verify';
import { GOLDEN, mutantOf } from './golden-cases';
import { decodeAll, encodeItems, sameBytes } from './helpers';

const DIR = path.join(__dirname, 'golden');
const read = (f: string) => new Uint8Array(fs.readFileSync(path.join(DIR, f)));
const verdicts = JSON.parse(fs.readFileSync(path.join(DIR, 'xen-verdicts.json'), 'utf8')) as { base: string; seed: number; xen: number }[];

/** Spec rules Xen's script does not check: where we may reject what it accepts. */
const STRICTER = [
  /bytes after the final END/,
  /without vcpu records|without X86_PV_INFO|without X86_PV_P2M_FRAMES|without PAGE_DATA/,
  /before STATIC_DATA_END|before X86_PV_INFO|before X86_PV_P2M_FRAMES|before any PAGE_DATA|after STATIC_DATA_END|a second /,
  /duplicate pfn/,
  /p2m frames for pfns|p2m_start_pfn/,
  /xenstore key/,
  /reserved bits set in options/,
  /record in an? (HVM|PV) stream/,
  /unknown mandatory flags/,
];

describe('golden streams from Xen convert-legacy-stream', () => {
  for (const g of GOLDEN) {
    it(`${g.file}: valid, and decode -> encode is byte-identical`, async () => {
      const b = read(g.file);
      const f = await verifyV2([b], { format: g.format });
      expect(f.framing).toBe(g.format);
      expect(sameBytes(await encodeItems(await decodeAll([b], g.format)), b)).toBe('same');
      const rep = await inspectStream([b]);
      expect(rep.verdict.valid).toBe(true);
      if (g.file.startsWith('hvm')) {
        expect(rep.libxc?.xen).toMatch(/^converted/);
        expect(rep.libxc?.pages.withData).toBe(1);
        expect(rep.libxl?.legacy ?? true).toBe(true);
      }
    });
  }

  it(`agrees with Xen's verify-stream-v2 on ${verdicts.length} mutants (stricter only where the spec says so)`, async () => {
    let agree = 0;
    const stricter: string[] = [];
    for (const v of verdicts) {
      const g = GOLDEN.find((x) => x.file === v.base)!;
      const m = mutantOf(read(v.base), v.seed);
      let ours = 0;
      let msg = '';
      try {
        await verifyV2([m], { format: g.format });
      } catch (e) {
        ours = 1;
        msg = (e as Error).message;
      }
      if (ours === v.xen) agree++;
      else {
        expect.soft(ours, `${v.base} seed ${v.seed}: Xen rejects, we accept`).toBe(1);
        expect.soft(STRICTER.some((r) => r.test(msg)), `${v.base} seed ${v.seed}: ${msg}`).toBe(true);
        stricter.push(msg);
      }
    }
    expect(agree).toBeGreaterThan(verdicts.length * 0.95);
  }, 60000);
});
