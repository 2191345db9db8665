/**
 * The real Xen 4.17 `xl save` images down-converted to the legacy xl images a 32- and a
 * 64-bit Xen <= 4.5 toolstack writes, then read back by the codec's own detector and
 * legacy reader (width and guest type detected, not declared) and compared with the
 * original record by record: what legacy cannot carry (the CPU policies, which an old
 * host computes itself) is the only difference, and the extended vcpu context comes
 * back as the 56-byte layout of Xen <= 4.5 inside its 128-byte window.
 *
 * The images are read from FERRY_XEN_CORPUS, else from the repository's fixtures
 * (libs/testing/fixtures/real-xen-4.17); the suite is skipped, saying why, when neither
 * holds them.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createGunzip } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { synthStream } from '../../src/v2/synth';
import {
  DETECT_PREFIX,
  EXT_VCPU_CONTEXT_LEGACY,
  LIBXL_REC,
  REC,
  REC_NAME,
  XL_MANDATORY_FLAG_STREAMV2,
  decodeV2,
  detectLegacy,
  encodeV2,
  ingestToV2,
  legacyFromV2,
  pvXsaveSize,
  viewOf,
  type ByteSource,
  type V2Item,
} from '../../src/index';
import { collect } from './helpers';

const DIR = process.env.FERRY_XEN_CORPUS ?? path.resolve(__dirname, '../../../testing/fixtures/real-xen-4.17');
const IMAGES = [
  { file: 'pv-88M.xlsave.gz', guest: 'pv' },
  { file: 'hvm-64M.xlsave.gz', guest: 'hvm' },
] as const;
const present = IMAGES.every((i) => fs.existsSync(path.join(DIR, i.file)));
if (!present) console.log(`real-downconvert: skipped, the real Xen 4.17 images are not in ${DIR} (set FERRY_XEN_CORPUS to their folder)`);
const open = (f: string) => fs.createReadStream(path.join(DIR, f)).pipe(createGunzip({ chunkSize: 1 << 20 }));

const sha = (parts: Uint8Array[]) => {
  const h = createHash('sha1');
  for (const p of parts) h.update(p);
  return h.digest('hex');
};

/** The extended vcpu context's fields; a field past the context's own size reads as 0. */
function extendedFields(ctx: Uint8Array) {
  const dv = viewOf(ctx);
  const size = dv.getUint32(4, true);
  const u64 = (o: number) => (o + 8 <= size ? dv.getBigUint64(o, true).toString(16) : '0');
  return {
    vcpu: dv.getUint32(0, true),
    syscall32Eip: u64(8),
    sysenterEip: u64(16),
    callbacks: Buffer.from(ctx.subarray(24, 32)).toString('hex'),
    mcgCap: u64(32),
    mciCtl2: [u64(40), u64(48)],
    mcgExtCtl: u64(56),
    rest: ctx.subarray(size).every((b) => b === 0),
  };
}

/**
 * What a stream says, independent of how it is laid out: the xl header's flags and config, every
 * page by pfn, and the other records by type (order within a type kept; bodies hashed). HVM params
 * are compared as a set of non-zero values; the CPU policies are listed apart (legacy drops them).
 */
async function meaning(source: ByteSource) {
  const pages = new Map<number, string>();
  const records = new Map<string, unknown[]>();
  const add = (k: string, v: unknown) => {
    const l = records.get(k) ?? [];
    l.push(v);
    records.set(k, l);
  };
  let xl: { flags: number; config: string } | undefined;
  let policies = 0;
  for await (const item of decodeV2(source, { format: 'auto' })) {
    if (item.kind === 'xl-header') xl = { flags: item.header.mandatoryFlags & ~XL_MANDATORY_FLAG_STREAMV2, config: sha([item.header.optionalData]) };
    else if (item.kind === 'libxl-record') {
      const b = item.body;
      if (b.kind === 'emulator_context') add('EMULATOR_CONTEXT', { id: b.emulatorId, index: b.index, data: sha([b.data]) });
      else add(`libxl ${item.type}`, item.type === LIBXL_REC.END || item.type === LIBXL_REC.LIBXC_CONTEXT ? '' : sha(item.raw ?? []));
    } else if (item.kind === 'libxc-record') {
      const b = item.body;
      const name = REC_NAME[item.type] ?? String(item.type);
      if (b.kind === 'page_data') {
        const dv = viewOf(b.pfns);
        // page contents are views of the input: a page may span two of them
        let seg = 0;
        let off = 0;
        const nextPage = () => {
          const h = createHash('sha1');
          for (let need = 4096; need > 0; ) {
            const s = b.pages[seg]!;
            const k = Math.min(need, s.byteLength - off);
            h.update(s.subarray(off, off + k));
            need -= k;
            off += k;
            if (off === s.byteLength) {
              seg++;
              off = 0;
            }
          }
          return h.digest('hex');
        };
        for (let i = 0; i < b.count; i++) {
          const hi = dv.getUint32(i * 8 + 4, true);
          const pfn = dv.getUint32(i * 8, true);
          const type = hi >>> 28;
          const data = type <= 4 || (type >= 9 && type <= 0xc) ? nextPage() : '';
          pages.set(pfn, `${type}:${data}`);
        }
      } else if (b.kind === 'hvm_params') {
        for (const p of b.params) if (p.value) add('HVM_PARAM', `${p.index}=${p.value.toString(16)}`);
      } else if (item.type === REC.X86_CPUID_POLICY || item.type === REC.X86_MSR_POLICY) policies++;
      else if (item.type === REC.X86_PV_VCPU_EXTENDED && b.kind === 'x86_pv_vcpu') add(name, { recordVcpu: b.vcpuId, ...extendedFields(b.context) });
      else if (b.kind === 'x86_pv_vcpu') add(name, { vcpu: b.vcpuId, data: sha([b.context]) });
      else if (item.type !== REC.END && item.type !== REC.STATIC_DATA_END) add(name, sha((item.raw ?? []).slice(1)));
    }
  }
  const params = records.get('HVM_PARAM');
  if (params) records.set('HVM_PARAM', (params as string[]).sort());
  return { xl, pages: [...pages].sort((a, b) => a[0] - b[0]), records: Object.fromEntries([...records].sort(([a], [b]) => a.localeCompare(b))), policies };
}

/**
 * What a legacy HVM image carries differently: no emulator id (the restoring libxl takes the
 * device model from the domain config), and the VM86 TSS as the address alone (Xen < 4.9's
 * VM86_TSS param; newer Xen's VM86_TSS_SIZED puts the size above it).
 */
function asLegacyCarriesIt(records: Record<string, unknown[]>): Record<string, unknown[]> {
  const out = { ...records };
  out['EMULATOR_CONTEXT'] = (records['EMULATOR_CONTEXT'] as { id: number }[]).map((e) => ({ ...e, id: 0 }));
  out['HVM_PARAM'] = (records['HVM_PARAM'] as string[])
    .map((p) => {
      const [i, v] = p.split('=') as [string, string];
      return i === '37' ? `15=${(BigInt('0x' + v) & 0xffffffffn).toString(16)}` : p;
    })
    .sort();
  return out;
}

describe.skipIf(!present)('real Xen 4.17 images down-converted to legacy and back', () => {
  const originals = new Map<string, Promise<Awaited<ReturnType<typeof meaning>>>>();
  const original = (f: string) => {
    let m = originals.get(f);
    if (!m) originals.set(f, (m = meaning(open(f))));
    return m;
  };

  for (const img of IMAGES) {
    for (const width of [32, 64] as const) {
      it(`${img.file} -> ${width}-bit legacy xl image -> detected and converted back: the same guest`, async () => {
        const dropped: string[] = [];
        let prefix = new Uint8Array(0);
        async function* tap(): AsyncGenerator<Uint8Array> {
          for await (const c of legacyFromV2(open(img.file), { width, onDropped: (d) => dropped.push(d) })) {
            if (prefix.byteLength < DETECT_PREFIX) prefix = Buffer.concat([prefix, c]).subarray(0, DETECT_PREFIX);
            yield c;
          }
        }
        const { output, facts } = ingestToV2(tap());
        const back = await meaning(output);

        // the legacy image: an xl header without STREAM_V2, detected at the width it was written at
        const dv = viewOf(prefix);
        expect(dv.getUint32(36, true) & XL_MANDATORY_FLAG_STREAMV2).toBe(0);
        // xl header: magic (32), byte order, mandatory and optional flags, optional data length, the data
        const det = detectLegacy(prefix.subarray(48 + dv.getUint32(44, true)), { xl: true });
        expect(det).toMatchObject({ width, guest: img.guest, xl: true, framing: 'libxl' });
        expect(await facts).toMatchObject({ input: 'legacy', guest: img.guest, toolstackWidth: width, widthSource: 'detected', guestSource: 'detected' });
        expect(dropped.map((d) => d.split(' ')[0])).toEqual(['X86_CPUID_POLICY', 'X86_MSR_POLICY']);

        const orig = await original(img.file);
        expect(orig.policies).toBe(2);
        expect(back.policies).toBe(0);
        expect(back.xl).toEqual(orig.xl);
        expect(back.pages.length).toBe(orig.pages.length);
        expect(back.pages).toEqual(orig.pages);
        if (img.guest === 'pv') {
          // the 4.17 context is 64 bytes (MCG_EXT_CTL, 0 here); it comes back in the layout Xen <= 4.5 wrote
          const ext = back.records['X86_PV_VCPU_EXTENDED'] as { rest: boolean }[];
          expect(ext).toHaveLength(1);
          expect(ext[0]!.rest).toBe(true);
          expect((orig.records['X86_PV_VCPU_XSAVE'] as unknown[]).length).toBe(1);
        }
        expect(back.records).toEqual(img.guest === 'hvm' ? asLegacyCarriesIt(orig.records) : orig.records);
      }, 120000);
    }
  }

  it('pv: the extended vcpu context goes out as Xen <= 4.5 wrote it, the xsave area as the policy announced', async () => {
    const down = Buffer.from(await collect(legacyFromV2(open('pv-88M.xlsave.gz'), { width: 64 })));
    const xcnt = down.indexOf('xcnt');
    expect(xcnt).toBeGreaterThan(0);
    expect(down.readUInt32LE(xcnt + 8)).toBe(848 + 16); // 16 + leaf 0xD's 832 bytes for x87|SSE|AVX, + mask and size
    // the tail: ... basic context (5168), extended (128), xsave mask + size + area, shared info (4096)
    const ext = down.subarray(down.byteLength - 4096 - (16 + 848) - 128, down.byteLength - 4096 - (16 + 848));
    expect(ext.readUInt32LE(4)).toBe(EXT_VCPU_CONTEXT_LEGACY);
    expect(ext.subarray(EXT_VCPU_CONTEXT_LEGACY).every((b) => b === 0)).toBe(true);
    expect(down.readBigUInt64LE(down.byteLength - 4096 - (16 + 848) + 8)).toBe(848n);
    expect(await pvXsaveSize(open('pv-88M.xlsave.gz'))).toBe(848);
  }, 120000);
});

describe('legacyFromV2: PV vcpu state of newer Xen', () => {
  /** A synthetic PV v3 stream whose vcpu 0 extended context is `ext`. */
  const withExtended = (ext: Uint8Array) =>
    collect(
      encodeV2(
        [...synthStream({ guest: 'pv', framing: 'libxc', version: 3 })].map((it): V2Item =>
          it.kind === 'libxc-record' && it.type === REC.X86_PV_VCPU_EXTENDED && it.body.kind === 'x86_pv_vcpu' ? { ...it, body: { ...it.body, context: ext } } : it,
        ),
      ),
    );
  const ext64 = (mcgCap: bigint, mcgExtCtl: bigint) => {
    const ctx = new Uint8Array(64);
    const dv = viewOf(ctx);
    dv.setUint32(4, 64, true);
    dv.setBigUint64(32, mcgCap, true);
    dv.setBigUint64(56, mcgExtCtl, true);
    return ctx;
  };

  it('refuses LMCE state, which Xen <= 4.5 cannot hold, saying what to do instead', async () => {
    for (const ctx of [ext64(2n, 1n), ext64(2n | (1n << 27n), 0n)]) {
      const v2 = await withExtended(ctx);
      await expect(collect(legacyFromV2([v2], { width: 32, xsaveSize: 848 }))).rejects.toThrow(
        /^cannot express in a legacy image \(offset \d+\): vcpu 0 has LMCE machine-check state \(MCG_CAP 0x[0-9a-f]+, MCG_EXT_CTL 0x[01]\), which Xen <= 4\.5 cannot hold; keep it on v2 and restore on Xen >= 4\.10$/,
      );
    }
  });

  it('writes a 64-byte context without LMCE state as the 56-byte one of Xen <= 4.5, in 128 bytes', async () => {
    // (the synthetic guest has an 848-byte xsave area and a policy without leaf 0xD: the size is given)
    const down = Buffer.from(await collect(legacyFromV2([await withExtended(ext64(2n, 0n))], { width: 64, xsaveSize: 848 })));
    // the tail ends: basic context, extended context (128), xsave mask + size + area, shared info (4096)
    const end = down.byteLength - 4096 - 16 - 848;
    const ext = down.subarray(end - 128, end);
    expect(ext.readUInt32LE(4)).toBe(56);
    expect(ext.readBigUInt64LE(32)).toBe(2n);
    expect(ext.subarray(56).every((b) => b === 0)).toBe(true);
  });

  it('refuses an xsave area of another size than the header announced, naming the size to pass', async () => {
    const g = [...synthStream({ guest: 'pv', framing: 'libxc', version: 3 })];
    const xsave = new Uint8Array(592);
    const items = g.map((it): V2Item =>
      it.kind === 'libxc-record' && it.type === REC.X86_PV_VCPU_XSAVE && it.body.kind === 'x86_pv_vcpu' ? { ...it, body: { ...it.body, context: xsave } } : it,
    );
    const v2 = await collect(encodeV2(items));
    await expect(collect(legacyFromV2([v2], { width: 64 }))).rejects.toThrow(/vcpu 0 has an xsave area of 592 bytes, but the legacy header \(written before the pages\) announced none; pass xsaveSize 592/);
    await expect(collect(legacyFromV2([v2], { width: 64, xsaveSize: 848 }))).rejects.toThrow(/announced 848; pass xsaveSize 592/);
    expect(await pvXsaveSize([v2])).toBe(592);
    const down = await collect(legacyFromV2([v2], { width: 64, xsaveSize: await pvXsaveSize([v2]) }));
    const back = await collect(ingestToV2([down]).output);
    const xs = [];
    for await (const it of decodeV2([back])) if (it.kind === 'libxc-record' && it.type === REC.X86_PV_VCPU_XSAVE && it.body.kind === 'x86_pv_vcpu') xs.push(it.body.context.byteLength);
    expect(xs).toEqual([592]);
  });
});
