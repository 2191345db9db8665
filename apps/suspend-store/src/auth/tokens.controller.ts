import { Body, Controller, Delete, Get, HttpCode, Param, Post, Res, UseGuards, UseInterceptors } from '@nestjs/common';
import type { Response } from 'express';
import { ApiBearerAuth, ApiBody, ApiOperation, ApiResponse, ApiTags } from '@nestjs/swagger';
import { z } from 'zod';
import { badRequest } from '../common/errors';
import { JsonBody } from '../common/json-body';
import { SCOPES } from '../config';
import { AuthGuard, RequireScope } from './auth.guard';
import { TokensService } from './tokens.service';

const CreateToken = z.object({
  name: z.string().max(100).default(''),
  scopes: z.array(z.enum(SCOPES)).min(1),
});

@ApiTags('tokens')
@ApiBearerAuth()
@UseGuards(AuthGuard)
@RequireScope('admin')
@Controller('v1/tokens')
export class TokensController {
  constructor(private readonly tokens: TokensService) {}

  @Post()
  @UseInterceptors(new JsonBody(16 * 1024))
  @ApiOperation({ summary: 'Make a bearer token (admin). The token is shown once; only its sha256 is stored.' })
  @ApiBody({
    schema: {
      type: 'object',
      required: ['scopes'],
      properties: { name: { type: 'string' }, scopes: { type: 'array', items: { type: 'string', enum: [...SCOPES] } } },
    },
  })
  @ApiResponse({ status: 201, description: '{ token, id, name, scopes, created }' })
  async create(@Body() body: unknown, @Res({ passthrough: true }) res: Response) {
    const r = CreateToken.safeParse(body ?? {});
    if (!r.success) throw badRequest(`body: ${r.error.issues[0]!.path.join('.') || 'JSON'}: ${r.error.issues[0]!.message}`);
    const { token, record } = await this.tokens.create(r.data.name, r.data.scopes);
    res.location(`/v1/tokens/${encodeURIComponent(record.id)}`);
    return { token, ...record };
  }

  @Get()
  @ApiOperation({ summary: 'List tokens made through the API (never the tokens themselves); one page, as every collection' })
  async list() {
    // the few tokens an operator makes fit one page: no cursor is ever needed
    return { items: await this.tokens.list(), nextCursor: null };
  }

  @Delete(':id')
  @HttpCode(204)
  @ApiOperation({ summary: 'Revoke a token made through the API' })
  async revoke(@Param('id') id: string): Promise<void> {
    await this.tokens.revoke(id);
  }
}
