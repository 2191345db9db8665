import { createHash } from 'node:crypto';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { HostJobProducer } from '@ferry/queue';
import {
  AGENT_MIGRATION_PHASES,
  canReceive,
  cancelPayload,
  isCancellable,
  isTerminalPhase,
  nextOffsetCursor,
  pastPointOfNoReturn,
  phaseIndex,
  type AgentReport,
  type CommitRequest,
  type CommitResponse,
  type CreateMigrationRequest,
  type DecisionResponse,
  type GuestInventory,
  type MigrationDto,
  type MigrationPhase,
  type MigrationProgress,
  type Page,
  type ResolveRequest,
  type ResolveResponse,
} from '@ferry/contracts';
import { CP_CONFIG, type CpConfig } from '../config';
import { fail } from './errors';
import { MetricsService } from './metrics.service';
import { EventsRepository, HostsRepository, MigrationsRepository, PRE_PONR_ACTIVE, VmsRepository, type MigrationRecord } from './repos';
import { idTime, newId, nowIso } from './redis';
import { vmToDto } from './hosts.service';

export function migrationToDto(m: MigrationRecord): MigrationDto {
  return {
    id: m.id,
    vmId: m.vmId,
    sourceHostId: m.source,
    targetHostId: m.target,
    requestedTargetHostId: m.reqTarget,
    mode: m.mode,
    bandwidthMiBps: m.bwMiBps,
    phase: m.phase,
    progress: m.progress,
    cancellable: isCancellable(m.phase, m.cancelRequested),
    cancelRequested: m.cancelRequested,
    pointOfNoReturn: { phase: 'committing', passed: pastPointOfNoReturn(m.phase) || (m.committedAttempt > 0 && m.committedAttempt === m.attempt) },
    waitingReason: m.phase === 'queued' ? m.waiting : null,
    restore: m.restore,
    attempt: m.attempt,
    maxAttempts: m.maxAttempts,
    nextAttemptAt: m.phase === 'queued' && m.nextAttemptAt ? nowIso(m.nextAttemptAt) : null,
    error: m.error,
    campaignId: m.campaignId,
    createdAt: m.createdAt,
    updatedAt: m.updatedAt,
    startedAt: m.startedAt,
    finishedAt: m.finishedAt,
  };
}

/** A VM claimed this long ago for a migration that was never stored is freed (create() died between the two writes). */
const ORPHAN_CLAIM_MS = 10_000;

const PRE_PONR_INFLIGHT: MigrationPhase[] = ['dispatched', 'preparing', 'precopy', 'stop-copy', 'verifying'];

@Injectable()
export class MigrationsService {
  constructor(
    @Inject(CP_CONFIG) private readonly cfg: CpConfig,
    private readonly repo: MigrationsRepository,
    private readonly vms: VmsRepository,
    private readonly hosts: HostsRepository,
    private readonly events: EventsRepository,
    private readonly producer: HostJobProducer,
    private readonly metrics: MetricsService,
  ) {}

  private readonly log = new Logger('Migrations');

  async create(req: CreateMigrationRequest, idempotencyKey: string, extra: { campaignId?: string } = {}): Promise<{ created: boolean; migration: MigrationDto }> {
    const vm = await this.vms.get(req.vm);
    if (!vm) throw fail(404, `vm '${req.vm}' not found`);
    if (!vm.hostId || vm.state === 'suspended') throw fail(409, `vm '${req.vm}' is not running on a host (state ${vm.state})`);
    if (req.target !== undefined) {
      const t = await this.hosts.get(req.target);
      if (!t) throw fail(404, `target host '${req.target}' not found`);
      if (req.target === vm.hostId) throw fail(409, `vm '${req.vm}' already runs on '${req.target}'`);
      const c = canReceive(t.info.toolstack, vm.spec);
      if (!c.ok) throw fail(422, `target '${req.target}' cannot receive vm '${req.vm}': ${c.reason}`);
    }
    const hash = createHash('sha256').update(JSON.stringify([req.vm, req.target ?? null, req.mode, req.bandwidth ?? null, extra.campaignId ?? null])).digest('hex').slice(0, 16);
    const id = newId('mig');
    const stored = await this.repo.idempotent(idempotencyKey, `${id}|${hash}`, 10);
    if (stored !== `${id}|${hash}`) {
      const [existingId, h] = stored.split('|');
      if (h !== hash) throw fail(422, 'Idempotency-Key was already used with a different request body', 'idempotency-key-reused');
      const existing = await this.repo.get(existingId!);
      if (existing) return { created: false, migration: migrationToDto(existing) };
      throw fail(409, 'a request with this Idempotency-Key is still being processed', 'idempotency-key-in-progress');
    }
    if (!(await this.vms.claim(vm.id, id))) {
      await this.repo.forgetIdempotent(idempotencyKey);
      throw fail(409, `vm '${vm.id}' already has an active operation (${vm.activeOp ?? 'unknown'})`);
    }
    const now = Date.now();
    const rec: MigrationRecord = {
      id,
      vmId: vm.id,
      source: vm.hostId,
      reqTarget: req.target ?? null,
      target: null,
      mode: req.mode,
      bwMiBps: req.bandwidth ?? null,
      phase: 'queued',
      attempt: 0,
      maxAttempts: this.cfg.FERRY_MAX_ATTEMPTS,
      cancelRequested: false,
      progress: { bytesDone: 0, bytesTotal: vm.spec.memoryMiB * 1024 * 1024, round: 0, roundBytesDone: 0, roundBytesTotal: 0, dirtyRate: 0, rate: 0, etaMs: null, expectedDowntimeMs: null, downtimeMs: null },
      waiting: 'waiting for the scheduler',
      restore: null,
      error: null,
      campaignId: extra.campaignId ?? null,
      createdAt: nowIso(now),
      updatedAt: nowIso(now),
      startedAt: null,
      finishedAt: null,
      nextAttemptAt: null,
      lastProgressAt: null,
      progressSig: '',
      streamToken: '',
      sendDone: false,
      memMiB: vm.spec.memoryMiB,
      committedAttempt: 0,
    };
    await this.repo.create(rec, now);
    await this.repo.keepIdempotent(idempotencyKey);
    const dto = migrationToDto(rec);
    await this.repo.saveJson(id, JSON.stringify(dto));
    await this.events.publish('migration.updated', 'migration', id, dto);
    return { created: true, migration: dto };
  }

  async get(id: string): Promise<MigrationDto> {
    const m = await this.repo.get(id);
    if (!m) throw fail(404, `migration '${id}' not found`);
    return migrationToDto(m);
  }

  /** Fast path for lists: the page as one JSON string built from stored DTOs; null = use list(). */
  async listRaw(q: { phase?: MigrationPhase; vm?: string; host?: string; campaign?: string; active?: boolean; limit: number; offset: number }): Promise<string | null> {
    const r = await this.repo.listJson(q);
    if (!r) return null;
    return `{"items":[${r.items.join(',')}],"total":${r.total},"limit":${q.limit},"nextCursor":${JSON.stringify(nextOffsetCursor(q.offset, r.items.length, r.total))}}`;
  }

  async list(q: { phase?: MigrationPhase; vm?: string; host?: string; campaign?: string; active?: boolean; limit: number; offset: number }): Promise<Page<MigrationDto>> {
    const { items, total } = await this.repo.list(q);
    return { items: items.map(migrationToDto), total, limit: q.limit, nextCursor: nextOffsetCursor(q.offset, items.length, total) };
  }

  /** Cancel: possible strictly before the point of no return; the VM stays on its source. */
  async cancel(id: string, reason = 'cancelled by operator', code = 'CANCELLED'): Promise<MigrationDto> {
    const m = await this.repo.get(id);
    if (!m) throw fail(404, `migration '${id}' not found`);
    const r = await this.repo.transition(id, PRE_PONR_ACTIVE, 'cancelled', {
      cancelRequested: true,
      finishedAt: nowIso(),
      error: { code, message: reason },
      waiting: '',
    });
    if (!r.ok) {
      // Cancelling what is already cancelled asks for what holds already: answer with it, change nothing.
      if (r.phase === 'cancelled') return this.get(id);
      if (r.phase && pastPointOfNoReturn(r.phase)) throw fail(409, `migration '${id}' is past its point of no return (phase ${r.phase}); it can no longer be cancelled`);
      throw fail(409, `migration '${id}' already finished (phase ${r.phase})`);
    }
    if (r.phase && r.phase !== 'queued') await this.sendCancels(m, reason);
    await this.finishVm(m, 'source');
    this.metrics.migrationFinished(m, 'cancelled');
    return this.publish(id);
  }

  async sendCancels(m: MigrationRecord, reason: string): Promise<void> {
    const hosts = [m.source, m.target].filter((h): h is string => !!h);
    await Promise.all(
      hosts.map((h) =>
        this.producer.dispatch(h, 'cancel', cancelPayload(m.id, m.attempt, reason)).catch(() => undefined),
      ),
    );
  }

  /**
   * Moves the VM record to where the migration left the guest and frees it for new operations.
   * Idempotent: a control plane killed between a phase change and this call repeats it on the
   * agent's retried report, or on its host's next heartbeat (repairFromInventory).
   */
  private async finishVm(m: MigrationRecord, where: 'source' | 'target', digest?: string | null, state: 'running' | 'missing' = 'running'): Promise<void> {
    const vm = await this.vms.get(m.vmId);
    if (!vm) return;
    if (where === 'target' && m.target) {
      // only a record this migration still holds, or left on its target (missing, not yet running), is
      // moved: a late repeat must not pull back a VM that has moved on since
      const holds = vm.activeOp === m.id || (!vm.activeOp && vm.hostId === m.target && vm.state !== 'running');
      if (!holds) return;
      await this.vms.put(m.vmId, { hostId: m.target, state, ...(vm.activeOp === m.id ? { activeOp: null } : {}), ...(digest !== undefined ? { memoryDigest: digest } : {}) }, vm.hostId);
    } else {
      await this.vms.release(m.vmId, m.id);
      if (vm.state === 'migrating' || vm.state === 'paused') await this.vms.put(m.vmId, { state: 'running' });
    }
    const nv = await this.vms.get(m.vmId);
    if (nv) await this.events.publish('vm.updated', 'vm', nv.id, vmToDto(nv));
  }

  async publish(id: string, type: 'migration.updated' | 'migration.progress' = 'migration.updated'): Promise<MigrationDto> {
    const m = await this.repo.get(id);
    if (!m) throw fail(404, `migration '${id}' not found`);
    const dto = migrationToDto(m);
    await Promise.all([this.repo.saveJson(id, JSON.stringify(dto)), this.events.publish(type, 'migration', id, dto)]);
    return dto;
  }

  // ---------------- agent side ----------------

  /**
   * A report is taken only from the host its job was dispatched to: `migrate-send` from the source,
   * `migrate-receive` from the target. Anything else is refused (logged and counted), so no host can
   * finish, fail or advance a migration by speaking for the other side.
   */
  async onReport(hostId: string, r: AgentReport): Promise<void> {
    const m = await this.repo.get(r.operationId);
    if (!m || r.attempt !== m.attempt) return;
    const dispatchedTo = r.job === 'migrate-send' ? m.source : r.job === 'migrate-receive' ? m.target : null;
    if (hostId !== dispatchedTo) {
      this.metrics.rejectedReports.inc({ host: hostId, job: r.job });
      this.log.warn(`refused a ${r.type} report for ${r.job} of migration ${m.id} from host '${hostId}': that job runs on '${dispatchedTo ?? 'no host'}'`);
      return;
    }
    if (r.type === 'progress') return this.onProgress(m, r);
    if (r.type === 'completed') {
      if (r.job === 'migrate-send') {
        // What was sent is the total now: a finished transfer is at 100 %, whatever was estimated on the way.
        const sent = Math.max(m.progress.bytesDone, r.result.bytesSent);
        const progress = { ...m.progress, downtimeMs: r.result.downtimeMs, bytesDone: sent, bytesTotal: sent, roundBytesDone: m.progress.roundBytesTotal, round: Math.max(m.progress.round, r.result.rounds), etaMs: 0 };
        await this.repo.update(m.id, { sendDone: true, progress });
        await this.publish(m.id);
        return;
      }
      if (r.job === 'migrate-receive' && hostId === m.target) await this.completeOnTarget(m, r.result.memoryDigest, r.result.bytesReceived);
      return;
    }
    if (r.type === 'failed') {
      if (isTerminalPhase(m.phase)) return;
      if (m.phase === 'committing') {
        // The source only failed to drop its copy: the guest is the target's, whose report decides.
        if (r.job === 'migrate-send') return;
        // Past the point of no return: nothing can be undone; surface it.
        await this.repo.transition(m.id, ['committing'], 'failed', { finishedAt: nowIso(), error: { code: r.error.code, message: `after commit: ${r.error.message}` } });
        this.metrics.migrationFinished(m, 'failed');
        await this.publish(m.id);
        return;
      }
      await this.failAttempt(m, r.error.code, `${hostId}: ${r.error.message}`, r.error.retryable);
    }
  }

  /**
   * The target runs the guest: the migration ends `completed`, also when the control plane had
   * given up waiting for this confirmation (failed COMMIT_UNCONFIRMED), and without the error of
   * any earlier attempt. Repeating it is harmless.
   */
  async completeOnTarget(m: MigrationRecord, digest: string | null, bytesReceived = 0): Promise<void> {
    if (!m.target || m.committedAttempt !== m.attempt) return;
    const t = await this.repo.transition(
      m.id,
      ['committing', 'failed'],
      'completed',
      {
        finishedAt: nowIso(),
        error: null,
        progress: completedProgress(m.progress, bytesReceived),
      },
      { conds: { committedAttempt: String(m.attempt), attempt: String(m.attempt) } },
    );
    if (!t.ok && t.phase !== 'completed') return;
    await this.finishVm(m, 'target', digest);
    if (t.ok) {
      this.metrics.migrationFinished(m, 'completed');
      await this.publish(m.id);
    }
  }

  /**
   * A committed migration whose target did not confirm within the stall bound ends `failed`
   * (COMMIT_UNCONFIRMED) with the VM where the decision put it, the target, marked `missing`
   * until that host shows it running (its restarted agent reports `completed`, or its inventory
   * lists the guest running: either turns the migration `completed`). The slot is freed.
   */
  async commitUnconfirmed(m: MigrationRecord, stallMs: number): Promise<void> {
    const t = await this.repo.transition(
      m.id,
      ['committing'],
      'failed',
      { finishedAt: nowIso(), error: { code: 'COMMIT_UNCONFIRMED', message: `committed, but target '${m.target ?? ''}' did not confirm within ${stallMs} ms; the VM is marked missing until it shows up there` } },
      { conds: { attempt: String(m.attempt) } },
    );
    if (!t.ok) return;
    await this.finishVm(m, 'target', undefined, 'missing');
    this.metrics.migrationFinished(m, 'failed');
    await this.publish(m.id);
  }

  /**
   * Settles migrations from what a host says runs on it (heartbeat or register): a guest running on
   * the target of its committed migration completes it; a VM record left pointing at a migration
   * that already ended is finished. Only the migration's own target (or source) is believed.
   */
  async repairFromInventory(hostId: string, guests: GuestInventory[]): Promise<void> {
    const running = guests.filter((g) => g.state === 'running');
    if (!running.length) return;
    for (const vm of await this.vms.many(running.map((g) => g.vmId))) {
      const g = running.find((x) => x.vmId === vm.id)!;
      let id = vm.activeOp;
      // a record on this host that does not say running yet while the guest runs: a migration may have put it here
      if (!id && vm.state !== 'running' && vm.hostId === hostId) id = await this.repo.latestForVm(vm.id);
      if (!id) continue;
      const m = await this.repo.get(id);
      if (!m && id === vm.activeOp && id.startsWith('mig-') && Date.now() - (idTime(id) ?? Date.now()) > ORPHAN_CLAIM_MS) {
        // claimed by a create() that died before it stored the migration
        await this.vms.release(vm.id, id);
        continue;
      }
      if (!m || m.vmId !== vm.id) continue;
      const committed = m.committedAttempt > 0 && m.committedAttempt === m.attempt;
      if (committed && m.target === hostId) await this.completeOnTarget(m, g.memoryDigest);
      else if (!committed && isTerminalPhase(m.phase) && m.source === hostId && vm.activeOp === m.id) await this.finishVm(m, 'source');
    }
  }

  /** Ends the current attempt before the point of no return; retries with backoff when allowed. */
  async failAttempt(m: MigrationRecord, code: string, message: string, retryable: boolean): Promise<void> {
    // The attempt is ended first, then both sides are told: an agent's report of the cancel it got
    // must find the attempt over already, not end the whole migration as CANCELLED.
    if (retryable && m.attempt < m.maxAttempts) {
      const at = Date.now() + this.cfg.FERRY_RETRY_BACKOFF_MS * 2 ** Math.max(0, m.attempt - 1);
      const t = await this.repo.transition(m.id, PRE_PONR_INFLIGHT, 'queued', { nextAttemptAt: at, waiting: `retry after ${code}`, error: { code, message } }, { pendingScore: at, conds: { attempt: String(m.attempt) } });
      if (t.ok) {
        await this.sendCancels(m, message);
        this.metrics.retries.inc();
        await this.publish(m.id);
      }
      return;
    }
    const t = await this.repo.transition(m.id, PRE_PONR_INFLIGHT, 'failed', { finishedAt: nowIso(), error: { code, message } }, { conds: { attempt: String(m.attempt) } });
    if (!t.ok) return;
    await this.sendCancels(m, message);
    await this.finishVm(m, 'source');
    this.metrics.migrationFinished(m, 'failed');
    await this.publish(m.id);
  }

  private async onProgress(m: MigrationRecord, r: Extract<AgentReport, { type: 'progress' }>): Promise<void> {
    // queued: that attempt was ended (a retry waits); a late report of it must not bring it back to life
    if (isTerminalPhase(m.phase) || m.phase === 'queued') return;
    const isSender = r.job === 'migrate-send';
    const progress = isSender
      ? {
          bytesDone: r.bytesDone,
          // the total grows when more turns out to be sent than estimated; it is never below what was sent
          bytesTotal: Math.max(r.bytesTotal || m.progress.bytesTotal, r.bytesDone),
          round: r.round,
          roundBytesDone: r.roundBytesDone ?? 0,
          roundBytesTotal: Math.max(r.roundBytesTotal ?? 0, r.roundBytesDone ?? 0),
          dirtyRate: r.dirtyRate,
          rate: r.rate,
          etaMs: r.etaMs,
          expectedDowntimeMs: r.expectedDowntimeMs,
          downtimeMs: r.downtimeMs ?? m.progress.downtimeMs,
        }
      : { ...m.progress, downtimeMs: r.downtimeMs ?? m.progress.downtimeMs };
    const phase = (AGENT_MIGRATION_PHASES as readonly string[]).includes(r.phase) && r.phase !== 'committing' ? (r.phase as MigrationPhase) : m.phase;
    const sig = `${phase}|${progress.bytesDone}|${progress.round}`;
    const now = Date.now();
    const sets = { progress, ...(sig !== m.progressSig ? { progressSig: sig, lastProgressAt: now } : {}) };
    if (phaseIndex(phase) > phaseIndex(m.phase) && phaseIndex(m.phase) < phaseIndex('committing')) {
      const t = await this.repo.transition(m.id, [m.phase], phase, sets, { conds: { attempt: String(m.attempt) } });
      if (!t.ok) return;
      if (phase === 'stop-copy' || phase === 'precopy') {
        const vm = await this.vms.get(m.vmId);
        if (vm && vm.state !== 'migrating') await this.vms.put(m.vmId, { state: 'migrating' });
      }
    } else {
      await this.repo.update(m.id, sets);
      if (sig !== m.progressSig) await this.repo.touch(m.id, now);
    }
    this.metrics.bytes.inc(Math.max(0, isSender ? progress.bytesDone - m.progress.bytesDone : 0));
    await this.publish(m.id, 'migration.progress');
  }

  /** The point of no return, decided atomically: granted unless cancelled, stale or from the wrong host. */
  async commit(hostId: string, id: string, req: CommitRequest): Promise<CommitResponse> {
    const m = await this.repo.get(id);
    if (!m) throw fail(404, `migration '${id}' not found`);
    if (m.target !== hostId) throw fail(403, `host '${hostId}' is not the target of migration '${id}'`);
    const t = await this.repo.transition(id, PRE_PONR_INFLIGHT, 'committing', { lastProgressAt: Date.now(), committedAttempt: req.attempt }, { conds: { cancelRequested: '0', attempt: String(req.attempt), target: hostId } });
    if (!t.ok) {
      if (t.phase === 'committing' && m.attempt === req.attempt) return { commit: true };
      return { commit: false, reason: m.cancelRequested || t.phase === 'cancelled' ? 'cancelled' : `migration is ${t.phase} (attempt ${m.attempt})` };
    }
    await this.publish(id);
    return { commit: true };
  }

  async decision(hostId: string, id: string): Promise<DecisionResponse> {
    const m = await this.repo.get(id);
    if (!m) throw fail(404, `migration '${id}' not found`);
    if (m.source !== hostId && m.target !== hostId) throw fail(403, `host '${hostId}' takes no part in migration '${id}'`);
    if (m.committedAttempt > 0 && m.committedAttempt === m.attempt) return { decision: 'commit' };
    if (isTerminalPhase(m.phase) || m.phase === 'queued') return { decision: 'abort' };
    return { decision: 'pending' };
  }

  /**
   * The final word on one attempt for an agent that holds a copy of the guest and cannot go on
   * (it restarted, or lost its peer): 'commit' if that attempt was committed, else the attempt is
   * ended now (retried when attempts remain, the VM left on its source) and the answer is 'abort'.
   * Atomic against commit(): both are guarded transitions of the same record, so exactly one wins.
   */
  async resolve(hostId: string, id: string, req: ResolveRequest): Promise<ResolveResponse> {
    const m = await this.repo.get(id);
    if (!m) throw fail(404, `migration '${id}' not found`);
    if (m.source !== hostId && m.target !== hostId) throw fail(403, `host '${hostId}' takes no part in migration '${id}'`);
    if (m.committedAttempt > 0 && m.committedAttempt === req.attempt) return { decision: 'commit' };
    if (m.attempt !== req.attempt || !PRE_PONR_INFLIGHT.includes(m.phase)) return { decision: 'abort' };
    await this.failAttempt(m, 'PEER_LOST', `${hostId}: ${req.reason}`, true);
    const now = await this.repo.get(id);
    return { decision: now && now.committedAttempt > 0 && now.committedAttempt === req.attempt ? 'commit' : 'abort' };
  }

  async isTerminal(id: string): Promise<boolean> {
    const m = await this.repo.get(id);
    return !!m && isTerminalPhase(m.phase);
  }
}

/** A completed migration's progress: everything received is the total (100 %), nothing left to wait for. */
export function completedProgress(p: MigrationProgress, bytesReceived: number): MigrationProgress {
  const done = Math.max(p.bytesDone, bytesReceived);
  return { ...p, bytesDone: done, bytesTotal: done, roundBytesDone: p.roundBytesTotal, etaMs: 0, expectedDowntimeMs: null };
}
