import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, parseBytes, parseDuration } from './config';

const base = { FERRY_ADMIN_TOKEN: 'a-long-enough-admin-token' };

describe('suspend-store configuration', () => {
  it('defaults to the local folder under .state/store', () => {
    const c = loadConfig(base);
    expect(c.port).toBe(8083);
    expect(c.backend).toEqual({ kind: 'fs', dir: expect.stringMatching(/\.state[/\\]store$/) });
    expect(c.maxUploadBytes).toBe(256 * 1024 ** 3);
    expect(c.retention).toEqual({ intervalMs: 600_000, staleUploadAgeMs: 3_600_000 });
  });

  it('chooses S3 when a bucket is given, with all its settings', () => {
    const c = loadConfig({
      ...base,
      S3_ENDPOINT: 'http://127.0.0.1:18080',
      S3_BUCKET: 'ferry-ckpt',
      S3_ACCESS_KEY_ID: 'test:tester',
      S3_SECRET_ACCESS_KEY: 'testing',
      S3_FORCE_PATH_STYLE: 'true',
      FERRY_RETAIN_LAST: '3',
      FERRY_RETAIN_MAX_AGE: '30d',
      FERRY_STORE_TOKENS: 'reader-token-0123456789:read,writer-token-0123456789:read+write',
    });
    expect(c.backend).toMatchObject({ kind: 's3', bucket: 'ferry-ckpt', forcePathStyle: true, region: 'us-east-1', partSize: 16 << 20 });
    expect(c.retention).toMatchObject({ keepLast: 3, maxAgeMs: 30 * 86_400_000 });
    expect(c.staticTokens).toEqual([
      { token: 'reader-token-0123456789', scopes: ['read'] },
      { token: 'writer-token-0123456789', scopes: ['read', 'write'] },
    ]);
  });

  it.each([
    [{}, /FERRY_ADMIN_TOKEN is required/],
    [{ FERRY_ADMIN_TOKEN: 'short' }, /FERRY_ADMIN_TOKEN must be at least 16/],
    [{ ...base, PORT: 'http' }, /^suspend-store: PORT must be a whole number/],
    [{ ...base, PORT: '70000' }, /PORT must be at most 65535/],
    [{ ...base, S3_ENDPOINT: 'not a url', S3_BUCKET: 'b-1' }, /S3_ENDPOINT must be a URL/],
    [{ ...base, S3_BUCKET: 'Bad_Bucket' }, /S3_BUCKET must be a valid bucket name/],
    [{ ...base, FERRY_STORE_BACKEND: 's3' }, /S3_BUCKET is required/],
    [{ ...base, FERRY_STORE_BACKEND: 'nfs' }, /FERRY_STORE_BACKEND/],
    [{ ...base, S3_BUCKET: 'b-1', S3_ACCESS_KEY_ID: 'k' }, /S3_SECRET_ACCESS_KEY is required/],
    [{ ...base, S3_FORCE_PATH_STYLE: 'maybe' }, /S3_FORCE_PATH_STYLE must be true or false/],
    [{ ...base, S3_PART_SIZE: '1MiB' }, /S3_PART_SIZE must be at least 5MiB/],
    [{ ...base, FERRY_STORE_MAX_UPLOAD: 'lots' }, /FERRY_STORE_MAX_UPLOAD must be a positive size/],
    [{ ...base, FERRY_RETAIN_LAST: '0' }, /FERRY_RETAIN_LAST must be at least 1/],
    [{ ...base, FERRY_RETAIN_MAX_AGE: 'forever' }, /FERRY_RETAIN_MAX_AGE must be a duration/],
    [{ ...base, FERRY_STORE_TOKENS: 'tok:read' }, /FERRY_STORE_TOKENS must be a comma-separated list/],
    [{ ...base, FERRY_STORE_TOKENS: 'a-token-of-some-length:sudo' }, /FERRY_STORE_TOKENS/],
  ])('stops on a bad setting, naming it: %j', (env, message) => {
    expect(() => loadConfig(env as NodeJS.ProcessEnv)).toThrow(ConfigError);
    expect(() => loadConfig(env as NodeJS.ProcessEnv)).toThrow(message);
  });

  it('parses sizes and durations', () => {
    expect(parseBytes('64GiB')).toBe(64 * 1024 ** 3);
    expect(parseBytes('10MB')).toBe(10_000_000);
    expect(parseBytes('512')).toBe(512);
    expect(parseBytes('x')).toBeUndefined();
    expect(parseDuration('12h')).toBe(43_200_000);
    expect(parseDuration('90')).toBe(90_000);
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('1w')).toBeUndefined();
  });
});
