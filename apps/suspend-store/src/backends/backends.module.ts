import { Inject, Injectable, Logger, type OnModuleDestroy, type OnModuleInit, type Provider } from '@nestjs/common';
import { STORE_CONFIG } from '../common/tokens';
import type { StoreConfig } from '../config';
import { OBJECT_BACKEND, type ObjectBackend } from './backend';
import { FsBackend } from './fs.backend';
import { S3Backend } from './s3.backend';

export function createBackend(config: StoreConfig): ObjectBackend {
  const b = config.backend;
  if (b.kind === 'fs') return new FsBackend(b.dir);
  return new S3Backend({ ...b, createBucket: true });
}

export const backendProvider: Provider = {
  provide: OBJECT_BACKEND,
  inject: [STORE_CONFIG],
  useFactory: (config: StoreConfig) => createBackend(config),
};

/** Start-up and shutdown of the backend (creates the folder or bucket; fails start if unreachable). */
@Injectable()
export class BackendLifecycle implements OnModuleInit, OnModuleDestroy {
  private readonly log = new Logger('Backend');

  constructor(@Inject(OBJECT_BACKEND) private readonly backend: ObjectBackend) {}

  async onModuleInit(): Promise<void> {
    try {
      await this.backend.init();
    } catch (e) {
      throw new Error(`suspend-store: cannot use ${this.backend.description}: ${(e as Error).message || (e as Error).name}`);
    }
    this.log.log(`storing in ${this.backend.description}`);
  }

  async onModuleDestroy(): Promise<void> {
    await this.backend.close();
  }
}
