import { Controller, Get, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiResponse, ApiTags } from '@nestjs/swagger';
import { AuthGuard, RequireScope } from '../auth/auth.guard';
import { RetentionService, type RetentionPolicyView } from './retention.service';

@ApiTags('checkpoints')
@ApiBearerAuth()
@UseGuards(AuthGuard)
@Controller('v1/retention')
export class RetentionController {
  constructor(private readonly retention: RetentionService) {}

  @Get()
  @RequireScope('read')
  @ApiOperation({
    summary: 'The retention policy: keep the last N checkpoints per VM and/or drop those older than a maximum age',
    description: 'Applied every intervalMs; lastPassAt is when the last pass ended (null: none yet), nextPassAt when the next one starts.',
  })
  @ApiResponse({ status: 200, description: '{ keepLast, maxAgeMs, intervalMs, lastPassAt, nextPassAt } (null: no such limit)' })
  get(): RetentionPolicyView {
    return this.retention.policy();
  }
}
