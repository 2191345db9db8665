import 'reflect-metadata';
import type * as http from 'node:http';
import type { Duplex } from 'node:stream';
import { Module, type DynamicModule } from '@nestjs/common';
import { APP_FILTER, APP_GUARD, NestFactory } from '@nestjs/core';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { loadCpConfig, type CpConfig } from './config';
import { CoreModule } from './core/core.module';
import { ActingInterceptor } from './http/acting';
import { AuthGuard, isPublic } from './http/auth';
import { completeDocument, routesOf } from './http/openapi';
import { ProblemFilter } from './http/problem.filter';
import { AgentsController, CampaignsController, EventsController, HostsController, MeController, MigrationsController, OperationsController, OpsController, VmsController } from './http/controllers';
import { CheckpointsController } from './http/checkpoints.controller';
import { EventsHub } from './http/events.hub';
import { CampaignRunnerService } from './worker/campaign-runner.service';
import { SchedulerService } from './worker/scheduler.service';

/** Every controller of the HTTP API (the OpenAPI test walks these). */
export const CONTROLLERS = [HostsController, VmsController, OperationsController, MigrationsController, CampaignsController, CheckpointsController, AgentsController, EventsController, MeController, OpsController];

@Module({})
export class HttpModule {
  static forRoot(): DynamicModule {
    return {
      module: HttpModule,
      controllers: CONTROLLERS,
      providers: [EventsHub, ActingInterceptor, { provide: APP_GUARD, useClass: AuthGuard }, { provide: APP_FILTER, useClass: ProblemFilter }],
    };
  }
}

@Module({})
export class WorkerModule {
  static forRoot(): DynamicModule {
    return { module: WorkerModule, providers: [SchedulerService, CampaignRunnerService], exports: [SchedulerService, CampaignRunnerService] };
  }
}

@Module({})
export class AppModule {
  static forRoot(cfg: CpConfig, parts: { http: boolean; worker: boolean }): DynamicModule {
    return {
      module: AppModule,
      imports: [CoreModule.forRoot(cfg), ...(parts.http ? [HttpModule.forRoot()] : []), ...(parts.worker ? [WorkerModule.forRoot()] : [])],
    };
  }
}

export interface RunningControlPlane {
  url: string;
  close(): Promise<void>;
  app: NestExpressApplication;
  config: CpConfig;
}

/**
 * Starts the HTTP control plane (and, unless FERRY_CONTROL_PLANE_ROLE=api, the scheduler and
 * campaign runner in the same process: safe with several replicas, they hold Redis leases).
 * Config is validated first: a bad variable throws a ConfigError naming it.
 */
export async function startControlPlane(env: Record<string, string | undefined> = process.env): Promise<RunningControlPlane> {
  const cfg = loadCpConfig(env);
  const app = await NestFactory.create<NestExpressApplication>(AppModule.forRoot(cfg, { http: true, worker: cfg.FERRY_CONTROL_PLANE_ROLE !== 'api' }), {
    logger: env.FERRY_LOG_LEVEL === 'debug' ? ['log', 'error', 'warn', 'debug'] : ['error', 'warn'],
    // keep-alive clients (agents polling) must not hold a shutdown open
    forceCloseConnections: true,
  });
  app.useBodyParser('json', { limit: '8mb' });
  // no ETag hashing of every (large) JSON body, no x-powered-by
  app.set('etag', false);
  app.disable('x-powered-by');
  const doc = completeDocument(
    SwaggerModule.createDocument(
      app,
      new DocumentBuilder()
        .setTitle('Ferry control plane')
        .setDescription('Migrations, suspend/resume and fleet upgrade campaigns. Errors are RFC 9457 problem details; collections page with limit/cursor. Agent protocol: docs/jobs.md')
        .setVersion('1')
        .addBearerAuth()
        .build(),
    ),
    new Set(routesOf(CONTROLLERS).filter((r) => isPublic(r.handler)).map((r) => r.path)),
  );
  SwaggerModule.setup('docs', app, doc, { jsonDocumentUrl: 'docs/openapi.json' });
  await app.listen(cfg.PORT, cfg.HOST);
  // Node closes a CONNECT request's connection without a word unless someone listens: refuse it.
  (app.getHttpServer() as http.Server).on('connect', (_req: http.IncomingMessage, socket: Duplex) => {
    socket.on('error', () => socket.destroy());
    socket.end('HTTP/1.1 405 Method Not Allowed\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
  });
  const addr = app.getHttpServer().address() as { port: number };
  return {
    url: `http://127.0.0.1:${addr.port}`,
    app,
    config: cfg,
    close: async () => {
      await app.close();
    },
  };
}

/** Worker only (scheduler + campaign runner), no HTTP: `ferry serve control-plane-worker`. */
export async function startControlPlaneWorker(env: Record<string, string | undefined> = process.env): Promise<{ close(): Promise<void> }> {
  const cfg = loadCpConfig(env);
  const ctx = await NestFactory.createApplicationContext(AppModule.forRoot(cfg, { http: false, worker: true }), { logger: ['error', 'warn'] });
  await ctx.init();
  return { close: () => ctx.close() };
}
