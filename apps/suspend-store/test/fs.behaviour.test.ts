import * as fs from 'node:fs';
import { behaviourSuite } from './behaviour';
import { tempDir } from './helpers';

const dirs: string[] = [];
const fresh = (): Record<string, string> => {
  const d = tempDir('fs');
  dirs.push(d);
  return { FERRY_STORE_BACKEND: 'fs', FERRY_STORE_DIR: d };
};

behaviourSuite(
  'local folder',
  async () => {
    const env = fresh();
    return {
      env: () => env,
      isolated: async () => fresh(),
      cleanup: async () => {
        for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
      },
    };
  },
  () => '',
);
