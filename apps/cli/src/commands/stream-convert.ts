/**
 * `ferry stream convert IN OUT`: legacy -> v2 or v2 -> legacy, deciding the
 * direction, width and guest type from the input unless told. The descriptor I/O
 * lives in ../fd-io (shared with convert-legacy-stream).
 */
import { parseArgs } from 'node:util';
import { StreamReader, UnsupportedStreamError, convertLegacy, isStreamCodecError, legacyFromV2, pvXsaveSize, readerRemainder, sniffV2 } from '@ferry/stream-codec';
import { fileChunks } from '@ferry/stream-codec/node';
import { OutputFile, writeToFd } from '../fd-io';
import { Progress, openInput } from '../io';

const USAGE = `usage: ferry stream convert IN OUT [options]
  IN, OUT                 paths, "-" for stdin/stdout, or a numeric file descriptor
  --to v2|legacy          direction (default: v2 for a legacy input, legacy for a v2 input)
  --width auto|32|64      legacy toolstack width (input: default auto; output: required)
  --guest auto|pv|hvm     legacy guest type (default auto)
  --format libxl|libxc    v2 output framing (default libxl; an xl header keeps its place)
  --skip-qemu             leave an HVM image's qemu tail unconverted (libxc output)
  --xsave-size N          v2 -> legacy, PV: the vcpus' xsave area size (bytes of an X86_PV_VCPU_XSAVE
                          body); legacy announces it before the pages. Default: read from IN first
                          when IN is a file, else from the stream's CPUID policy
  --json                  print a summary as JSON on stderr when done
  -v, --verbose           describe the stream while converting
`;

export async function run(argv: string[]): Promise<number> {
  let a;
  try {
    a = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        to: { type: 'string' },
        width: { type: 'string', short: 'w', default: 'auto' },
        guest: { type: 'string', short: 'g', default: 'auto' },
        format: { type: 'string', short: 'f', default: 'libxl' },
        'skip-qemu': { type: 'boolean', default: false },
        'xsave-size': { type: 'string' },
        json: { type: 'boolean', default: false },
        verbose: { type: 'boolean', short: 'v', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (e) {
    process.stderr.write(`ferry stream convert: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  const v = a.values;
  if (v.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (a.positionals.length !== 2) {
    process.stderr.write(USAGE);
    return 2;
  }
  const [inSpec, outSpec] = a.positionals as [string, string];
  const width = v.width as string;
  const guest = v.guest as string;
  const format = v.format as string;
  const xsaveArg = v['xsave-size'] as string | undefined;
  if (
    !['auto', '32', '64'].includes(width) ||
    !['auto', 'pv', 'hvm'].includes(guest) ||
    !['libxl', 'libxc'].includes(format) ||
    (v.to && !['v2', 'legacy'].includes(v.to as string)) ||
    (xsaveArg !== undefined && !/^\d{1,7}$/.test(xsaveArg))
  ) {
    process.stderr.write(`ferry stream convert: bad option value\n${USAGE}`);
    return 2;
  }
  if (v.to === 'legacy' && width === 'auto') {
    process.stderr.write("ferry stream convert: --width 32|64 is required for v2 -> legacy (the old host's toolstack width)\n");
    return 2;
  }
  let input;
  let out: OutputFile;
  try {
    input = openInput(inSpec);
    // a path is written under a temporary name and renamed on success: a failure leaves nothing
    out = OutputFile.open(outSpec, { onSignal: 'remove' }); // (reads are asynchronous here)
  } catch (e) {
    process.stderr.write(`ferry stream convert: ${(e as Error).message}\n`);
    return 1;
  }
  const fd = out.fd;
  const progress = new Progress(input.size, 'convert');
  const reader = new StreamReader(progress.track(input.source));
  const info = v.verbose ? (l: string) => process.stderr.write(l + '\n') : undefined;
  try {
    const isV2 = await sniffV2(reader);
    const to = (v.to as string | undefined) ?? (isV2 ? 'legacy' : 'v2');
    let summary: Record<string, unknown>;
    if (to === 'legacy') {
      if (!isV2) throw new UnsupportedStreamError('the input is not a v2 stream; only v2 converts to legacy');
      if (width === 'auto') {
        process.stderr.write("ferry stream convert: --width 32|64 is required for v2 -> legacy (the old host's toolstack width)\n");
        return 2;
      }
      // The legacy header announces the xsave area before the pages; a file is read for it first.
      const xsaveSize = xsaveArg !== undefined ? Number(xsaveArg) : input.size !== undefined && inSpec !== '-' && !/^\d+$/.test(inSpec) ? await pvXsaveSize(fileChunks(inSpec)) : undefined;
      // What an old host sets up itself is left out of the image; say so rather than drop it silently.
      const dropped: string[] = [];
      const legacy = legacyFromV2(readerRemainder(reader), { width: Number(width) as 32 | 64, onDropped: (what) => dropped.push(what), ...(xsaveSize !== undefined ? { xsaveSize } : {}) });
      const bytesOut = await writeToFd(legacy, fd);
      if (!v.json) for (const d of dropped) process.stderr.write(`ferry stream convert: left out ${d}\n`);
      summary = { direction: 'v2->legacy', width: Number(width), bytesIn: reader.offset, bytesOut, dropped };
    } else {
      if (isV2) throw new UnsupportedStreamError('the input is already a v2 stream');
      const { output, summary: s } = convertLegacy(reader, {
        width: width === 'auto' ? 'auto' : (Number(width) as 32 | 64),
        guest: guest as 'auto' | 'pv' | 'hvm',
        format: format as 'libxl' | 'libxc',
        xl: 'auto',
        qemu: !v['skip-qemu'],
        onInfo: info,
      });
      await writeToFd(output, fd);
      summary = { direction: 'legacy->v2', ...s };
    }
    out.commit();
    progress.finish();
    if (v.json) process.stderr.write(JSON.stringify(summary, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x)) + '\n');
    else process.stderr.write(`converted ${inSpec} -> ${outSpec} (${summary.direction as string})\n`);
    return 0;
  } catch (e) {
    progress.finish();
    process.stderr.write(`ferry stream convert: ${(e as Error).message}\n`);
    return isStreamCodecError(e) ? (e instanceof UnsupportedStreamError ? 2 : 1) : 2;
  } finally {
    out.discard(); // (after a commit: nothing)
  }
}

