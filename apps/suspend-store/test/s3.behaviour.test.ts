import { getS3Config, s3StoreEnv, s3Unavailable, uniqueBucket } from '@ferry/testing';
import { behaviourSuite } from './behaviour';
import { dropBucket } from './helpers';

behaviourSuite(
  'S3',
  async () => {
    const c = await getS3Config();
    if (!c) return null;
    const buckets: string[] = [];
    const fresh = (): Record<string, string> => {
      const bucket = uniqueBucket('ferry-store');
      buckets.push(bucket);
      return s3StoreEnv(c, bucket);
    };
    const env = fresh();
    return {
      env: () => env,
      isolated: async () => fresh(),
      cleanup: async () => {
        for (const bkt of buckets) await dropBucket(c, bkt);
      },
    };
  },
  s3Unavailable,
);
