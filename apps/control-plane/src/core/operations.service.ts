import { Inject, Injectable, Logger } from '@nestjs/common';
import { HostJobProducer } from '@ferry/queue';
import { canReceive, cancelPayload, nextOffsetCursor, type AgentReport, type OperationDto, type OperationKind, type Page, type Toolstack, type VmSpec } from '@ferry/contracts';
import { CP_CONFIG, type CpConfig } from '../config';
import { CheckpointsService } from './checkpoints.service';
import { fail } from './errors';
import { MetricsService } from './metrics.service';
import { HostsService, hostToDto, vmToDto } from './hosts.service';
import { EventsRepository, HostsRepository, OperationsRepository, VmsRepository, type HostRecord, type OperationRecord } from './repos';
import { newId, nowIso } from './redis';

function opToDto(o: OperationRecord): OperationDto {
  const { attempt: _a, payload: _p, ...dto } = o;
  return dto;
}

@Injectable()
export class OperationsService {
  constructor(
    @Inject(CP_CONFIG) private readonly cfg: CpConfig,
    private readonly repo: OperationsRepository,
    private readonly vms: VmsRepository,
    private readonly hosts: HostsRepository,
    private readonly events: EventsRepository,
    private readonly producer: HostJobProducer,
    private readonly hostFlags: HostsService,
    private readonly metrics: MetricsService,
    private readonly checkpoints: CheckpointsService,
  ) {}

  private readonly log = new Logger('Operations');

  async get(id: string): Promise<OperationDto> {
    const o = await this.repo.get(id);
    if (!o) throw fail(404, `operation '${id}' not found`);
    return opToDto(o);
  }
  async list(limit: number, offset: number): Promise<Page<OperationDto>> {
    const { items, total } = await this.repo.list(limit, offset);
    return { items: items.map(opToDto), total, limit, nextCursor: nextOffsetCursor(offset, items.length, total) };
  }

  private async create(kind: OperationKind, fields: { id?: string; vmId?: string; hostId?: string | null; campaignId?: string | null; checkpointId?: string; payload?: Record<string, unknown> }): Promise<OperationRecord> {
    const now = nowIso();
    const op: OperationRecord = {
      id: fields.id ?? newId(kind === 'suspend' ? 'sus' : kind === 'resume' ? 'res' : kind === 'upgrade' ? 'upg' : 'inv'),
      kind,
      vmId: fields.vmId ?? null,
      hostId: fields.hostId ?? null,
      state: 'queued',
      phase: 'queued',
      progress: { bytesDone: 0, bytesTotal: 0 },
      checkpointId: kind === 'suspend' ? newId('ckpt') : (fields.checkpointId ?? null),
      campaignId: fields.campaignId ?? null,
      error: null,
      createdAt: now,
      updatedAt: now,
      attempt: 1,
      payload: fields.payload ?? {},
    };
    await this.repo.create(op);
    return op;
  }

  async suspend(vmId: string, campaignId: string | null = null, id?: string): Promise<OperationDto> {
    if (id && (await this.repo.get(id))) return this.get(id);
    const vm = await this.vms.get(vmId);
    if (!vm) throw fail(404, `vm '${vmId}' not found`);
    if (!vm.hostId || vm.state === 'suspended') throw fail(409, `vm '${vmId}' is not running on a host (state ${vm.state})`);
    const op = await this.create('suspend', { id, vmId, hostId: vm.hostId, campaignId });
    if (!(await this.vms.claim(vmId, op.id))) {
      await this.repo.transition(op.id, ['queued'], { state: 'failed', error: { code: 'BUSY', message: 'vm has an active operation' } });
      throw fail(409, `vm '${vmId}' already has an active operation (${vm.activeOp ?? ''})`);
    }
    await this.tryDispatch(op.id);
    return this.get(op.id);
  }

  /**
   * Resumes a suspended VM from its latest checkpoint, or from `checkpointId` (any checkpoint of this
   * VM): 404 for an unknown one or one the store no longer has, 409 for another VM's or one being deleted.
   */
  async resume(vmId: string, hostId: string | undefined, campaignId: string | null = null, id?: string, checkpointId?: string): Promise<OperationDto> {
    if (id && (await this.repo.get(id))) return this.get(id);
    const vm = await this.vms.get(vmId);
    if (!vm) throw fail(404, `vm '${vmId}' not found`);
    if (vm.state !== 'suspended' || !vm.checkpoint) {
      const where = vm.hostId ? ` on host '${vm.hostId}'` : '';
      throw fail(409, `vm '${vmId}' is not suspended (state ${vm.state}${where})${checkpointId ? ': only a suspended VM resumes from a checkpoint; suspend it first' : ''}`);
    }
    const from = await this.checkpoints.forResume(vmId, vm.checkpoint.id, checkpointId);
    const spec = from.spec ?? vm.spec;
    if (hostId !== undefined) {
      const h = await this.hosts.get(hostId);
      if (!h) throw fail(404, `host '${hostId}' not found`);
      const c = canReceive(h.info.toolstack, spec);
      if (!c.ok) throw fail(422, `host '${hostId}' cannot resume vm '${vmId}': ${c.reason}`);
    }
    const op = await this.create('resume', { id, vmId, hostId: hostId ?? null, campaignId, checkpointId: from.id, payload: { requestedHost: hostId ?? null, spec } });
    if (!(await this.vms.claim(vmId, op.id))) {
      await this.repo.transition(op.id, ['queued'], { state: 'failed', error: { code: 'BUSY', message: 'vm has an active operation' } });
      throw fail(409, `vm '${vmId}' already has an active operation`);
    }
    // Pinned while the operation is queued or running: a delete of this checkpoint is refused meanwhile.
    if (!(await this.checkpoints.pin(from.id, op.id))) {
      await this.failOp(op, 'BUSY', `checkpoint ${from.id} is being deleted`);
      throw fail(409, `checkpoint '${from.id}' is being deleted`);
    }
    await this.tryDispatch(op.id);
    return this.get(op.id);
  }

  async upgrade(hostId: string, toolstack: Toolstack, campaignId: string | null, id?: string): Promise<OperationDto> {
    if (id && (await this.repo.get(id))) return this.get(id);
    const op = await this.create('upgrade', { id, hostId, campaignId, payload: { toolstack } });
    await this.tryDispatch(op.id);
    return this.get(op.id);
  }

  private online(h: HostRecord | null): h is HostRecord {
    return !!h && h.hb !== null && Date.now() - h.hb <= this.cfg.FERRY_OFFLINE_AFTER_MS;
  }

  /** Dispatches a queued operation when its host is available. Idempotent (CAS queued -> running). */
  async tryDispatch(id: string): Promise<boolean> {
    const op = await this.repo.get(id);
    if (!op || op.state !== 'queued') return false;
    const store = { url: this.cfg.FERRY_STORE_URL, checkpointId: op.checkpointId ?? '' };
    if (op.kind === 'suspend') {
      const vm = await this.vms.get(op.vmId ?? '');
      if (!vm || !vm.hostId) return this.failOp(op, 'VM_NOT_FOUND', 'vm gone');
      if (!this.online(await this.hosts.get(vm.hostId))) return false;
      if (!(await this.repo.transition(id, ['queued'], { state: 'running', phase: 'dispatched', hostId: vm.hostId }))) return false;
      await this.vms.put(vm.id, { state: 'suspending' });
      await this.producer.dispatch(vm.hostId, 'suspend', { operationId: id, attempt: op.attempt, vmId: vm.id, store, keepRunning: false });
    } else if (op.kind === 'resume') {
      const vm = await this.vms.get(op.vmId ?? '');
      // Operations queued before checkpoints were a resource carry no checkpoint id: they take the latest.
      const checkpointId = op.checkpointId ?? vm?.checkpoint?.id;
      if (!vm || !checkpointId) return this.failOp(op, 'VM_NOT_FOUND', 'vm or checkpoint gone');
      const spec = (op.payload.spec as VmSpec | undefined) ?? vm.spec;
      const host = await this.pickResumeHost(spec, op.payload.requestedHost as string | null);
      if (!host) {
        await this.repo.transition(id, ['queued'], { phase: 'queued: no compatible online host with capacity' });
        return false;
      }
      const c = canReceive(host.info.toolstack, spec);
      if (!c.ok) return this.failOp(op, 'INCOMPATIBLE', c.reason);
      if (!(await this.repo.transition(id, ['queued'], { state: 'running', phase: 'dispatched', hostId: host.id, checkpointId }))) return false;
      await this.vms.put(vm.id, { state: 'resuming' });
      await this.producer.dispatch(host.id, 'resume', { operationId: id, attempt: op.attempt, vm: spec, store: { url: this.cfg.FERRY_STORE_URL, checkpointId }, restore: c.restore });
    } else if (op.kind === 'upgrade') {
      if (!op.hostId || !this.online(await this.hosts.get(op.hostId))) return false;
      if (!(await this.repo.transition(id, ['queued'], { state: 'running', phase: 'dispatched' }))) return false;
      await this.hostFlags.updateFlags(op.hostId, { upgrading: true });
      await this.producer.dispatch(op.hostId, 'upgrade', { operationId: id, attempt: op.attempt, campaignId: op.campaignId, toolstack: op.payload.toolstack as Toolstack });
    } else {
      if (!op.hostId) return false;
      if (!(await this.repo.transition(id, ['queued'], { state: 'running', phase: 'dispatched' }))) return false;
      await this.producer.dispatch(op.hostId, 'inventory', { operationId: id, attempt: op.attempt });
    }
    await this.publish(id);
    return true;
  }

  private async pickResumeHost(spec: { type: 'pv' | 'hvm'; guestWidth?: 32 | 64; memoryMiB: number }, requested: string | null): Promise<HostRecord | null> {
    const all = requested ? [await this.hosts.get(requested)].filter((h): h is HostRecord => !!h) : await this.hosts.all();
    const vms = await this.vms.many(await this.vms.allIds());
    const cands = all
      .filter((h) => this.online(h) && !h.upgrading && h.agentState !== 'upgrading' && (requested ? true : !h.draining && !h.maintenance))
      .filter((h) => canReceive(h.info.toolstack, spec).ok)
      .map((h) => ({ h, dto: hostToDto(h, vms, this.cfg) }))
      .filter(({ h, dto }) => h.info.capacity.memoryMiB - dto.used.memoryMiB >= spec.memoryMiB && dto.used.guests < h.info.capacity.maxGuests)
      .sort((a, b) => b.h.info.capacity.memoryMiB - b.dto.used.memoryMiB - (a.h.info.capacity.memoryMiB - a.dto.used.memoryMiB));
    return cands[0]?.h ?? null;
  }

  private async failOp(op: OperationRecord, code: string, message: string): Promise<boolean> {
    if (await this.repo.transition(op.id, ['queued', 'running'], { state: 'failed', phase: 'failed', error: { code, message } })) {
      if (op.vmId) {
        await this.vms.release(op.vmId, op.id);
        const vm = await this.vms.get(op.vmId);
        if (vm && op.kind === 'suspend' && vm.state === 'suspending') await this.vms.put(vm.id, { state: 'running' });
        if (vm && op.kind === 'resume' && vm.state === 'resuming') await this.vms.put(vm.id, { state: 'suspended' });
        const nv = await this.vms.get(op.vmId);
        if (nv) await this.events.publish('vm.updated', 'vm', nv.id, vmToDto(nv));
      }
      if (op.kind === 'upgrade' && op.hostId) await this.hostFlags.updateFlags(op.hostId, { upgrading: false });
      await this.publish(op.id);
    }
    return false;
  }

  async publish(id: string): Promise<void> {
    const o = await this.repo.get(id);
    if (o) await this.events.publish('operation.updated', 'operation', id, opToDto(o));
  }

  /**
   * A running suspend or resume with no report for `stallMs` fails with STALLED and its agent is told
   * to cancel (before its point of no return the VM stays where it was: running on its host, or in
   * the store). An agent that was already past that point reports completion later; onReport takes it.
   */
  async failIfStalled(id: string, stallMs: number, now = Date.now()): Promise<boolean> {
    const op = await this.repo.get(id);
    if (!op || op.state !== 'running' || (op.kind !== 'suspend' && op.kind !== 'resume') || !op.hostId) return false;
    if (now - Date.parse(op.updatedAt) <= stallMs) return false;
    const reason = `stalled: no progress for ${stallMs} ms in phase ${op.phase}`;
    await this.producer.dispatch(op.hostId, 'cancel', cancelPayload(op.id, op.attempt, reason)).catch(() => undefined);
    await this.failOp(op, 'STALLED', reason);
    return true;
  }

  /** Taken only from the host the operation was dispatched to, and only for the operation's own job. */
  async onReport(hostId: string, r: AgentReport): Promise<void> {
    const op = await this.repo.get(r.operationId);
    if (!op) return;
    if (op.hostId !== hostId || r.job !== op.kind) {
      this.metrics.rejectedReports.inc({ host: hostId, job: r.job });
      this.log.warn(`refused a ${r.type} report for ${r.job} of operation ${op.id} (${op.kind}) from host '${hostId}': it was dispatched to '${op.hostId ?? 'no host'}'`);
      return;
    }
    if (r.attempt !== op.attempt) return;
    // The agent finished after all (past its point of no return when the stall was declared): its word stands.
    const lateCompletion = r.type === 'completed' && op.state === 'failed' && op.error?.code === 'STALLED';
    if (op.state !== 'running' && !lateCompletion) return;
    if (r.type === 'progress') {
      await this.repo.transition(op.id, ['running'], { phase: r.phase, progress: { bytesDone: r.bytesDone, bytesTotal: Math.max(r.bytesTotal, r.bytesDone) } });
      await this.publish(op.id);
      return;
    }
    if (r.type === 'failed') {
      await this.failOp(op, r.error.code, `${hostId}: ${r.error.message}`);
      return;
    }
    // Finished is 100 %: the image's size for a suspend, else what was counted (the last report may be up to a
    // reporting interval old, and the estimate was the guest's memory, not the image).
    const size = r.job === 'suspend' ? r.result.checkpoint.bytes : Math.max(op.progress.bytesDone, op.progress.bytesTotal);
    const progress = { bytesDone: size, bytesTotal: size };
    if (!(await this.repo.transition(op.id, lateCompletion ? ['failed'] : ['running'], { state: 'completed', phase: 'completed', progress, ...(lateCompletion ? { error: null } : {}) }))) return;
    if (r.job === 'suspend' && op.vmId) {
      const c = r.result.checkpoint;
      await this.vms.put(
        op.vmId,
        {
          hostId: null,
          state: 'suspended',
          activeOp: null,
          memoryDigest: c.memoryDigest,
          checkpoint: { id: c.checkpointId, vmId: op.vmId, createdAt: r.at, sourceHostId: hostId, bytes: c.bytes, sha256: c.sha256, memoryDigest: c.memoryDigest },
        },
        hostId,
      );
      await this.checkpoints.record({ id: c.checkpointId, vmId: op.vmId, createdAt: Number.isFinite(Date.parse(r.at)) ? new Date(r.at).toISOString() : nowIso(), sourceHostId: hostId, bytes: c.bytes, sha256: c.sha256, memoryDigest: c.memoryDigest, vm: c.vm, operationId: op.id });
    } else if (r.job === 'resume' && op.vmId) {
      const vm = await this.vms.get(op.vmId);
      await this.vms.put(op.vmId, { hostId, state: 'running', activeOp: null, memoryDigest: r.result.memoryDigest }, vm?.hostId ?? null);
    }
    if (op.vmId) {
      const nv = await this.vms.get(op.vmId);
      if (nv) await this.events.publish('vm.updated', 'vm', nv.id, vmToDto(nv));
    }
    await this.publish(op.id);
  }

  async isTerminal(id: string): Promise<boolean> {
    const o = await this.repo.get(id);
    return !!o && ['completed', 'failed', 'cancelled'].includes(o.state);
  }
}
