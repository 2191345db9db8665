import { Module, type DynamicModule } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { AuthGuard } from './auth/auth.guard';
import { TokensController } from './auth/tokens.controller';
import { TokensService } from './auth/tokens.service';
import { BackendLifecycle, backendProvider } from './backends/backends.module';
import { CheckpointRepository } from './checkpoints/checkpoint.repository';
import { CheckpointsController } from './checkpoints/checkpoints.controller';
import { CheckpointsService } from './checkpoints/checkpoints.service';
import { ConversionService } from './checkpoints/conversion.service';
import { RetentionController } from './checkpoints/retention.controller';
import { RetentionService } from './checkpoints/retention.service';
import { ErrorFilter } from './common/error.filter';
import { STORE_CONFIG } from './common/tokens';
import type { StoreConfig } from './config';
import { HealthController } from './health/health.controller';
import { MetricsService } from './metrics/metrics.service';

@Module({})
export class AppModule {
  static forConfig(config: StoreConfig): DynamicModule {
    return {
      module: AppModule,
      controllers: [CheckpointsController, RetentionController, TokensController, HealthController],
      providers: [
        { provide: STORE_CONFIG, useValue: config },
        backendProvider,
        BackendLifecycle,
        MetricsService,
        TokensService,
        AuthGuard,
        ConversionService,
        CheckpointRepository,
        CheckpointsService,
        RetentionService,
        { provide: APP_FILTER, useClass: ErrorFilter },
      ],
    };
  }
}
