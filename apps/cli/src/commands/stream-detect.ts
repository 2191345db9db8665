/**
 * `ferry stream detect FILE [--json]`: what kind of save image this is. For a legacy
 * image: toolstack width, guest type (and PV guest width), framing, xl header, how
 * sure, and why. For a v2 stream: its framing. Exit 0 when decided, 1 when the
 * image is ambiguous or unreadable, 2 on usage errors.
 */
import { parseArgs } from 'node:util';
import { AmbiguousStreamError, DETECT_PREFIX, StreamReader, XL_HDR_SIZE, detectLegacy, isStreamCodecError, sniffFraming, sniffV2, viewOf, type LegacyDetection } from '@ferry/stream-codec';
import { openInput } from '../io';

const USAGE = `usage: ferry stream detect FILE [--json] [--width 32|64] [--guest pv|hvm]
  FILE may be "-" (stdin) or a numeric file descriptor.
  --width/--guest check a declared value against the image instead of detecting it.
`;

interface Report {
  file: string;
  format: 'legacy' | 'v2';
  framing?: string;
  width?: 32 | 64;
  guest?: 'pv' | 'hvm';
  guestWidth?: 32 | 64;
  xl?: boolean;
  confidence?: LegacyDetection['confidence'];
  reasons: string[];
  candidates?: string[];
  error?: string;
}

export async function run(argv: string[]): Promise<number> {
  let a;
  try {
    a = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { json: { type: 'boolean', default: false }, width: { type: 'string' }, guest: { type: 'string' }, help: { type: 'boolean', short: 'h', default: false } },
    });
  } catch (e) {
    process.stderr.write(`ferry stream detect: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (a.values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const file = a.positionals[0];
  const width = a.values.width;
  const guest = a.values.guest;
  if (a.positionals.length !== 1 || (width !== undefined && width !== '32' && width !== '64') || (guest !== undefined && guest !== 'pv' && guest !== 'hvm')) {
    process.stderr.write(USAGE);
    return 2;
  }
  const json = a.values.json === true;
  const report: Report = { file: file!, format: 'legacy', reasons: [] };
  let rc = 0;
  try {
    const input = openInput(file);
    const r = new StreamReader(input.source);
    const head = await r.peek(XL_HDR_SIZE);
    const framing = sniffFraming(head);
    if (await sniffV2(r)) {
      report.format = 'v2';
      report.framing = framing;
      report.reasons.push(framing === 'xl' ? 'xl header with STREAM_V2 set' : framing === 'libxl' ? '"LibxlFmt" ident' : 'libxc image marker (eight 0xff octets) and "XENF"');
    } else {
      let xl = false;
      if (framing === 'xl') {
        xl = true;
        await r.read(XL_HDR_SIZE - 4, 'xl header');
        const optlen = viewOf(await r.read(4, 'xl header')).getUint32(0, true);
        await r.skip(optlen, 'xl optional data');
      }
      const prefix = await r.peek(DETECT_PREFIX);
      const d = detectLegacy(prefix, {
        complete: prefix.byteLength < DETECT_PREFIX,
        xl,
        base: r.offset,
        ...(width ? { width: Number(width) as 32 | 64 } : {}),
        ...(guest ? { guest: guest as 'pv' | 'hvm' } : {}),
      });
      Object.assign(report, { framing: d.framing, width: d.width, guest: d.guest, xl: d.xl, confidence: d.confidence, reasons: d.reasons });
      if (d.guestWidth) report.guestWidth = d.guestWidth;
    }
  } catch (e) {
    if (!isStreamCodecError(e) && !(e as NodeJS.ErrnoException).code) throw e;
    report.error = (e as Error).message;
    if (e instanceof AmbiguousStreamError) report.candidates = [...e.candidates];
    rc = 1;
  }
  if (json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  else if (report.error) process.stderr.write(`${file}: ${report.error}\n`);
  else {
    const lines = [`${file}: ${report.format === 'v2' ? `v2 stream, ${report.framing} framing` : `legacy image`}`];
    if (report.format === 'legacy') {
      lines.push(`  toolstack width: ${report.width}-bit`);
      lines.push(`  guest type:      ${report.guest}${report.guestWidth ? ` (${report.guestWidth}-bit guest)` : ''}`);
      lines.push(`  framing:         ${report.framing}${report.xl ? ' (xl header)' : ''}`);
      lines.push(`  confidence:      ${report.confidence}`);
    }
    lines.push('  reasons:', ...report.reasons.map((x) => `    - ${x}`));
    process.stdout.write(lines.join('\n') + '\n');
  }
  return rc;
}
