/**
 * `ferry`: one command for operators. Each verb lives in src/commands/<verb>.ts and
 * exports `run(argv: string[]): Promise<number>` (the exit code); this file only
 * dispatches, so verbs load lazily and a broken verb cannot break the others.
 */
interface Verb {
  summary: string;
  module: string;
}

const VERBS: Record<string, Verb> = {
  'stream inspect': { summary: 'describe a save image: headers, records, pages, vcpus (--json)', module: '../commands/stream-inspect' },
  'stream verify': { summary: 'check a v2 image (libxc, libxl or xl framing, auto-detected) against the spec', module: '../commands/stream-verify' },
  'stream detect': { summary: 'tell a legacy image\'s toolstack width, guest type and format, with reasons (--json)', module: '../commands/stream-detect' },
  'stream convert': { summary: 'convert legacy -> v2 or v2 -> legacy, detecting what it can', module: '../commands/stream-convert' },
  serve: { summary: 'run a service: control-plane | control-plane-worker | suspend-store | host-agent', module: '../commands/serve' },
  up: { summary: 'run the whole fleet on this machine (what `npm start` does)', module: '../commands/up' },
  hosts: { summary: 'list hosts; drain or set maintenance', module: '../commands/hosts' },
  vms: { summary: 'list VMs or show one', module: '../commands/vms' },
  migrate: { summary: 'migrate a VM, with a live progress bar', module: '../commands/migrate' },
  suspend: { summary: 'suspend a VM into the suspend-store', module: '../commands/suspend' },
  resume: { summary: 'resume a VM from the suspend-store (its latest checkpoint, or --checkpoint ID)', module: '../commands/resume' },
  checkpoints: { summary: 'list, show, delete or download checkpoints (suspend images)', module: '../commands/checkpoints' },
  campaign: { summary: 'plan, start and watch an upgrade campaign', module: '../commands/campaign' },
};

function usage(): string {
  const lines = ['usage: ferry <command> [options]', '', 'commands:'];
  for (const [name, v] of Object.entries(VERBS)) lines.push(`  ${name.padEnd(16)} ${v.summary}`);
  lines.push('', 'Run `ferry <command> --help` for the options of one command.');
  return lines.join('\n');
}

async function main(argv: string[]): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    process.stdout.write(usage() + '\n');
    return argv.length === 0 ? 2 : 0;
  }
  const two = `${argv[0]} ${argv[1] ?? ''}`;
  const [name, rest] = VERBS[two] ? [two, argv.slice(2)] : [argv[0]!, argv.slice(1)];
  const verb = VERBS[name];
  if (!verb) {
    process.stderr.write(`ferry: unknown command '${argv.slice(0, 2).join(' ')}'\n${usage()}\n`);
    return 2;
  }
  let mod: { run?: (a: string[]) => Promise<number> };
  try {
    // Verbs load lazily so one broken verb cannot break the others.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    mod = require(verb.module) as typeof mod;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND' && String((e as Error).message).includes(verb.module.slice(3))) {
      process.stderr.write(`ferry: '${name}' is not available in this build yet\n`);
      return 2;
    }
    throw e;
  }
  return mod.run!(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`ferry: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 2;
  },
);
