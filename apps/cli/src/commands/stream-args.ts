import { parseArgs, type ParseArgsConfig } from 'node:util';
import { openInput, type Input } from '../io';

/** The framings `ferry stream inspect|verify` accept for -f. */
export const STREAM_FORMATS = ['auto', 'xl', 'libxl', 'libxc'] as const;
export type StreamFormat = (typeof STREAM_FORMATS)[number];

type Options = NonNullable<ParseArgsConfig['options']>;
type Values<O extends Options> = ReturnType<typeof parseArgs<{ options: O; allowPositionals: true }>>['values'];

/**
 * Parses `ferry stream <verb> [options] FILE|-` the same way for every verb that reads one
 * image: -f/--format and -h/--help are common; a usage error prints USAGE and gives exit 2,
 * --help prints it and gives 0. Otherwise returns the values, the format, the FILE argument and the opened input.
 */
export function parseStreamCommand<O extends Options>(
  verb: string,
  usage: string,
  argv: string[],
  options: O,
): { code: number } | { values: Values<O>; format: StreamFormat; path: string; input: Input } {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: { format: { type: 'string', short: 'f', default: 'auto' }, help: { type: 'boolean', short: 'h', default: false }, ...options },
      allowPositionals: true,
    });
  } catch (e) {
    process.stderr.write(`ferry stream ${verb}: ${(e as Error).message}\n${usage}\n`);
    return { code: 2 };
  }
  const { values, positionals } = parsed as unknown as { values: Values<O> & { help: boolean; format: string }; positionals: string[] };
  if (values.help) {
    process.stdout.write(usage + '\n');
    return { code: 0 };
  }
  if (positionals.length !== 1 || !STREAM_FORMATS.includes(values.format as StreamFormat)) {
    process.stderr.write(`${usage}\n`);
    return { code: 2 };
  }
  try {
    return { values, format: values.format as StreamFormat, path: positionals[0]!, input: openInput(positionals[0]) };
  } catch (e) {
    process.stderr.write(`ferry stream ${verb}: ${(e as Error).message}\n`);
    return { code: 2 };
  }
}
