import { Inject, Injectable, Logger } from '@nestjs/common';
import { createHash, randomBytes } from 'node:crypto';
import { STORE_CONFIG } from '../common/tokens';
import type { StoreConfig } from '../config';
import { IntegrityError, StoreError, notFound } from '../common/errors';
import { asBytes, coalesce, holdLastChunk, peek, prime, readAhead } from '../common/streams';
import { MetricsService } from '../metrics/metrics.service';
import { BLOCK_SIZE, view, type CheckpointMeta, type CheckpointView } from './checkpoint.model';
import { CheckpointRepository } from './checkpoint.repository';
import { ConversionService, type IngestOptions } from './conversion.service';
import { StreamDigest, coveringRange, verifiedRange, verifiedWhole } from './integrity';

/** Size of the pieces the upload and download paths work in. */
const CHUNK = 1024 * 1024;

export interface UploadRequest extends IngestOptions {
  id: string;
  vm: string;
  /** sha256 (hex) of the body as sent, when the client gives one. */
  sha256?: string;
  labels: Record<string, string>;
  body: AsyncIterable<Uint8Array>;
  /** Content-Length when the client sent one. */
  contentLength?: number;
  /** Fires when the client goes away. */
  signal?: AbortSignal;
}

export interface ReadRequest {
  id: string;
  format: 'v2' | 'legacy';
  width?: 32 | 64;
  /** The Range header, verbatim. */
  range?: string;
}

export interface ReadResult {
  status: 200 | 206;
  headers: Record<string, string>;
  body: AsyncIterable<Uint8Array>;
}

class ClientGone extends StoreError {
  constructor() {
    super(499, 'client_closed', 'client closed the connection during the upload');
  }
}

/** Uploads (with conversion and verification), checked reads, listing and deletion of checkpoints. */
@Injectable()
export class CheckpointsService {
  private readonly log = new Logger('Checkpoints');
  private readonly inflight = new Set<string>();

  constructor(
    private readonly repo: CheckpointRepository,
    private readonly conversion: ConversionService,
    private readonly metrics: MetricsService,
    @Inject(STORE_CONFIG) private readonly config: StoreConfig,
  ) {}

  private refuse(status: number, reason: string, message: string): StoreError {
    this.metrics.refusals.inc({ reason });
    return new StoreError(status, reason, message);
  }

  async upload(req: UploadRequest): Promise<CheckpointView> {
    const { id, config } = { id: req.id, config: this.config };
    if (req.contentLength !== undefined && req.contentLength > config.maxUploadBytes) {
      throw this.refuse(413, 'too_large', `upload of ${req.contentLength} bytes exceeds the limit of ${config.maxUploadBytes} bytes`);
    }
    if (this.inflight.has(id)) throw this.refuse(409, 'exists', `checkpoint ${id} is being uploaded right now`);
    this.inflight.add(id);
    try {
      if (await this.repo.exists(id)) throw this.refuse(409, 'exists', `checkpoint ${id} already exists; delete it first`);
      return await this.store(req);
    } finally {
      this.inflight.delete(id);
    }
  }

  private async store(req: UploadRequest): Promise<CheckpointView> {
    const { id, signal } = req;
    const max = this.config.maxUploadBytes;
    const metrics = this.metrics;
    const object = `image-${Date.now().toString(36)}-${randomBytes(6).toString('hex')}.v2`;
    const inHash = createHash('sha256');
    // A v2 image is stored byte for byte: its input hash is the stored hash, so it is not computed twice.
    let hashInput = true;
    let inSize = 0;
    let tooLarge = false;
    const input = async function* (): AsyncGenerator<Uint8Array> {
      for await (const c of req.body) {
        inSize += c.byteLength;
        if (inSize > max) {
          tooLarge = true;
          throw new StoreError(413, 'too_large', `upload exceeds the limit of ${max} bytes`);
        }
        if (hashInput) inHash.update(c);
        metrics.bytesIn.inc(c.byteLength);
        yield c;
      }
      if (signal?.aborted) throw new ClientGone();
    };
    const digest = new StreamDigest(BLOCK_SIZE);
    let cause: unknown;
    let written = false;
    try {
      // Socket-sized chunks are joined into 1 MiB pieces: the verifier is several times faster on them.
      const { first, all } = await peek(coalesce(input(), CHUNK));
      // A v2 image passes through unchanged: with a Content-Length the stored size is known up front,
      // which lets the S3 backend send one streamed PutObject instead of a multipart upload.
      const through = first !== undefined && (await this.conversion.passesThrough(first, req.format));
      hashInput = !through;
      const size = through && req.contentLength !== undefined ? req.contentLength : undefined;
      const { output, facts } = this.conversion.ingest(all, req);
      const tapped = async function* (): AsyncGenerator<Uint8Array> {
        try {
          for await (const c of output) {
            digest.update(c);
            yield c;
          }
        } catch (e) {
          cause = e;
          throw e;
        }
      };
      // The store's writer (a file, an S3 request) runs while the codec works on the next piece.
      await this.repo.putImage(id, object, readAhead(tapped()), signal, size);
      written = true;
      const f = await facts;
      const d = digest.finish();
      if (through && d.size !== inSize) throw new Error(`v2 pass-through changed the size (${inSize} -> ${d.size})`);
      const sourceSha = through ? d.sha256 : inHash.digest('hex');
      if (req.sha256 && req.sha256 !== sourceSha) {
        throw this.refuse(422, 'checksum', `sha256 of the received body is ${sourceSha}, the client declared ${req.sha256}`);
      }
      const meta: CheckpointMeta = {
        id,
        vm: req.vm,
        created: new Date().toISOString(),
        object,
        size: d.size,
        sha256: d.sha256,
        blockHash: digest.blockHash,
        blockSize: BLOCK_SIZE,
        blocks: d.blocks,
        source: {
          format: f.input,
          framing: f.framing,
          byteOrder: f.byteOrder,
          guest: f.guest,
          ...(f.guestWidth ? { guestWidth: f.guestWidth } : {}),
          ...(f.toolstackWidth ? { width: f.toolstackWidth } : {}),
          ...(f.widthSource ? { widthSource: f.widthSource } : {}),
          ...(f.guestSource ? { guestSource: f.guestSource } : {}),
          formatSource: req.format === 'auto' ? 'detected' : 'declared',
          declared: { format: req.format, width: String(req.width), guest: req.guest },
          ...(f.xenVersion ? { xenVersion: f.xenVersion } : {}),
          size: inSize,
          sha256: sourceSha,
        },
        stats: { pages: f.pages, vcpus: f.vcpus, records: f.records },
        labels: req.labels,
      };
      // Another instance may have committed the same id meanwhile: first commit wins.
      if (await this.repo.exists(id)) throw this.refuse(409, 'exists', `checkpoint ${id} already exists; delete it first`);
      await this.repo.commit(meta);
      metrics.uploads.inc({ result: 'stored' });
      if (f.input === 'legacy') metrics.conversions.inc({ direction: 'legacy_to_v2', width: String(f.toolstackWidth ?? 'unknown') });
      this.log.log(`stored checkpoint ${id} (vm ${req.vm}, ${meta.size} bytes, from ${f.input})`);
      return view(meta);
    } catch (e) {
      if (written) await this.repo.deleteImageObject(id, object).catch((e2: unknown) => this.log.warn(`cleanup of ${id}: ${String(e2)}`));
      throw this.classify(cause ?? e, tooLarge, signal);
    }
  }

  /** Maps a failed upload to the error the client gets, and counts it. */
  private classify(e: unknown, tooLarge: boolean, signal?: AbortSignal): unknown {
    if (signal?.aborted || e instanceof ClientGone) {
      this.metrics.uploads.inc({ result: 'failed' });
      return new ClientGone();
    }
    if (tooLarge) {
      this.metrics.uploads.inc({ result: 'refused' });
      return this.refuse(413, 'too_large', `upload exceeds the limit of ${this.config.maxUploadBytes} bytes`);
    }
    if (e instanceof StoreError) {
      this.metrics.uploads.inc({ result: e.status < 500 ? 'refused' : 'failed' });
      return e;
    }
    const r = this.conversion.refusal(e);
    if (r) {
      this.metrics.uploads.inc({ result: 'refused' });
      return this.refuse(422, r.reason, r.message);
    }
    this.metrics.uploads.inc({ result: 'failed' });
    return e;
  }

  async meta(id: string): Promise<CheckpointMeta> {
    const meta = await this.repo.getMeta(id);
    if (!meta) throw notFound(`checkpoint ${id}`);
    return meta;
  }

  /** HEAD: metadata as headers; checks eagerly that the image object is there with the recorded size. */
  async head(id: string): Promise<Record<string, string>> {
    const meta = await this.meta(id);
    const info = await this.repo.headImage(meta);
    if (!info || info.size !== meta.size) {
      this.metrics.integrityFailures.inc();
      throw new IntegrityError(`checkpoint ${id}: stored image is ${info ? `${info.size} bytes, recorded ${meta.size}` : 'missing'}`);
    }
    return { ...this.headers(meta), 'content-length': String(meta.size) };
  }

  private headers(meta: CheckpointMeta): Record<string, string> {
    return {
      'content-type': 'application/octet-stream',
      'accept-ranges': 'bytes',
      etag: `"${meta.sha256}"`,
      'x-ferry-vm': meta.vm,
      'x-ferry-created': meta.created,
      'x-ferry-sha256': meta.sha256,
      'x-ferry-source-format': meta.source.format,
    };
  }

  async read(req: ReadRequest): Promise<ReadResult> {
    const meta = await this.meta(req.id);
    return req.format === 'legacy' ? this.readLegacy(meta, req.width ?? 64) : this.readV2(meta, req.range);
  }

  private async readV2(meta: CheckpointMeta, rangeHeader?: string): Promise<ReadResult> {
    const range = rangeHeader ? parseRange(rangeHeader, meta.size) : undefined;
    if (range === 'unsatisfiable') {
      this.metrics.refusals.inc({ reason: 'range' });
      throw new StoreError(416, 'range', `range '${rangeHeader}' is outside the image of ${meta.size} bytes`);
    }
    if (range) {
      const cover = coveringRange(meta, range.start, range.end);
      const raw = await this.repo.openImage(meta, cover);
      if (!raw) throw this.missing(meta);
      return {
        status: 206,
        headers: {
          ...this.headers(meta),
          'content-length': String(range.end - range.start + 1),
          'content-range': `bytes ${range.start}-${range.end}/${meta.size}`,
        },
        body: this.counted(verifiedRange(meta, readAhead(asBytes(raw)), range.start, range.end)),
      };
    }
    const raw = await this.repo.openImage(meta);
    if (!raw) throw this.missing(meta);
    return {
      status: 200,
      headers: { ...this.headers(meta), 'content-length': String(meta.size) },
      body: this.counted(verifiedWhole(meta, readAhead(asBytes(raw)))),
    };
  }

  private async readLegacy(meta: CheckpointMeta, width: 32 | 64): Promise<ReadResult> {
    const raw = await this.repo.openImage(meta);
    if (!raw) throw this.missing(meta);
    const checked = verifiedWhole(meta, readAhead(asBytes(raw)))[Symbol.asyncIterator]();
    // The codec gets an iterator it cannot close early, so whatever it leaves unread is still
    // read and checked below before the last converted chunk goes out.
    const source: AsyncIterable<Uint8Array> = { [Symbol.asyncIterator]: () => ({ next: () => checked.next() }) };
    const dropped = (what: string): void => this.log.log(`checkpoint ${meta.id} as legacy ${width}-bit leaves out ${what}`);
    const converted = holdLastChunk(this.conversion.toLegacy(source, width, dropped), async () => {
      for (let n = await checked.next(); !n.done; n = await checked.next());
    });
    let body: AsyncIterable<Uint8Array>;
    try {
      body = await prime(converted);
    } catch (e) {
      await checked.return?.(undefined).catch(() => undefined);
      raw.destroy();
      const r = this.conversion.refusal(e);
      if (r) throw this.refuse(422, r.reason, `checkpoint ${meta.id} cannot be sent as legacy ${width}-bit: ${r.message}`);
      if (e instanceof IntegrityError) this.metrics.integrityFailures.inc();
      throw e;
    }
    this.metrics.conversions.inc({ direction: 'v2_to_legacy', width: String(width) });
    const { etag: _e, 'accept-ranges': _a, ...headers } = this.headers(meta);
    return { status: 200, headers: { ...headers, 'x-ferry-format': `legacy-${width}` }, body: this.counted(body) };
  }

  private missing(meta: CheckpointMeta): IntegrityError {
    this.metrics.integrityFailures.inc();
    return new IntegrityError(`checkpoint ${meta.id}: stored image object is missing`);
  }

  private async *counted(body: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    try {
      for await (const c of body) {
        this.metrics.bytesOut.inc(c.byteLength);
        yield c;
      }
    } catch (e) {
      if (e instanceof IntegrityError) {
        this.metrics.integrityFailures.inc();
        this.log.error(e.message);
      }
      throw e;
    }
  }

  async delete(id: string, cause: 'request' | 'retention' = 'request'): Promise<void> {
    if (cause === 'request' && !(await this.repo.exists(id))) throw notFound(`checkpoint ${id}`);
    await this.repo.delete(id);
    this.metrics.deletions.inc({ cause });
  }

  /** A page of checkpoints in id order, optionally of one VM. The cursor is opaque (base64url of the last id). */
  async list(opts: { vm?: string; cursor?: string; limit: number }): Promise<{ items: CheckpointView[]; nextCursor: string | null }> {
    let after = opts.cursor ? decodeCursor(opts.cursor) : undefined;
    const items: CheckpointView[] = [];
    for (;;) {
      // Scan in pages of at least 100 ids: with a VM filter most ids may not match.
      const page = await this.repo.listIds(after, Math.max(100, opts.limit - items.length));
      for (const id of page.names) {
        after = id;
        const meta = await this.repo.getMeta(id).catch(() => null);
        if (!meta || (opts.vm !== undefined && meta.vm !== opts.vm)) continue;
        items.push(view(meta));
        if (items.length === opts.limit) return { items, nextCursor: page.truncated || id !== page.names.at(-1) ? encodeCursor(id) : null };
      }
      if (!page.truncated) return { items, nextCursor: null };
    }
  }
}

export function encodeCursor(id: string): string {
  return Buffer.from(id, 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): string {
  const id = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(id)) throw new StoreError(400, 'bad_request', 'invalid cursor');
  return id;
}

/**
 * One `bytes=` range (first-last, first-, -suffix). Several ranges or another unit: undefined
 * (the whole image is sent, as HTTP allows). Outside the image: 'unsatisfiable'.
 */
export function parseRange(header: string, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/.exec(header);
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  let start: number;
  let end: number;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0) return 'unsatisfiable';
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (m[2] !== '' && Number(m[2]) < start) return undefined;
  }
  if (start >= size || size === 0) return 'unsatisfiable';
  return { start, end };
}
