import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { startSuspendStore } from '../src/index';
import { ADMIN } from './helpers';

const ROOT = path.resolve(__dirname, '../../..');

describe('suspend-store start-up', () => {
  it('the process stops at start with a message naming the bad variable', () => {
    const run = (env: Record<string, string>) =>
      spawnSync(process.execPath, [path.join(ROOT, 'apps/cli/bin/run-ts.js'), path.join(ROOT, 'apps/suspend-store/src/main.ts')], {
        env: { PATH: process.env.PATH ?? '', ...env },
        encoding: 'utf8',
        timeout: 60_000,
      });
    const missing = run({});
    expect(missing.status).toBe(1);
    expect(missing.stderr.trim()).toBe('suspend-store: FERRY_ADMIN_TOKEN is required: the first admin bearer token (at least 16 characters)');
    const bad = run({ FERRY_ADMIN_TOKEN: ADMIN, PORT: 'eighty' });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/^suspend-store: PORT must be a whole number/);
  }, 120_000);

  it('refuses to start when the object store cannot be reached', async () => {
    await expect(
      startSuspendStore({
        PORT: '0',
        FERRY_ADMIN_TOKEN: ADMIN,
        FERRY_LOG_LEVEL: 'error',
        S3_ENDPOINT: 'http://127.0.0.1:9',
        S3_BUCKET: 'nowhere',
        S3_ACCESS_KEY_ID: 'k',
        S3_SECRET_ACCESS_KEY: 's',
        S3_FORCE_PATH_STYLE: 'true',
      }),
    ).rejects.toThrow(/suspend-store: cannot use s3 http:\/\/127.0.0.1:9 bucket nowhere/);
  }, 60_000);
});
