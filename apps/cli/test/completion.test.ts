import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '../../..');
const BIN = path.join(ROOT, 'apps/cli/bin/ferry.js');
const ferry = (...args: string[]) => run(process.execPath, [BIN, ...args], { cwd: ROOT });

describe('ferry --version and completion', () => {
  it('--version prints the version of the CLI package', async () => {
    const { version } = JSON.parse(fs.readFileSync(path.join(ROOT, 'apps/cli/package.json'), 'utf8')) as { version: string };
    expect((await ferry('--version')).stdout).toBe(`ferry ${version}\n`);
    expect((await ferry('-V')).stdout).toBe(`ferry ${version}\n`);
  });

  it('bash: the script completes verbs, subcommands and stream sub-verbs in a real bash', async () => {
    const script = (await ferry('completion', 'bash')).stdout;
    const complete = async (words: string[]): Promise<string[]> => {
      const probe = `${script}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _ferry; printf '%s\\n' "\${COMPREPLY[@]}"`;
      const { stdout } = await run('bash', ['-c', probe]);
      return stdout.split('\n').filter(Boolean);
    };
    expect(await complete(['ferry', 'mi'])).toEqual(['migrate']);
    expect((await complete(['ferry', ''])).sort()).toEqual(expect.arrayContaining(['campaign', 'checkpoints', 'completion', 'hosts', 'stream', '--version']));
    expect(await complete(['ferry', 'stream', 'c'])).toEqual(['convert']);
    expect(await complete(['ferry', 'checkpoints', 'd'])).toEqual(['delete', 'download']);
    expect(await complete(['ferry', 'completion', ''])).toEqual(['bash', 'zsh']);
  });

  it('zsh: a #compdef script naming the same words; a wrong shell is a usage error', async () => {
    const script = (await ferry('completion', 'zsh')).stdout;
    expect(script.startsWith('#compdef ferry\n')).toBe(true);
    expect(script).toContain('stream) compadd -- inspect verify detect convert ;;');
    expect(script).toContain('compdef _ferry ferry');
    await expect(ferry('completion', 'fish')).rejects.toMatchObject({ code: 2, stderr: 'usage: ferry completion bash|zsh\n' });
  });
});
