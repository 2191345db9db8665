/**
 * `ferry stream verify FILE|-`: checks a v2 image (xl, libxl or libxc framing,
 * auto-detected unless --format) against the libxc/libxl specs. Exit 0 valid,
 * 1 invalid stream, 2 usage or internal error. --json prints the facts.
 */
import { isStreamCodecError, verifyV2, type V2Facts } from '@ferry/stream-codec';
import { pooledFileChunks } from '@ferry/stream-codec/node';
import { Progress } from '../io';
import { parseStreamCommand } from './stream-args';

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


export function summary(f: V2Facts): string {
  const guest = f.guest === 'pv' ? `x86 PV${f.guestWidth ? ` ${f.guestWidth}-bit` : ''}` : 'x86 HVM';
  const xen = f.xenVersion === 'converted' ? 'converted from legacy' : `Xen ${f.xenVersion}`;
  return `${f.framing} (libxc v${f.imageVersion}), ${f.byteOrder}-endian, ${guest}, ${xen}: ${f.pages} pages, ${f.vcpus} vcpu${f.vcpus === 1 ? '' : 's'}, ${f.records} libxc records${f.libxlRecords ? ` + ${f.libxlRecords} libxl` : ''}, ${f.bytes} bytes`;
}

export async function run(argv: string[]): Promise<number> {
  const cmd = parseStreamCommand('verify', USAGE, argv, {
    'strict-order': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    quiet: { type: 'boolean', short: 'q', default: false },
  });
  if ('code' in cmd) return cmd.code;
  const { values, input, path } = cmd;
  const progress = new Progress(input.size, 'verify', process.stderr.isTTY === true && !values.quiet && (input.size ?? Infinity) > 32 * 1024 * 1024);
  try {
    // Files and descriptors: READ_CHUNK reads into reused buffers (the verifier keeps no views).
    const src = path === '-' ? 0 : /^\d+$/.test(path) ? Number(path) : path;
    (input.source as { destroy?: () => void }).destroy?.(); // read through the pooled reader instead
    const facts = await verifyV2((released) => pooledFileChunks(src, released), {
      format: cmd.format,
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
