/**
 * The matrix of small legacy images behind the golden tests: toolstack width x guest
 * type x guest width x output format x xl header x qemu tail, with the optional
 * chunks rotated through the cases. tools/golden-legacy/generate.ts writes each
 * image with writeLegacy and Xen's convert-legacy-stream's output next to it.
 */
import { LEGACY_HVM_PARAM as HVM_PARAM, type LegacyBodyItem, type LegacyImage, type LegacyVcpu, type LegacyWidth } from '../../src/index';

export interface GoldenCase {
  name: string;
  image: () => LegacyImage;
  /** Xen's convert-legacy-stream options. */
  args: string[];
  width: LegacyWidth;
  guest: 'pv' | 'hvm';
  format: 'libxc' | 'libxl';
  xl: boolean;
  skipQemu: boolean;
}

/** Deterministic page contents: a small LCG, cheap and compressible enough. */
function page(seed: number): Uint8Array {
  const p = new Uint8Array(4096);
  let x = (seed * 2654435761) >>> 0;
  for (let i = 0; i < 4096; i += 4) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    p[i] = x >>> 24;
    p[i + 1] = seed & 0xff;
  }
  return p;
}

function filled(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + seed) & 0xff;
  return b;
}

export function goldenCases(): GoldenCase[] {
  const cases: GoldenCase[] = [];
  let k = 0;
  for (const width of [32, 64] as const) {
    for (const guest of ['pv', 'hvm'] as const) {
      for (const gw of guest === 'pv' ? ([32, 64] as const) : ([64] as const)) {
        for (const format of ['libxc', 'libxl'] as const) {
          for (const xl of [false, true]) {
            for (const skipQemu of guest === 'hvm' && format === 'libxc' ? [false, true] : [false]) {
              const idx = k++;
              const name = `${guest}${guest === 'pv' ? gw : ''}-w${width}-${format}${xl ? '-xl' : ''}${skipQemu ? '-noqemu' : ''}`;
              const image = (): LegacyImage => makeImage(idx, width, guest, gw, format, xl, skipQemu);
              const args = ['-w', String(width), '-g', guest, '-f', format];
              if (xl) args.push('-x');
              if (skipQemu) args.push('--skip-qemu');
              cases.push({ name, image, args, width, guest, format, xl, skipQemu });
            }
          }
        }
      }
    }
  }
  return cases;
}

function makeImage(idx: number, width: LegacyWidth, guest: 'pv' | 'hvm', gw: LegacyWidth, format: string, xl: boolean, skipQemu: boolean): LegacyImage {
  const pv = guest === 'pv';
  const opt = (bit: number) => ((idx >> bit) & 1) === 1 || idx % 5 === bit;
  const ctx = gw === 64 ? 0x1430 : 0xaf0;
  const nv = 1 + (idx % 3);
  const xsave = pv && opt(1) ? 0x340 : 0;
  const vcpus: LegacyVcpu[] = [];
  for (let i = 0; i < nv; i++) {
    const id = i === 2 ? 5 : i; // a hole in the map
    vcpus.push({
      id,
      basic: filled(ctx, id + 1),
      extended: filled(128, id + 100),
      ...(xsave ? { xsave: { mask: 0x7n, data: filled(xsave, id + 50) } } : {}),
    });
  }
  const p2mSize = pv ? 0x20 : 0x100;
  const items: LegacyBodyItem[] = [];
  // Iteration 1: a full batch of small size, with an XTAB filler and non-data types.
  items.push({ pfn: 0, type: 0, data: page(idx * 16 + 1) });
  items.push({ pfn: 1, type: pv ? 1 : 0, data: page(idx * 16 + 2) });
  items.push({ pfn: 0, type: 0xf }); // filler, dropped by the converter
  items.push({ pfn: 3, type: 0xe }); // allocate-only
  items.push({ pfn: 4, type: pv ? 0xa : 0, data: page(idx * 16 + 3) });
  if (opt(0)) items.push({ pfn: 6, type: 0xd }); // broken
  if (opt(2)) items.push({ raw: new Uint8Array([0xff, 0xff, 0xff, 0xff]) }); // enable verify mode
  // Iteration 2: one page again.
  items.push({ pfn: 1, type: pv ? 1 : 0, data: page(idx * 16 + 4) });
  if (opt(3)) items.push({ pfn: 7, type: 0xf }); // an XTAB with a real pfn stays
  const img: LegacyImage = {
    guest,
    toolstackWidth: width,
    guestWidth: gw,
    p2mSize,
    vcpus,
    pages: items,
    batchSize: 5,
  };
  if (xl) img.xl = { mandatoryFlags: 1, optionalFlags: 0, optionalData: new TextEncoder().encode('\x10\x00\x00\x00{"c_info":{}}\n\x00\x00') };
  if (opt(1)) img.tsc = { mode: idx % 3, nsec: 123456789n * BigInt(idx + 1), khz: 2_400_000 + idx, incarnation: idx };
  if (pv) {
    img.extInfoContext = filled(ctx, 9);
    img.sharedInfo = filled(4096, 33);
    if (opt(2)) img.unmappedPfns = [0x10, 0x11, 0x1f];
    if (opt(4)) img.extv = idx % 2 === 0;
    if (!xsave && img.extv === false) img.extv = true;
  } else {
    img.magicPfns = { ioreq: 0xfeff0, bufioreq: 0xfeff1, store: 0xfeff2 };
    img.hvmContext = filled(0x2e8 + idx, 5);
    img.hvmParams = {
      [HVM_PARAM.IDENT_PT]: 0xfeffc000,
      [HVM_PARAM.VM86_TSS]: opt(0) ? 0xfeffd000 : 0,
      [HVM_PARAM.CONSOLE_PFN]: opt(1) ? 0xfeff3 : 0,
      [HVM_PARAM.ACPI_IOPORTS_LOCATION]: 1,
      [HVM_PARAM.VIRIDIAN]: opt(2) ? 0x1f : 0,
      [HVM_PARAM.VM_GENERATION_ID_ADDR]: opt(3) ? 0xfc00_1000 : 0,
      [HVM_PARAM.PAGING_RING_PFN]: opt(4) ? 0xfeff4 : 0,
      [HVM_PARAM.IOREQ_SERVER_PFN]: 0xfeff5,
      [HVM_PARAM.NR_IOREQ_SERVER_PAGES]: 8,
    };
    if (!skipQemu || idx % 2 === 0) img.qemu = filled(0x1234 + idx, 77);
  }
  if (format === 'libxl' || opt(3)) {
    img.toolstack = {
      physmap: [
        { physOffset: 0xf0000000, startAddr: 0xf0000000 + idx * 0x1000, size: 0x800000, name: 'vga.vram' },
        { physOffset: 0xf1000000, startAddr: 0xf1000000, size: 0x10000, name: 'cirrus_vga.rom' },
      ],
    };
  }
  return img;
}
