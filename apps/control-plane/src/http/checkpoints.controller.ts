import { Controller, Delete, Get, HttpCode, Logger, Param, Post, Query, Req, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiHeader, ApiOperation, ApiProduces, ApiResponse, ApiTags } from '@nestjs/swagger';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { checkpointIdSchema, checkpointImageQuerySchema, checkpointSignedImageQuerySchema } from '@ferry/contracts';
import { CheckpointsService } from '../core/checkpoints.service';
import { Public, Roles } from './auth';
import { QueryDoc } from './openapi';
import { checkpointQuery } from './schemas';
import { QueryPipe, ZodPipe, type z } from './validation';

/** Headers of the store's image response that a download passes on. */
const PASSED = ['content-type', 'content-length', 'content-range', 'accept-ranges', 'etag', 'x-ferry-sha256', 'x-ferry-vm', 'x-ferry-created', 'x-ferry-format', 'x-ferry-source-format'];

@ApiTags('checkpoints')
@ApiBearerAuth()
@Controller('v1/checkpoints')
export class CheckpointsController {
  private readonly log = new Logger('Checkpoints');
  constructor(private readonly checkpoints: CheckpointsService) {}

  @Get() @Roles('viewer') @QueryDoc(checkpointQuery)
  @ApiOperation({ summary: "checkpoints, newest first (vm= filters to one VM's), each with what the store's retention will do to it" })
  list(@Query(new QueryPipe(checkpointQuery)) q: z.output<typeof checkpointQuery>) {
    return this.checkpoints.list(q);
  }

  @Get(':id') @Roles('viewer')
  @ApiOperation({ summary: 'one checkpoint, checked with the suspend-store (404 once the store no longer has it)' })
  get(@Param('id', new ZodPipe(checkpointIdSchema, 'id')) id: string) {
    return this.checkpoints.get(id);
  }

  @Delete(':id') @HttpCode(204) @Roles('operator')
  @ApiOperation({ summary: "delete a checkpoint from the suspend-store; 409 while a resume reads it, or when it is a suspended VM's only image" })
  @ApiResponse({ status: 204, description: 'Deleted' })
  @ApiResponse({ status: 409, description: 'In use by a queued or running resume, or the only image of a suspended VM' })
  async delete(@Param('id', new ZodPipe(checkpointIdSchema, 'id')) id: string): Promise<void> {
    await this.checkpoints.delete(id);
  }

  @Post(':id/download-link') @HttpCode(200) @Roles('operator') @QueryDoc(checkpointImageQuerySchema)
  @ApiOperation({ summary: 'a URL that downloads the image without a bearer header for the next minute (what a browser link needs)' })
  downloadLink(
    @Param('id', new ZodPipe(checkpointIdSchema, 'id')) id: string,
    @Query(new ZodPipe(checkpointImageQuerySchema)) q: z.output<typeof checkpointImageQuerySchema>,
  ) {
    return this.checkpoints.downloadLink(id, q);
  }

  /**
   * Streams the image from the store through the control plane, so a client needs only its control-plane
   * token and a route to the control plane. The store checks every block as it streams and cuts the
   * transfer on a mismatch; the cut is passed on (the client sees a broken transfer, never a clean end).
   */
  @Get(':id/image') @Roles('operator') @QueryDoc(checkpointImageQuerySchema)
  @ApiOperation({ summary: 'download the image (v2 as stored; format=legacy&width=32|64 down-converts); Range is passed to the store' })
  @ApiHeader({ name: 'Range', required: false, description: 'bytes=FIRST-LAST (v2 only)' })
  @ApiProduces('application/octet-stream')
  async image(
    @Param('id', new ZodPipe(checkpointIdSchema, 'id')) id: string,
    @Query(new ZodPipe(checkpointImageQuerySchema)) q: z.output<typeof checkpointImageQuerySchema>,
    @Req() req: IncomingMessage,
    @Res() res: ServerResponse,
  ): Promise<void> {
    await this.stream(id, q, req, res);
  }

  /** The same download, authorised by a link from POST download-link instead of a bearer header. */
  @Get(':id/image/signed') @Public() @QueryDoc(checkpointSignedImageQuerySchema)
  @ApiOperation({ summary: 'download the image with a link from POST /v1/checkpoints/{id}/download-link (no bearer header)' })
  @ApiProduces('application/octet-stream')
  async signedImage(
    @Param('id', new ZodPipe(checkpointIdSchema, 'id')) id: string,
    @Query(new ZodPipe(checkpointSignedImageQuerySchema)) q: z.output<typeof checkpointSignedImageQuerySchema>,
    @Req() req: IncomingMessage,
    @Res() res: ServerResponse,
  ): Promise<void> {
    this.checkpoints.checkLink(id, q);
    await this.stream(id, { format: q.format, ...(q.width ? { width: q.width } : {}) }, req, res);
  }

  private async stream(id: string, q: { format: 'v2' | 'legacy'; width?: '32' | '64' }, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const aborter = new AbortController();
    const onClose = (): void => {
      if (!res.writableFinished) aborter.abort();
    };
    res.once('close', onClose);
    try {
      const range = typeof req.headers.range === 'string' ? req.headers.range : undefined;
      const upstream = await this.checkpoints.open(id, q, range, aborter.signal);
      const headers: Record<string, string> = {};
      for (const h of PASSED) {
        const v = upstream.headers.get(h);
        if (v !== null) headers[h] = v;
      }
      const ext = q.format === 'legacy' ? `legacy${q.width ?? ''}` : 'v2';
      headers['content-disposition'] = `attachment; filename="${id}.${ext}"`;
      res.statusCode = upstream.status;
      for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
      if (!upstream.body) {
        res.end();
        return;
      }
      try {
        await pipeline(Readable.fromWeb(upstream.body as import('node:stream/web').ReadableStream<Uint8Array>), res);
      } catch (e) {
        if (!aborter.signal.aborted) this.log.warn(`download of ${id} cut: ${(e as Error).message}`);
        res.destroy();
      }
    } finally {
      res.off('close', onClose);
    }
  }
}
