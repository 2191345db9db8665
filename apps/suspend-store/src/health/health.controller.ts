import { Controller, Get, Header, Inject, Res } from '@nestjs/common';
import { ApiExcludeEndpoint, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { OBJECT_BACKEND, type ObjectBackend } from '../backends/backend';
import { MetricsService } from '../metrics/metrics.service';

@ApiTags('operations')
@Controller()
export class HealthController {
  constructor(
    @Inject(OBJECT_BACKEND) private readonly backend: ObjectBackend,
    private readonly metrics: MetricsService,
  ) {}

  @Get('healthz')
  @ApiOperation({ summary: 'Liveness: the process answers' })
  health() {
    return { status: 'ok' };
  }

  @Get('readyz')
  @ApiOperation({ summary: 'Readiness: the object store answers (503 otherwise)' })
  async ready(@Res() res: Response): Promise<void> {
    try {
      await this.backend.ready();
      res.status(200).json({ status: 'ready', backend: this.backend.kind });
    } catch (e) {
      res.status(503).json({ status: 'not ready', backend: this.backend.kind, message: (e as Error).message.split('\n')[0] });
    }
  }

  @Get('metrics')
  @Header('content-type', 'text/plain; version=0.0.4; charset=utf-8')
  @ApiExcludeEndpoint()
  metricsText(): Promise<string> {
    return this.metrics.registry.metrics();
  }
}
