/**
 * `ferry`: one command for operators. Each verb lives in src/commands/<verb>.ts and
 * exports `run(argv: string[]): Promise<number>` (the exit code); this file only
 * dispatches, so verbs load lazily and a broken verb cannot break the others.
 */
import { VERBS } from '../commands/verbs';

/** The CLI's version (apps/cli/package.json). */
function version(): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('../../package.json') as { version: string }).version;
}

function usage(): string {
  const lines = ['usage: ferry <command> [options]', '', 'commands:'];
  for (const [name, v] of Object.entries(VERBS)) lines.push(`  ${name.padEnd(16)} ${v.summary}`);
  lines.push('', 'Run `ferry <command> --help` for the options of one command; `ferry --version` for the version.');
  return lines.join('\n');
}

async function main(argv: string[]): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    process.stdout.write(usage() + '\n');
    return argv.length === 0 ? 2 : 0;
  }
  if (argv[0] === '--version' || argv[0] === '-V' || argv[0] === 'version') {
    process.stdout.write(`ferry ${version()}\n`);
    return 0;
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
