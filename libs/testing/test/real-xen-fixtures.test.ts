import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REAL_XEN_DIR, REAL_XEN_IMAGES } from '../src/real-xen';

// The fixtures are what images.json says (a clone that lost them, or holds LFS pointers, fails here by name).
describe('real Xen 4.17 fixtures', () => {
  it('are in the repository, as listed', () => {
    expect(REAL_XEN_IMAGES.map((i) => i.guest).sort()).toEqual(['hvm', 'pv']);
    for (const img of REAL_XEN_IMAGES) {
      const gz = fs.readFileSync(path.join(REAL_XEN_DIR, img.file));
      expect(createHash('sha256').update(gz).digest('hex'), img.file).toBe(img.gzipSha256);
    }
  });
});
