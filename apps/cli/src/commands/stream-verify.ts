/**
 * `ferry stream verify FILE|-`: checks a v2 image (xl, libxl or libxc framing,
 * auto-detected unless --format) against the libxc/libxl specs. Exit 0 valid,
 * 1 invalid stream, 2 usage or internal error. --json prints the facts.
 */
import { parseArgs } from 'node:util';
import { isStreamCodecError, verifyV2, type V2Facts } from '@ferry/stream-codec';
import { pooledFileChunks } from '@ferry/stream-codec/src/node';
import { openInput, Progress } from '../io';

const USAGE = `usage: ferry stream verify [options] FILE|-

Checks a v2 save/migration image against the libxc and libxl stream specs.

options:
  -f, --format auto|xl|libxl|libxc   outermost framing (default: auto-detected)
      --strict-order                 treat HVM_CONTEXT before HVM_PARAMS as an error
                                     (the spec's order; real Xen writes the other one)
      --json                         print the facts as JSON
  -q, --quiet                        print nothing, only set the exit code
  -h, --help
exit: 0 valid, 1 invalid stream, 2 usage/internal error`;

const FORMATS = ['auto', 'xl', 'libxl', 'libxc'] as const;
type Format = (typeof FORMATS)[number];

export function summary(f: V2Facts): string {
  const guest = f.guest === 'pv' ? `x86 PV${f.guestWidth ? ` ${f.guestWidth}-bit` : ''}` : 'x86 HVM';
  const xen = f.xenVersion === 'converted' ? 'converted from legacy' : `Xen ${f.xenVersion}`;
  return `${f.framing} (libxc v${f.imageVersion}), ${f.byteOrder}-endian, ${guest}, ${xen}: ${f.pages} pages, ${f.vcpus} vcpu${f.vcpus === 1 ? '' : 's'}, ${f.records} libxc records${f.libxlRecords ? ` + ${f.libxlRecords} libxl` : ''}, ${f.bytes} bytes`;
}

export async function run(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        format: { type: 'string', short: 'f', default: 'auto' },
        'strict-order': { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        quiet: { type: 'boolean', short: 'q', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      allowPositionals: true,
    });
  } catch (e) {
    process.stderr.write(`ferry stream verify: ${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  if (positionals.length !== 1 || !FORMATS.includes(values.format as Format)) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  let input;
  try {
    input = openInput(positionals[0]);
  } catch (e) {
    process.stderr.write(`ferry stream verify: ${(e as Error).message}\n`);
    return 2;
  }
  const progress = new Progress(input.size, 'verify', process.stderr.isTTY === true && !values.quiet && (input.size ?? Infinity) > 32 * 1024 * 1024);
  try {
    // Files and descriptors: 4 MiB reads into reused buffers (the verifier keeps no views).
    const src = positionals[0] === '-' ? 0 : /^\d+$/.test(positionals[0]!) ? Number(positionals[0]) : positionals[0]!;
    (input.source as { destroy?: () => void }).destroy?.(); // read through the pooled reader instead
    const facts = await verifyV2((released) => pooledFileChunks(src, released), {
      format: values.format as Format,
      strictOrder: values['strict-order'],
      onChunk: (c) => progress.add(c.byteLength),
    });
    progress.finish();
    if (!values.quiet) {
      if (values.json) process.stdout.write(JSON.stringify({ valid: true, ...facts }, null, 2) + '\n');
      else {
        process.stdout.write(`OK ${input.name}: ${summary(facts)}\n`);
        for (const w of facts.warnings) process.stdout.write(`  warning: ${w}\n`);
      }
    }
    return 0;
  } catch (e) {
    progress.finish();
    if (!isStreamCodecError(e)) {
      process.stderr.write(`ferry stream verify: internal error: ${(e as Error).stack ?? String(e)}\n`);
      return 2;
    }
    if (!values.quiet) {
      if (values.json) {
        const extra = e as unknown as { offset?: number; rule?: string; record?: string };
        process.stdout.write(JSON.stringify({ valid: false, error: e.name, message: e.message, offset: extra.offset, rule: extra.rule, record: extra.record }, null, 2) + '\n');
      } else process.stderr.write(`INVALID ${input.name}: ${e.message}\n`);
    }
    return 1;
  }
}
