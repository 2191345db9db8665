import { Injectable, type OnModuleInit } from '@nestjs/common';
import { Counter, Registry, collectDefaultMetrics } from 'prom-client';

/** Prometheus metrics of one store instance (its own registry: several instances may share a process). */
@Injectable()
export class MetricsService implements OnModuleInit {
  readonly registry = new Registry();
  readonly bytesIn = new Counter({ name: 'ferry_store_bytes_in_total', help: 'Bytes received in uploads', registers: [this.registry] });
  readonly bytesOut = new Counter({ name: 'ferry_store_bytes_out_total', help: 'Image bytes sent to clients', registers: [this.registry] });
  readonly conversions = new Counter({
    name: 'ferry_store_conversions_total',
    help: 'Images converted: legacy_to_v2 on upload, v2_to_legacy on download',
    labelNames: ['direction', 'width'] as const,
    registers: [this.registry],
  });
  readonly uploads = new Counter({
    name: 'ferry_store_uploads_total',
    help: 'Uploads by result (stored, refused, failed)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly refusals = new Counter({
    name: 'ferry_store_refusals_total',
    help: 'Requests refused, by reason (malformed, truncated, unsupported, ambiguous, checksum, too_large, exists, ...)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly integrityFailures = new Counter({
    name: 'ferry_store_integrity_failures_total',
    help: 'Reads stopped because stored bytes did not match their checksum or size',
    registers: [this.registry],
  });
  readonly deletions = new Counter({
    name: 'ferry_store_checkpoints_deleted_total',
    help: 'Checkpoints deleted, by cause (request, retention)',
    labelNames: ['cause'] as const,
    registers: [this.registry],
  });

  onModuleInit(): void {
    collectDefaultMetrics({ register: this.registry, prefix: 'ferry_store_' });
  }
}
