/**
 * convert-legacy-stream: a drop-in for Xen's tools/python/scripts/convert-legacy-stream
 * (libxl runs it through LIBXL_CONVERT_HELPER with --in FD --out FD --width --guest
 * --format libxl). Same options, same output bytes, same exit codes: 0 converted,
 * 1 stream error (and a missing required option), 2 what cannot be converted or an
 * internal error (optparse's exit code for a bad option value, too). Extras:
 * `--width auto` and `--guest-type auto` decide from the stream.
 */
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
// The legacy entry point: only the converter's modules load (startup time of a helper libxl spawns).
import { StreamReader, UnsupportedStreamError, convertLegacy, isStreamCodecError } from '@ferry/stream-codec/legacy';
import { FdSink, OutputFile, PooledInput, expandLongOptions, openInputFd } from '../fd-io';
import { loadFdCopy } from '../native';

const PROG = 'convert-legacy-stream';
const VERSION = '1';

const OPTIONS = {
  in: { type: 'string', short: 'i' },
  out: { type: 'string', short: 'o' },
  width: { type: 'string', short: 'w' },
  'guest-type': { type: 'string', short: 'g' },
  format: { type: 'string', short: 'f', default: 'libxc' },
  verbose: { type: 'boolean', short: 'v', default: false },
  xl: { type: 'boolean', short: 'x', default: false },
  'skip-qemu': { type: 'boolean', default: false },
  syslog: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
  version: { type: 'boolean', default: false },
} as const;

const USAGE = `Usage: ${PROG} [options] -i INPUT -o OUTPUT -w WIDTH -g GUEST

Rewrite a legacy (Xen <= 4.5) save/migration image as a v2 image.
Options and exit codes match Xen's tool of the same name (0 ok, 1 bad stream, 2 other).

Options:
  --version                 print the version and exit
  -h, --help                print this text and exit
  -i, --in FILE|FD          the legacy image to read
  -o, --out FILE|FD         where to write the v2 image
  -w, --width 32|64|auto    word size of the toolstack that saved it (auto: decide from the bytes)
  -g, --guest-type pv|hvm|auto
                            guest type (auto: decide from the bytes)
  -f, --format libxc|libxl  framing of the output (default libxc)
  -v, --verbose             describe the image while converting
  -x, --xl                  the input starts with an xl save-file header
  --skip-qemu               leave an HVM image's device-model tail alone
  --syslog                  send messages to syslog rather than the terminal
`;

let toSyslog = false;
function syslog(prio: 'info' | 'err', msg: string): void {
  if (!toSyslog) return;
  try {
    // Loaded only here: node:child_process costs a helper's start-up ~10 ms it rarely needs.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { spawnSync } = require('node:child_process') as typeof import('node:child_process');
    spawnSync('logger', ['-t', `${PROG}[${process.pid}]`, '-p', `user.${prio}`, '--', msg], { stdio: 'ignore' });
  } catch {
    /* no logger(1): stderr still has it */
  }
}

function usageError(msg: string): number {
  process.stderr.write(`Usage: ${PROG} [options] -i INPUT -o OUTPUT -w WIDTH -g GUEST\n\n${PROG}: error: ${msg}\n`);
  return 2;
}

export async function main(argv: string[]): Promise<number> {
  let values: { [K in keyof typeof OPTIONS]?: string | boolean };
  try {
    values = parseArgs({ args: expandLongOptions(argv, Object.keys(OPTIONS)), options: OPTIONS, allowPositionals: true, strict: true }).values;
  } catch (e) {
    return usageError((e as Error).message);
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (values.version) {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const width = values.width as string | undefined;
  const guest = values['guest-type'] as string | undefined;
  const format = values.format as string;
  if (width !== undefined && !['32', '64', 'auto'].includes(width)) return usageError(`option -w: invalid choice: '${width}' (choose from '32', '64', 'auto')`);
  if (guest !== undefined && !['pv', 'hvm', 'auto'].includes(guest)) return usageError(`option -g: invalid choice: '${guest}' (choose from 'pv', 'hvm', 'auto')`);
  if (!['libxc', 'libxl'].includes(format)) return usageError(`option -f: invalid choice: '${format}' (choose from 'libxc', 'libxl')`);
  if (values.in === undefined || values.out === undefined || width === undefined || guest === undefined) {
    process.stderr.write(USAGE);
    return 1;
  }
  toSyslog = values.syslog === true;
  const verbose = values.verbose === true;
  let infoFd = 1;
  const info = (line: string) => {
    if (!verbose) return;
    if (toSyslog) for (const l of line.split('\n')) syslog('info', l);
    else fs.writeSync(infoFd, line + '\n'); // stdout, as Xen's script; stderr when the stream goes to stdout
  };
  const err = (line: string) => {
    syslog('err', line);
    process.stderr.write(line + '\n');
  };

  let out: OutputFile;
  let inFd: number;
  try {
    inFd = openInputFd(values.in as string).fd;
    // A path is written under a temporary name and renamed on success: a failure leaves nothing.
    // No signal handler: reads block (a pipe's for good), and SIGTERM (libxl's abort) must end us.
    out = OutputFile.open(values.out as string);
  } catch (e) {
    err(`${PROG}: ${(e as Error).message}`);
    return 1;
  }
  const fd = out.fd;
  if (fd === 1) infoFd = 2;
  const auto = width === 'auto' || guest === 'auto';
  const sink = new FdSink(fd);
  // FERRY_READ_BYTES: smaller reads, for tests that make every record straddle recycled buffers.
  const readBytes = Number(process.env.FERRY_READ_BYTES) || 1024 * 1024;
  // Page data goes from descriptor to descriptor inside the kernel where the native helper can be had.
  const input = new PooledInput(inFd, sink, readBytes, undefined, () => loadFdCopy());
  const reader = new StreamReader(input.chunks());
  input.reader = reader;
  reader.forward = (n) => input.forward(n);
  const { output, summary } = convertLegacy(reader, {
    width: width === 'auto' ? 'auto' : (Number(width) as 32 | 64),
    guest: guest as 'pv' | 'hvm' | 'auto',
    format: format as 'libxc' | 'libxl',
    // Xen's script trusts -x; with auto-detection an xl header is found by its magic.
    xl: values.xl ? true : auto ? 'auto' : false,
    qemu: values['skip-qemu'] !== true,
    onInfo: info,
  });
  let rc = 0;
  try {
    await sink.drain(output);
    if (input.forwarded > 0) info(`${input.forwarded} of ${input.bytes} input bytes (page data) were copied by the kernel`);
    const d = summary.detection;
    if (auto && d) info(`Detected: ${summary.toolstackWidth}-bit toolstack, ${summary.guest} guest (${d.confidence}): ${d.reasons.join('; ')}`);
  } catch (e) {
    // What was converted before the fault goes out, as from Xen's script: libxl 4.17 reading a
    // helper that wrote nothing fails with "Invalid ident", and xl crashes leaving the half-built
    // domain behind; after libxl's header (written first) it fails cleanly.
    await sink.flush().catch(() => undefined);
    if (e instanceof UnsupportedStreamError) {
      err(`Script Error: ${e.message}`);
      rc = 2;
    } else if (isStreamCodecError(e)) {
      err(`Stream Error: ${e.message}`);
      rc = 1;
    } else if ((e as NodeJS.ErrnoException).code === 'EPIPE' || (e as NodeJS.ErrnoException).syscall) {
      err(`Stream Error: ${(e as Error).message}`);
      rc = 1;
    } else {
      err(`Script Error: ${(e as Error).stack ?? String(e)}`);
      rc = 2;
    }
  } finally {
    try {
      if (rc === 0) out.commit();
    } catch (e) {
      err(`Stream Error: ${(e as Error).message}`);
      rc = 1;
    }
    out.discard(); // (after a commit: nothing)
  }
  return rc;
}

/** Runs the command with this process's arguments; the bin (apps/cli/bin/convert-legacy-stream.js) calls it. */
export function cli(): void {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`${PROG}: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 2;
    },
  );
}

// Run directly as a TypeScript file (the benchmark's lean loader does).
if (require.main === module) cli();
