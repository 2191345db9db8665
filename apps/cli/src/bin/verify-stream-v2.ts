/**
 * verify-stream-v2: a drop-in for Xen's tools/python/scripts/verify-stream-v2.
 * Same options (-i/--in FILE|FD defaulting to stdin, -f/--format libxc|libxl|xl
 * defaulting to libxc, -v, -q, --syslog) and exit codes (0 valid, 1 stream
 * error, 2 internal error). The verdict follows the specs (see the report in
 * libs/stream-codec/src/v2/verifier.ts for where it deliberately differs from
 * Xen's script), and big-endian streams are judged too.
 */
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { isStreamCodecError, verifyV2 } from '@ferry/stream-codec';
import { pooledFileChunks } from '@ferry/stream-codec/node';
import { openInput } from '../io';

const USAGE = `Usage: verify-stream-v2 [options]

Check a v2 save/migration image against the libxc and libxl specifications.
Options and exit codes match Xen's tool of the same name (0 valid, 1 bad stream, 2 other).

Options:
  -h, --help                 print this text and exit
  -i, --in FILE|FD           the image to check (default: standard input)
  -v, --verbose              describe the image as it is read
  -q, --quiet                print nothing, not even errors
  -f, --format libxc|libxl|xl
                             outermost framing of the image (default libxc)
  --syslog                   send messages to syslog rather than the terminal
`;

const FORMATS = ['libxc', 'libxl', 'xl'] as const;
type Format = (typeof FORMATS)[number];

interface Logger {
  info(msg: string): void;
  err(msg: string): void;
}

function makeLogger(verbose: boolean, quiet: boolean, syslog: boolean): Logger {
  const toSyslog = (prio: string, msg: string) => {
    spawnSync('logger', ['-t', `verify-stream-v2[${process.pid}]`, '-p', `user.${prio}`, '--', msg], { stdio: 'ignore' });
  };
  return {
    info(msg) {
      if (quiet || !verbose) return;
      if (syslog) toSyslog('info', msg);
      else process.stdout.write(msg + '\n');
    },
    err(msg) {
      if (quiet) return;
      if (syslog) toSyslog('err', msg);
      process.stderr.write(msg + '\n');
    },
  };
}

export async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        in: { type: 'string', short: 'i', default: '0' },
        verbose: { type: 'boolean', short: 'v', default: false },
        quiet: { type: 'boolean', short: 'q', default: false },
        format: { type: 'string', short: 'f', default: 'libxc' },
        syslog: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      allowPositionals: true,
    }));
  } catch (e) {
    process.stderr.write(`${USAGE}\nverify-stream-v2: error: ${(e as Error).message}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (!FORMATS.includes(values.format as Format)) {
    process.stderr.write(`${USAGE}\nverify-stream-v2: error: option -f: invalid choice: '${values.format}' (choose from 'libxc', 'libxl', 'xl')\n`);
    return 2;
  }
  const log = makeLogger(values.verbose, values.quiet, values.syslog);
  let input;
  try {
    input = openInput(values.in);
  } catch (e) {
    log.err(`Stream Error:\ncannot open ${values.in}: ${(e as Error).message}`);
    return 1;
  }
  try {
    const spec = values.in === '-' ? 0 : /^\d+$/.test(values.in) ? Number(values.in) : values.in;
    (input.source as { destroy?: () => void }).destroy?.(); // read through the pooled reader instead
    const facts = await verifyV2((released) => pooledFileChunks(spec, released), {
      format: values.format as Format,
      onInfo: (m) => log.info(m),
      onWarning: (m) => log.info(`Warning: ${m}`),
    });
    log.info(`Verified ${facts.bytes} bytes: ${facts.framing} stream, ${facts.byteOrder} endian`);
    return 0;
  } catch (e) {
    if (isStreamCodecError(e)) {
      log.err(`Stream Error:\n${e.name}: ${e.message}`);
      return 1;
    }
    if ((e as NodeJS.ErrnoException).code && typeof (e as NodeJS.ErrnoException).syscall === 'string') {
      log.err(`Stream Error:\n${(e as Error).message}`);
      return 1;
    }
    log.err(`Script Error:\n${(e as Error).stack ?? String(e)}\nThis is a bug in Ferry, not in the stream: please report it.`);
    return 2;
  }
}

/** Runs the command with this process's arguments; the bin (apps/cli/bin/verify-stream-v2.js) calls it. */
export function cli(): void {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    () => {
      process.exitCode = 2;
    },
  );
}

if (require.main === module) cli();
