import { Inject, Injectable, Logger, Module, type DynamicModule, type OnApplicationShutdown } from '@nestjs/common';
import type Redis from 'ioredis';
import { HostJobProducer, RedisStateLog, createRedisConnection, reapplyAgentAclUsers } from '@ferry/queue';
import { CP_CONFIG, REDIS, type CpConfig } from '../config';
import { defineScripts } from '../redis/scripts';
import { AgentService } from './agent.service';
import { CampaignsService } from './campaigns.service';
import { CheckpointsRepository } from './checkpoints.repo';
import { CheckpointsService } from './checkpoints.service';
import { DrainService } from './drain.service';
import { HostsService } from './hosts.service';
import { MetricsService } from './metrics.service';
import { MigrationsService } from './migrations.service';
import { OperationsService } from './operations.service';
import { SuspendStoreClient } from './store.client';
import { CampaignsRepository, EventsRepository, HostsRepository, MigrationsRepository, OperationsRepository, RedisKeys, VmsRepository } from './repos';

@Injectable()
class Closer implements OnApplicationShutdown {
  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    private readonly producer: HostJobProducer,
  ) {}
  async onApplicationShutdown(): Promise<void> {
    // let handlers that were mid-request when the server closed finish their Redis calls
    await new Promise((r) => setTimeout(r, 100));
    await this.producer.close().catch(() => undefined);
    await this.redis.quit().catch(() => undefined);
  }
}

const services = [
  RedisKeys,
  HostsRepository,
  VmsRepository,
  MigrationsRepository,
  OperationsRepository,
  CampaignsRepository,
  EventsRepository,
  MetricsService,
  HostsService,
  MigrationsService,
  OperationsService,
  CampaignsService,
  AgentService,
  DrainService,
  SuspendStoreClient,
  CheckpointsRepository,
  CheckpointsService,
];

/**
 * The control plane's Redis (one server or a sentinel set). Redis does not replicate ACL users, so on
 * every (re)connection, a failover included, the node it reaches is given the agents' users again.
 */
function connectRedis(cfg: CpConfig): Redis {
  const redis = createRedisConnection(cfg.REDIS_URL, { maxRetriesPerRequest: null, enableAutoPipelining: true });
  const log = new Logger('Redis');
  redis.on('ready', () => {
    reapplyAgentAclUsers(redis, cfg.FERRY_QUEUE_PREFIX).catch((e: unknown) => log.warn(`agent ACL users not restored: ${(e as Error).message}`));
  });
  return redis;
}

/** Shared by the HTTP app (main.ts) and the worker (worker.ts): config, Redis, repositories, services. */
@Module({})
export class CoreModule {
  static forRoot(cfg: CpConfig): DynamicModule {
    return {
      module: CoreModule,
      global: true,
      providers: [
        { provide: CP_CONFIG, useValue: cfg },
        // Every Redis client and queue reports its errors here: one warning per change of reachability.
        { provide: RedisStateLog, useFactory: () => new RedisStateLog('control plane', (line) => new Logger('Redis').warn(line)) },
        {
          provide: REDIS,
          useFactory: (state: RedisStateLog) => state.watch(defineScripts(connectRedis(cfg))),
          inject: [RedisStateLog],
        },
        {
          provide: HostJobProducer,
          useFactory: (redis: Redis, state: RedisStateLog) => new HostJobProducer({ connection: redis, prefix: cfg.FERRY_QUEUE_PREFIX, redisState: state }),
          inject: [REDIS, RedisStateLog],
        },
        ...services,
        Closer,
      ],
      exports: [CP_CONFIG, REDIS, RedisStateLog, HostJobProducer, ...services],
    };
  }
}
