/**
 * Decodes a save image in the browser with @ferry/stream-codec: nothing is uploaded.
 * v2 images (xl, libxl, libxc framing) are inspected as they are; legacy images are
 * detected (toolstack width, guest type, with reasons) and converted to v2 on the fly
 * so their records and pages can be described the same way (`ferry stream inspect` /
 * `ferry stream detect` use the same functions).
 */
import {
  DETECT_PREFIX,
  StreamReader,
  XL_HDR_SIZE,
  detectLegacy,
  ingestToV2,
  inspectStream,
  sniffFraming,
  sniffV2,
  viewOf,
  type ByteSource,
  type InspectReport,
  type LegacyDetection,
  type StreamFacts,
} from '@ferry/stream-codec';

export type LegacyDetectionView = LegacyDetection;

export interface InspectionResult {
  name: string;
  size: number;
  /** Outermost framing of the file as it is: xl, libxl, libxc or legacy. */
  sniffed: string;
  report: InspectReport | null;
  facts: StreamFacts | null;
  detection: LegacyDetectionView | null;
  /** What the file's width is and how we know. */
  width: { toolstack?: 32 | 64; guest?: 32 | 64; source: string } | null;
  errors: string[];
  ms: number;
}

/** The file as a stream of chunks (Blob.stream() where available, else slices). */
function chunks(file: Blob, onProgress?: (done: number) => void, chunkSize = 1 << 20): ByteSource {
  return (async function* () {
    for (let off = 0; off < file.size; off += chunkSize) {
      const c = new Uint8Array(await file.slice(off, off + chunkSize).arrayBuffer());
      onProgress?.(off + c.byteLength);
      yield c;
    }
  })();
}

export async function inspectFile(file: Blob & { name?: string }, onProgress?: (done: number) => void): Promise<InspectionResult> {
  const t0 = performance.now();
  const res: InspectionResult = { name: file.name ?? 'file', size: file.size, sniffed: '?', report: null, facts: null, detection: null, width: null, errors: [], ms: 0 };
  const head = new Uint8Array(await file.slice(0, Math.min(file.size, DETECT_PREFIX)).arrayBuffer());
  const sniffed = sniffFraming(head);
  res.sniffed = sniffed ?? 'unknown (too short)';

  if (sniffed === 'legacy' || sniffed === 'xl') {
    try {
      res.detection = await detectFramedLegacy(file);
      if (res.detection) res.width = { toolstack: res.detection.width, guest: res.detection.guestWidth, source: `detected (${res.detection.confidence})` };
    } catch (e) {
      res.errors.push(`detect: ${msg(e)}`);
    }
  }

  const legacyInside = sniffed === 'legacy' || sniffed === 'xl';
  if (legacyInside) {
    // Converts legacy -> v2 (v2 input passes through unchanged), then describes the v2 stream.
    try {
      const { output, facts } = ingestToV2(chunks(file, onProgress), { format: 'auto' });
      res.report = await inspectStream(output);
      res.facts = await facts.catch((e: unknown) => {
        res.errors.push(msg(e));
        return null;
      });
      if (res.facts?.input === 'legacy') {
        res.width = {
          toolstack: res.facts.toolstackWidth,
          guest: res.facts.guestWidth,
          source: res.facts.widthSource ?? res.width?.source ?? 'detected',
        };
      }
    } catch (e) {
      res.errors.push(msg(e));
    }
  } else if (sniffed) {
    res.report = await inspectStream(chunks(file, onProgress));
  }
  if (res.report && !res.width) {
    const f = res.report.verdict.facts;
    const gw = res.report.libxc?.pvInfo?.guestWidth;
    res.width = { guest: f?.guestWidth ?? (gw === 32 || gw === 64 ? gw : undefined), source: 'v2 stream (x86_pv_info)' };
  }
  if (res.report && !res.report.verdict.valid && res.report.verdict.error) res.errors.push(res.report.verdict.error);
  res.ms = performance.now() - t0;
  return res;
}

/**
 * The legacy detection of an image, bare or behind an xl header (as `ferry stream detect` does it): null for
 * a v2 stream. The xl header and its optional data (the domain config) are skipped, so the detector reads
 * the legacy stream itself, and says it was xl-framed.
 */
async function detectFramedLegacy(file: Blob): Promise<LegacyDetection | null> {
  const r = new StreamReader(chunks(file));
  if (await sniffV2(r)) return null;
  const xl = sniffFraming(await r.peek(XL_HDR_SIZE)) === 'xl';
  if (xl) {
    await r.read(XL_HDR_SIZE - 4, 'xl header');
    const optlen = viewOf(await r.read(4, 'xl header')).getUint32(0, true);
    await r.skip(optlen, 'xl optional data');
  }
  const prefix = await r.peek(DETECT_PREFIX);
  return detectLegacy(prefix, { complete: prefix.byteLength < DETECT_PREFIX, xl, base: r.offset });
}

function msg(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
