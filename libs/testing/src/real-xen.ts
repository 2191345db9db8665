/**
 * The real Xen 4.17 `xl save` images carried in the repository (libs/testing/fixtures/real-xen-4.17,
 * provenance in the README there). Stored gzip; `openRealXenImage()` gives the raw stream.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';

export interface RealXenImage {
  /** File name inside REAL_XEN_DIR (gzip). */
  file: string;
  guest: 'pv' | 'hvm';
  /** Size and SHA-256 of the raw (decompressed) stream. */
  bytes: number;
  sha256: string;
  /** SHA-256 of the .gz file as stored. */
  gzipSha256: string;
}

export const REAL_XEN_DIR = path.resolve(__dirname, '../fixtures/real-xen-4.17');

export const REAL_XEN_IMAGES: readonly RealXenImage[] = JSON.parse(
  fs.readFileSync(path.join(REAL_XEN_DIR, 'images.json'), 'utf8'),
) as RealXenImage[];

/** The image's raw bytes, decompressed while read. */
export function openRealXenImage(img: RealXenImage): Readable {
  return fs.createReadStream(path.join(REAL_XEN_DIR, img.file)).pipe(createGunzip({ chunkSize: 1 << 20 }));
}
