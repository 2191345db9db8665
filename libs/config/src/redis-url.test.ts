import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, env, parseRedisUrl, redisUrlWithCredentials, refusePlaceholderSecrets, z } from './index';

describe('parseRedisUrl', () => {
  it('takes one server as ioredis does', () => {
    expect(parseRedisUrl('redis://u:p%40ss@10.0.0.1:6380/2')).toEqual({ kind: 'standalone', url: 'redis://u:p%40ss@10.0.0.1:6380/2', password: 'p@ss' });
  });
  it('takes a sentinel set, the primary name, credentials and db', () => {
    expect(parseRedisUrl('redis+sentinel://agent-h1:s3cr%2Ft@s1:26379,s2,[::1]:26380/ferry-main/3?sentinelPassword=sp')).toEqual({
      kind: 'sentinel',
      sentinels: [
        { host: 's1', port: 26379 },
        { host: 's2', port: 26379 },
        { host: '::1', port: 26380 },
      ],
      name: 'ferry-main',
      db: 3,
      tls: false,
      username: 'agent-h1',
      password: 's3cr/t',
      sentinelPassword: 'sp',
    });
    expect(parseRedisUrl('rediss+sentinel://s1:1/m')).toMatchObject({ tls: true, name: 'm' });
  });
  it('says what is wrong', () => {
    expect(() => parseRedisUrl('redis+sentinel://s1:26379')).toThrow(/redis\+sentinel:\/\/host:port/);
    expect(() => parseRedisUrl('redis+sentinel://s1:99999/m')).toThrow(/sentinel 's1:99999'/);
    expect(() => parseRedisUrl('redis+sentinel://s1/m?master=x')).toThrow(/unknown option 'master'/);
    expect(() => parseRedisUrl('http://x')).toThrow(/must be redis:\/\//);
    const schema = z.object({ REDIS_URL: env.redisUrl() });
    expect(() => loadConfig(schema, { REDIS_URL: 'sentinel://x' })).toThrow(/REDIS_URL: must be redis:\/\//);
  });
  it('puts an agent user into either form', () => {
    expect(redisUrlWithCredentials('redis://127.0.0.1:6379', 'a-h1', 'p/w')).toBe('redis://a-h1:p%2Fw@127.0.0.1:6379');
    expect(redisUrlWithCredentials('redis+sentinel://old:x@s1:1,s2:2/m', 'a-h1', 'pw')).toBe('redis+sentinel://a-h1:pw@s1:1,s2:2/m');
  });
});

describe('refusePlaceholderSecrets', () => {
  it('names every variable that holds an example value', () => {
    let err: unknown;
    try {
      refusePlaceholderSecrets({
        FERRY_ADMIN_TOKEN: 'replace-me',
        FERRY_AGENT_SECRET: 'change-me-agent-secret-long-enough',
        FERRY_STORE_TOKENS: 'a-real-token-0123456789:read+write,<token>:read',
        REDIS_URL: 'redis+sentinel://u:changeme@s1/m',
        S3_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG',
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).issues.map((i) => i.variable)).toEqual(['FERRY_ADMIN_TOKEN', 'FERRY_AGENT_SECRET', 'FERRY_STORE_TOKENS', 'REDIS_URL']);
    expect((err as Error).message).toMatch(/^invalid configuration: FERRY_ADMIN_TOKEN: is a placeholder, not a secret/);
  });
  it('lets real secrets through', () => {
    expect(() => refusePlaceholderSecrets({ FERRY_ADMIN_TOKEN: 'Zq3v9rT1-xYk2mWb7Lp0', REDIS_URL: 'redis://:Zq3v9rT1@r:6379' })).not.toThrow();
  });
});
