/**
 * S3 for tests. `getS3Config()`:
 * 1. S3_ENDPOINT set (CI runs tools/s3/swift-s3.sh, OpenStack Swift with s3api): that server;
 * 2. else, where a Docker engine answers: a MinIO container through testcontainers (stopped at exit);
 * 3. else null, with the reason in `s3Unavailable()`: the S3 suites skip and print it.
 * Each suite makes its own bucket (see uniqueBucket()).
 */
export interface S3TestConfig {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  forcePathStyle: boolean;
  /** Which server: 'env' (S3_ENDPOINT) or 'minio' (testcontainers). */
  source: 'env' | 'minio';
}

let cached: Promise<S3TestConfig | null> | undefined;
let reason = '';

/** Why getS3Config() returned null (empty otherwise). */
export function s3Unavailable(): string {
  return reason;
}

export function s3ConfigFromEnv(env: NodeJS.ProcessEnv = process.env): S3TestConfig | null {
  if (!env.S3_ENDPOINT) return null;
  return {
    endpoint: env.S3_ENDPOINT,
    region: env.S3_REGION || 'us-east-1',
    accessKeyId: env.S3_ACCESS_KEY_ID || 'test:tester',
    secretAccessKey: env.S3_SECRET_ACCESS_KEY || 'testing',
    forcePathStyle: !/^(0|false|no)$/i.test(env.S3_FORCE_PATH_STYLE ?? 'true'),
    source: 'env',
  };
}

async function startMinio(): Promise<S3TestConfig | null> {
  let tc: typeof import('testcontainers');
  try {
    tc = await import('testcontainers');
  } catch (e) {
    reason = `testcontainers not loadable: ${(e as Error).message}`;
    return null;
  }
  try {
    await tc.getContainerRuntimeClient();
  } catch (e) {
    reason = `S3_ENDPOINT is not set and no Docker engine answers (${(e as Error).message.split('\n')[0]}); run tools/s3/swift-s3.sh and export its variables`;
    return null;
  }
  const user = 'ferrytest';
  const password = 'ferrytest-secret';
  const container = await new tc.GenericContainer('minio/minio:RELEASE.2025-04-22T22-12-26Z')
    .withCommand(['server', '/data'])
    .withEnvironment({ MINIO_ROOT_USER: user, MINIO_ROOT_PASSWORD: password })
    .withExposedPorts(9000)
    .withWaitStrategy(tc.Wait.forHttp('/minio/health/ready', 9000))
    .start();
  process.once('beforeExit', () => void container.stop().catch(() => undefined));
  return {
    endpoint: `http://${container.getHost()}:${container.getMappedPort(9000)}`,
    region: 'us-east-1',
    accessKeyId: user,
    secretAccessKey: password,
    forcePathStyle: true,
    source: 'minio',
  };
}

/** The S3 server tests should use, or null (then the reason is in s3Unavailable()). */
export function getS3Config(): Promise<S3TestConfig | null> {
  cached ??= (async () => {
    const env = s3ConfigFromEnv();
    if (env) return env;
    try {
      const minio = await startMinio();
      if (minio) return minio;
    } catch (e) {
      reason = `MinIO through testcontainers failed: ${(e as Error).message.split('\n')[0]}`;
    }
    // CI sets FERRY_REQUIRE_SERVICES=1: a missing S3 server fails the run instead of skipping suites.
    if (process.env.FERRY_REQUIRE_SERVICES === '1') throw new Error(`S3 is required (FERRY_REQUIRE_SERVICES=1) but unavailable: ${reason}`);
    return null;
  })();
  return cached;
}

/** A bucket name of its own for one suite or test: lower case, 3-63 characters. */
export function uniqueBucket(prefix = 'ferry-test'): string {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`.toLowerCase().slice(0, 63);
}

/** The environment variables the suspend-store reads for this S3 server and bucket. */
export function s3StoreEnv(c: S3TestConfig, bucket: string): Record<string, string> {
  return {
    FERRY_STORE_BACKEND: 's3',
    S3_ENDPOINT: c.endpoint,
    S3_BUCKET: bucket,
    S3_REGION: c.region,
    S3_ACCESS_KEY_ID: c.accessKeyId,
    S3_SECRET_ACCESS_KEY: c.secretAccessKey,
    S3_FORCE_PATH_STYLE: String(c.forcePathStyle),
  };
}
