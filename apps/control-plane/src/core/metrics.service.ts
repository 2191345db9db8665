import { Injectable } from '@nestjs/common';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { MIGRATION_PHASES, type MigrationPhase } from '@ferry/contracts';
import type { MigrationRecord } from './repos';

/** One registry per app instance (tests run several in one process). Gauges are filled at scrape time. */
@Injectable()
export class MetricsService {
  readonly registry = new Registry();
  readonly byPhase = new Gauge({ name: 'ferry_migrations', help: 'Migrations by phase (cluster-wide, from Redis)', labelNames: ['phase'], registers: [this.registry] });
  readonly queueDepth = new Gauge({ name: 'ferry_queue_depth', help: 'Work waiting: control-plane pending migrations and per-host job queues', labelNames: ['queue'], registers: [this.registry] });
  readonly bytes = new Counter({ name: 'ferry_migration_bytes_total', help: 'Bytes sent by migrations, as reported by source agents (this replica)', registers: [this.registry] });
  readonly finished = new Counter({ name: 'ferry_migrations_finished_total', help: 'Migrations finished (this replica)', labelNames: ['outcome'], registers: [this.registry] });
  readonly inventoryConflicts = new Counter({
    name: 'ferry_inventory_conflicts_total',
    help: 'Guests a host reported running that the control plane has on another host or in the store (flagged, not applied; this replica)',
    labelNames: ['host'],
    registers: [this.registry],
  });
  readonly rejectedReports = new Counter({
    name: 'ferry_agent_reports_rejected_total',
    help: 'Agent reports refused because their host is not the one the job was dispatched to (this replica)',
    labelNames: ['host', 'job'],
    registers: [this.registry],
  });
  readonly retries = new Counter({ name: 'ferry_migration_retries_total', help: 'Migration attempts retried (this replica)', registers: [this.registry] });
  readonly durations = new Histogram({
    name: 'ferry_migration_duration_seconds',
    help: 'Migration duration, start of first attempt to end',
    labelNames: ['outcome', 'mode'],
    buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1800],
    registers: [this.registry],
  });
  readonly downtime = new Histogram({ name: 'ferry_migration_downtime_seconds', help: 'Measured downtime', buckets: [0.01, 0.05, 0.1, 0.3, 1, 3, 10], registers: [this.registry] });
  readonly http = new Histogram({ name: 'ferry_http_request_duration_seconds', help: 'HTTP request duration', labelNames: ['method', 'route', 'status'], buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1], registers: [this.registry] });

  private started = false;
  enableDefault(): void {
    if (this.started) return;
    this.started = true;
    collectDefaultMetrics({ register: this.registry, prefix: 'ferry_cp_' });
  }

  setPhases(counts: Record<MigrationPhase, number>): void {
    for (const p of MIGRATION_PHASES) this.byPhase.set({ phase: p }, counts[p]);
  }

  migrationFinished(m: MigrationRecord, outcome: 'completed' | 'failed' | 'cancelled'): void {
    this.finished.inc({ outcome });
    const start = m.startedAt ? Date.parse(m.startedAt) : Date.parse(m.createdAt);
    this.durations.observe({ outcome, mode: m.mode }, Math.max(0, Date.now() - start) / 1000);
    if (outcome === 'completed' && m.progress.downtimeMs !== null) this.downtime.observe(m.progress.downtimeMs / 1000);
  }
}
