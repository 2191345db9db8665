import { Controller, Delete, Get, Head, HttpCode, Logger, Param, Put, Query, Req, Res, UseGuards } from '@nestjs/common';
import {
  ApiBearerAuth,
  ApiBody,
  ApiConsumes,
  ApiHeader,
  ApiOperation,
  ApiParam,
  ApiProduces,
  ApiQuery,
  ApiResponse,
  ApiTags,
} from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { AuthGuard, RequireScope } from '../auth/auth.guard';
import { validateId } from './checkpoint.model';
import { parseListQuery, parseReadQuery, parseUploadQuery } from './checkpoints.dto';
import { CheckpointsService, type ReadResult } from './checkpoints.service';
import { bodyChunks, writeAll } from '../common/streams';

const ID_PARAM = { name: 'id', description: 'Checkpoint id: 1-128 of A-Z a-z 0-9 . _ -, starting with a letter or digit' };

@ApiTags('checkpoints')
@ApiBearerAuth()
@UseGuards(AuthGuard)
@Controller('v1/checkpoints')
export class CheckpointsController {
  private readonly log = new Logger('CheckpointsController');

  constructor(private readonly checkpoints: CheckpointsService) {}

  @Put(':id')
  @RequireScope('write')
  @ApiOperation({
    summary: 'Upload a checkpoint image (streamed)',
    description:
      'The body is the save image, of any size, streamed. A legacy image is converted to v2 on the fly, a v2 image is verified; ' +
      'a malformed one is refused with 422 and nothing is kept. The checkpoint becomes visible only once complete and verified. ' +
      'Ids are write-once: an existing id gives 409.',
  })
  @ApiParam(ID_PARAM)
  @ApiQuery({ name: 'vm', required: true, description: 'The VM this image belongs to' })
  @ApiQuery({ name: 'format', required: false, enum: ['auto', 'v2', 'legacy'] })
  @ApiQuery({ name: 'width', required: false, enum: ['auto', '32', '64'], description: 'Toolstack width of a legacy image' })
  @ApiQuery({ name: 'guest', required: false, enum: ['auto', 'pv', 'hvm'] })
  @ApiQuery({ name: 'sha256', required: false, description: 'sha256 (hex) of the body as sent; a mismatch gives 422' })
  @ApiQuery({ name: 'label', required: false, isArray: true, description: 'key=value, repeatable' })
  @ApiConsumes('application/octet-stream')
  @ApiBody({ schema: { type: 'string', format: 'binary' } })
  @ApiResponse({ status: 201, description: 'Stored; the body is the checkpoint metadata' })
  @ApiResponse({ status: 400, description: 'Bad id or query parameter' })
  @ApiResponse({ status: 409, description: 'The id exists already (or is being uploaded)' })
  @ApiResponse({ status: 413, description: 'Larger than FERRY_STORE_MAX_UPLOAD' })
  @ApiResponse({ status: 422, description: 'Malformed, truncated, ambiguous or unsupported image, or sha256 mismatch' })
  async put(@Param('id') id: string, @Query() query: unknown, @Req() req: Request, @Res() res: Response): Promise<void> {
    validateId(id, 'checkpoint id');
    const q = parseUploadQuery(query);
    const length = req.headers['content-length'];
    const aborter = new AbortController();
    const onClose = (): void => {
      if (!req.complete) aborter.abort();
    };
    req.once('close', onClose);
    // The idle timeout guards the body; once it is all in, storing and committing it may take
    // longer than that with the line quiet, and the answer must still reach the client.
    const onEnd = (): void => void req.socket.setTimeout(0);
    req.once('end', onEnd);
    const body = bodyChunks(req);
    try {
      const meta = await this.checkpoints.upload({
        id,
        vm: q.vm,
        format: q.format,
        width: q.width,
        guest: q.guest,
        ...(q.sha256 ? { sha256: q.sha256 } : {}),
        labels: q.labels,
        // Not destroyed when the codec stops early: the rest is drained so the client reads the refusal.
        body,
        ...(length !== undefined && /^\d+$/.test(length) ? { contentLength: Number(length) } : {}),
        signal: aborter.signal,
      });
      res.status(201).location(`/v1/checkpoints/${encodeURIComponent(id)}`).json(meta);
    } catch (e) {
      body.discard();
      throw e;
    } finally {
      req.off('close', onClose);
      req.off('end', onEnd);
    }
  }

  @Get()
  @RequireScope('read')
  @ApiOperation({ summary: 'List checkpoints (by id), optionally of one VM, a page at a time' })
  @ApiQuery({ name: 'vm', required: false })
  @ApiQuery({ name: 'cursor', required: false, description: 'nextCursor of the previous page' })
  @ApiQuery({ name: 'limit', required: false, description: '1-1000, default 50' })
  @ApiResponse({ status: 200, description: '{ items: metadata[], nextCursor: string | null, limit }: the page shape of libs/contracts/src/page.ts, without total' })
  async list(@Query() query: unknown) {
    const q = parseListQuery(query);
    return { ...(await this.checkpoints.list(q)), limit: q.limit };
  }

  @Get(':id/meta')
  @RequireScope('read')
  @ApiOperation({ summary: 'The metadata of one checkpoint (JSON)' })
  @ApiParam(ID_PARAM)
  async meta(@Param('id') id: string) {
    const { blocks: _b, object: _o, ...meta } = await this.checkpoints.meta(validateId(id, 'checkpoint id'));
    return meta;
  }

  @Head(':id')
  @RequireScope('read')
  @ApiOperation({ summary: 'Size, sha256 and VM of a checkpoint as headers; checks the image is there with its recorded size' })
  @ApiParam(ID_PARAM)
  async head(@Param('id') id: string, @Res() res: Response): Promise<void> {
    const headers = await this.checkpoints.head(validateId(id, 'checkpoint id'));
    res.status(200).set(headers).end();
  }

  @Get(':id')
  @RequireScope('read')
  @ApiOperation({
    summary: 'Download a checkpoint image (streamed, checked while it streams)',
    description:
      'The v2 image as stored; Range (one range, bytes=) gives 206. Every byte is checked against the checksum recorded for ' +
      'each 8 MiB block it falls in (CRC-32; sha256 for images stored by older versions, whose whole reads are checked ' +
      'against the sha256 of the image). On a mismatch the transfer is cut (never a ' +
      'clean end). format=legacy&width=32|64 converts to a legacy image for a host not upgraded yet (Range is ignored then); ' +
      'if the image cannot be expressed that way, 422.',
  })
  @ApiParam(ID_PARAM)
  @ApiQuery({ name: 'format', required: false, enum: ['v2', 'legacy'] })
  @ApiQuery({ name: 'width', required: false, enum: ['32', '64'], description: 'Required with format=legacy' })
  @ApiHeader({ name: 'Range', required: false, description: 'bytes=FIRST-LAST, bytes=FIRST- or bytes=-SUFFIX' })
  @ApiProduces('application/octet-stream')
  @ApiResponse({ status: 200, description: 'The image' })
  @ApiResponse({ status: 206, description: 'A range of the v2 image' })
  @ApiResponse({ status: 404, description: 'No such checkpoint' })
  @ApiResponse({ status: 416, description: 'Range outside the image' })
  @ApiResponse({ status: 422, description: 'Cannot be down-converted to the asked legacy width' })
  async get(@Param('id') id: string, @Query() query: unknown, @Req() req: Request, @Res() res: Response): Promise<void> {
    validateId(id, 'checkpoint id');
    const q = parseReadQuery(query);
    const range = req.headers.range;
    const result = await this.checkpoints.read({ id, ...q, ...(range ? { range } : {}) });
    await this.send(res, result);
  }

  private async send(res: Response, result: ReadResult): Promise<void> {
    res.status(result.status).set(result.headers);
    try {
      await writeAll(res, result.body);
    } catch (e) {
      // Nothing sent yet: an ordinary error response. Otherwise the only honest signal left is a broken transfer.
      if (!res.headersSent) throw e;
      this.log.warn(`transfer cut: ${(e as Error).message}`);
      res.destroy();
    }
  }

  @Delete(':id')
  @HttpCode(204)
  @RequireScope('write')
  @ApiOperation({ summary: 'Delete a checkpoint' })
  @ApiParam(ID_PARAM)
  @ApiResponse({ status: 204, description: 'Deleted' })
  @ApiResponse({ status: 404, description: 'No such checkpoint' })
  async delete(@Param('id') id: string): Promise<void> {
    await this.checkpoints.delete(validateId(id, 'checkpoint id'));
  }
}
