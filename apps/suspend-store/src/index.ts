import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import type * as http from 'node:http';
import type { Duplex } from 'node:stream';
import type { AddressInfo } from 'node:net';
import { AppModule } from './app.module';
import { completeStoreDocument } from './common/openapi';
import { loadConfig, type StoreConfig } from './config';

export { loadConfig, ConfigError, parseBytes, parseDuration } from './config';
export type { StoreConfig } from './config';
export type { CheckpointMeta, CheckpointView } from './checkpoints/checkpoint.model';
export { RetentionService } from './checkpoints/retention.service';

export interface RunningStore {
  /** Base URL, e.g. http://127.0.0.1:8083 */
  url: string;
  close(): Promise<void>;
  /** The Nest application (tests reach services through it, e.g. RetentionService). */
  app: NestExpressApplication;
  config: StoreConfig;
}

type LogLevel = 'log' | 'error' | 'warn' | 'debug' | 'verbose' | 'fatal';

/**
 * Starts the suspend-store: validates the environment (throws ConfigError naming the bad
 * variable), prepares the backend, serves the API (/v1), OpenAPI (/docs, /docs-json),
 * /healthz, /readyz and /metrics.
 */
export async function startSuspendStore(env: NodeJS.ProcessEnv = process.env): Promise<RunningStore> {
  const config = loadConfig(env);
  const quiet = env.FERRY_LOG_LEVEL === 'error' || (env.VITEST !== undefined && env.FERRY_LOG_LEVEL === undefined);
  const logger: LogLevel[] = quiet ? ['error', 'fatal'] : ['log', 'error', 'warn', 'fatal'];
  const app = await NestFactory.create<NestExpressApplication>(AppModule.forConfig(config), {
    bodyParser: false,
    logger,
    abortOnError: false,
  });
  app.disable('x-powered-by');
  // No body parser in front of the routes: the token API reads its JSON after auth (JsonBody),
  // checkpoint bodies are streams and are never parsed.
  const doc = new DocumentBuilder()
    .setTitle('Ferry suspend-store')
    .setDescription(
      'Checkpoint (suspend) images of Xen VMs in object storage: streamed uploads with on-the-fly legacy-to-v2 conversion and ' +
        'verification, checked downloads, retention. Auth: Authorization: Bearer TOKEN with scope read, write or admin.',
    )
    .setVersion('1')
    .addBearerAuth()
    .build();
  SwaggerModule.setup('docs', app, () => completeStoreDocument(SwaggerModule.createDocument(app, doc)), { jsonDocumentUrl: 'docs-json' });
  app.enableShutdownHooks();
  await app.listen(config.port, config.host);
  const addr = app.getHttpServer().address() as AddressInfo;
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  const server = app.getHttpServer() as http.Server & { httpAllowHalfOpen: boolean };
  // Uploads of many GiB take longer than the 5-minute default: no limit on a whole request, but
  // none may go silent (a stalled upload is cut, fails and frees its id) or dawdle over its head.
  server.requestTimeout = 0;
  server.timeout = config.timeouts.idleMs;
  server.headersTimeout = config.timeouts.headersMs;
  // A client may half-close once it has sent its whole request and still reads the answer (HTTP/1.1
  // does not end a request with a FIN): Node's http server flag for that, off by default.
  server.httpAllowHalfOpen = true;
  // Node closes a CONNECT request's connection without a word unless someone listens: refuse it.
  server.on('connect', (_req: http.IncomingMessage, socket: Duplex) => {
    socket.on('error', () => socket.destroy());
    socket.end('HTTP/1.1 405 Method Not Allowed\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
  });
  let closed: Promise<void> | undefined;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${addr.port}`,
    app,
    config,
    close: () => (closed ??= app.close()),
  };
}
