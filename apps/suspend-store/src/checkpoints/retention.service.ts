import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { OBJECT_BACKEND, type ObjectBackend } from '../backends/backend';
import { STORE_CONFIG } from '../common/tokens';
import type { StoreConfig } from '../config';
import { MetricsService } from '../metrics/metrics.service';
import type { CheckpointMeta } from './checkpoint.model';
import { CheckpointRepository } from './checkpoint.repository';

/** The policy as GET /v1/retention shows it, with when it last ran and when it runs next. */
export interface RetentionPolicyView {
  keepLast: number | null;
  maxAgeMs: number | null;
  intervalMs: number;
  lastPassAt: string | null;
  nextPassAt: string;
}

export interface RetentionReport {
  expired: string[];
  orphansRemoved: number;
  staleUploadsRemoved: number;
}

/**
 * The periodic job: applies retention (keep the last N per VM by creation time, and/or drop
 * checkpoints older than a maximum age), removes objects of uploads that never committed
 * (an image without meta, older than FERRY_STALE_UPLOAD_AGE) and the backend's stale temporary
 * uploads (temporary files, multipart uploads).
 */
@Injectable()
export class RetentionService implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly log = new Logger('Retention');
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<RetentionReport> | undefined;
  /** When the interval timer was (re)armed, and when the last pass ended. */
  private armedAt = Date.now();
  private lastPassAt: number | null = null;

  constructor(
    private readonly repo: CheckpointRepository,
    private readonly metrics: MetricsService,
    @Inject(OBJECT_BACKEND) private readonly backend: ObjectBackend,
    @Inject(STORE_CONFIG) private readonly config: StoreConfig,
  ) {}

  onApplicationBootstrap(): void {
    const every = this.config.retention.intervalMs;
    this.armedAt = Date.now();
    this.timer = setInterval(() => {
      this.armedAt = Date.now();
      void this.runOnce().catch(() => undefined);
    }, every);
    this.timer.unref();
  }

  async onModuleDestroy(): Promise<void> {
    clearInterval(this.timer);
    await this.running?.catch(() => undefined);
  }

  /** The policy, for clients that show what it will keep and remove (the control plane's checkpoint views). */
  policy(now = Date.now()): RetentionPolicyView {
    const { keepLast, maxAgeMs, intervalMs } = this.config.retention;
    // The timer fires every intervalMs from armedAt; the next tick is the first one after now.
    const next = this.armedAt + (Math.floor(Math.max(0, now - this.armedAt) / intervalMs) + 1) * intervalMs;
    return {
      keepLast: keepLast ?? null,
      maxAgeMs: maxAgeMs ?? null,
      intervalMs,
      lastPassAt: this.lastPassAt === null ? null : new Date(this.lastPassAt).toISOString(),
      nextPassAt: new Date(next).toISOString(),
    };
  }

  /** One pass (a pass already running is joined, not doubled). */
  runOnce(now = Date.now()): Promise<RetentionReport> {
    this.running ??= this.pass(now)
      .catch((e: unknown) => {
        this.log.error(`retention pass failed: ${(e as Error).message}`);
        throw e;
      })
      .finally(() => {
        this.running = undefined;
        this.lastPassAt = Date.now();
      });
    return this.running;
  }

  private async pass(now: number): Promise<RetentionReport> {
    const { keepLast, maxAgeMs, staleUploadAgeMs } = this.config.retention;
    const report: RetentionReport = { expired: [], orphansRemoved: 0, staleUploadsRemoved: 0 };
    report.staleUploadsRemoved = await this.backend.sweepStaleUploads(staleUploadAgeMs - (now - Date.now()));
    const byVm = new Map<string, CheckpointMeta[]>();
    for await (const { id, meta } of this.repo.all()) {
      // Objects not named by a committed meta are leftovers of uploads that died before commit.
      for (const o of await this.repo.listFolder(id)) {
        if (o.key.endsWith('/meta.json') || (meta && o.key.endsWith(`/${meta.object}`))) continue;
        if (now - o.modified.getTime() >= staleUploadAgeMs) {
          await this.repo.deleteObject(o.key);
          report.orphansRemoved++;
        }
      }
      if (!meta) continue;
      const list = byVm.get(meta.vm) ?? [];
      list.push(meta);
      byVm.set(meta.vm, list);
    }
    for (const list of byVm.values()) {
      list.sort((a, b) => (a.created < b.created ? 1 : a.created > b.created ? -1 : a.id < b.id ? 1 : -1));
      list.forEach((m, i) => {
        const tooMany = keepLast !== undefined && i >= keepLast;
        const tooOld = maxAgeMs !== undefined && now - Date.parse(m.created) > maxAgeMs;
        if (tooMany || tooOld) report.expired.push(m.id);
      });
    }
    for (const id of report.expired) {
      await this.repo.delete(id);
      this.metrics.deletions.inc({ cause: 'retention' });
    }
    if (report.expired.length || report.orphansRemoved || report.staleUploadsRemoved) {
      this.log.log(`retention: ${report.expired.length} expired, ${report.orphansRemoved} orphans, ${report.staleUploadsRemoved} stale uploads removed`);
    }
    return report;
  }
}
