/** The golden streams (see golden/README.md) and their deterministic mutants (seed 0 = the stream itself). */
import { rng } from './helpers';
import { mutate } from './mutate';

export const GOLDEN = [
  { file: 'hvm64.libxl', format: 'libxl' },
  { file: 'hvm32.libxl', format: 'libxl' },
  { file: 'hvm64.libxc', format: 'libxc' },
  { file: 'hvm64.xl', format: 'xl' },
  { file: 'synth-pv.xl', format: 'xl' },
] as const;

export const MUTANTS_PER_BASE = 120;

export function mutantOf(base: Uint8Array, seed: number): Uint8Array {
  if (seed === 0) return base;
  const r = rng(seed * 7919);
  // Aim mutations at the structure: most of a stream is page contents.
  return mutate(base, r);
}
