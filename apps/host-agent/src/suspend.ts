/**
 * Suspend (save the guest as v2 and upload it to the suspend-store) and resume (download, restore,
 * unpause). The store speaks its own checkpoint API: PUT/GET {store.url}/v1/checkpoints/{id}.
 */
import type { ResumePayload, ResumeResult, SuspendPayload, SuspendResult } from '@ferry/contracts';
import { toWire, WidthMismatchError } from './codec';
import type { Reporter } from './control-plane';
import type { HypervisorDriver } from './driver';
import { AgentFailure, type Operation } from './operations';
import { Tap } from './stream-utils';

export interface StoreClient {
  put(url: string, checkpointId: string, vmId: string, body: AsyncIterable<Uint8Array>, signal: AbortSignal): Promise<{ size: number; sha256: string }>;
  get(url: string, checkpointId: string, restore: ResumePayload['restore'], signal: AbortSignal): Promise<AsyncIterable<Uint8Array>>;
}

export class HttpStoreClient implements StoreClient {
  constructor(private readonly token: string | undefined) {}

  private headers(): Record<string, string> {
    return this.token ? { authorization: `Bearer ${this.token}` } : {};
  }

  async put(url: string, checkpointId: string, vmId: string, body: AsyncIterable<Uint8Array>, signal: AbortSignal): Promise<{ size: number; sha256: string }> {
    const u = new URL(`v1/checkpoints/${encodeURIComponent(checkpointId)}`, url.endsWith('/') ? url : url + '/');
    u.searchParams.set('vm', vmId);
    u.searchParams.set('format', 'v2');
    const res = await fetch(u, {
      method: 'PUT',
      headers: { ...this.headers(), 'content-type': 'application/octet-stream' },
      body: body as unknown as BodyInit,
      duplex: 'half',
      signal,
    } as RequestInit);
    const text = await res.text();
    if (res.status !== 201 && res.status !== 200) throw new AgentFailure('STORE_ERROR', `store refused checkpoint ${checkpointId}: ${res.status} ${text.slice(0, 300)}`, res.status >= 500);
    const meta = JSON.parse(text) as { size: number; sha256: string };
    return { size: meta.size, sha256: meta.sha256 };
  }

  async get(url: string, checkpointId: string, restore: ResumePayload['restore'], signal: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    const u = new URL(`v1/checkpoints/${encodeURIComponent(checkpointId)}`, url.endsWith('/') ? url : url + '/');
    if (restore.format === 'legacy') {
      // the store down-converts for hosts not upgraded yet
      u.searchParams.set('format', 'legacy');
      u.searchParams.set('width', String(restore.width));
    }
    const res = await fetch(u, { headers: this.headers(), signal });
    if (res.status !== 200 || !res.body) {
      const text = await res.text().catch(() => '');
      throw new AgentFailure('STORE_ERROR', `store: GET checkpoint ${checkpointId}: ${res.status} ${text.slice(0, 300)}`, res.status >= 500);
    }
    return res.body as unknown as AsyncIterable<Uint8Array>;
  }
}

export class SuspendService {
  constructor(
    private readonly driver: HypervisorDriver,
    private readonly store: StoreClient,
    private readonly reporter: Reporter,
  ) {}

  /** `bytesTotal` is the estimate (the guest's memory); the image can be larger (headers, vCPU and device state), so the total grows with what went through. */
  private progress(job: 'suspend' | 'resume', op: Operation, phase: 'suspending' | 'uploading' | 'downloading' | 'restoring', bytesDone: number, bytesTotal: number): void {
    this.reporter.progress(job, op.operationId, op.attempt, { phase, bytesDone, bytesTotal: Math.max(bytesTotal, bytesDone), round: 0, dirtyRate: 0, rate: 0, etaMs: null, expectedDowntimeMs: null, downtimeMs: null });
  }

  async suspend(p: SuspendPayload, op: Operation): Promise<SuspendResult> {
    const spec = await this.driver.spec(p.vmId);
    if (!spec) throw new AgentFailure('VM_NOT_FOUND', `no guest '${p.vmId}' on this host`, false);
    const total = spec.memoryMiB * 1024 * 1024;
    this.progress('suspend', op, 'suspending', 0, total);
    await this.driver.setState(p.vmId, 'suspending');
    let last = 0;
    const tap = new Tap((n) => {
      if (Date.now() - last > 500) {
        last = Date.now();
        this.progress('suspend', op, 'uploading', n, total);
      }
    });
    try {
      const handle = await this.driver.save(p.vmId, { signal: op.signal });
      const ts = this.driver.toolstack();
      const meta = await this.store.put(p.store.url, p.store.checkpointId, p.vmId, tap.pipe(toWire(handle.stream, { format: ts.streamFormat, width: ts.bitness })), op.signal);
      op.check();
      // the whole image went through: its size is the total
      this.progress('suspend', op, 'uploading', tap.bytes, tap.bytes);
      if (meta.sha256 !== (await tap.sha256()) || meta.size !== tap.bytes) {
        throw new AgentFailure('STORE_ERROR', `store recorded ${meta.size} bytes sha256 ${meta.sha256}, sent ${tap.bytes} bytes sha256 ${(await tap.sha256())}`, true);
      }
      const memoryDigest = handle.summary().memoryDigest;
      op.pastPointOfNoReturn = true;
      if (p.keepRunning) {
        await this.driver.setState(p.vmId, 'running');
        await this.driver.unpause(p.vmId);
      } else {
        await this.driver.destroy(p.vmId);
      }
      return { checkpoint: { checkpointId: p.store.checkpointId, vmId: p.vmId, bytes: tap.bytes, sha256: (await tap.sha256()), memoryDigest, vm: spec } };
    } catch (e) {
      if (await this.driver.spec(p.vmId)) {
        await this.driver.setState(p.vmId, 'running');
        await this.driver.unpause(p.vmId);
      }
      if (op.cancelled) throw op.signal.reason;
      if (e instanceof WidthMismatchError) throw new AgentFailure('INCOMPATIBLE', e.message, false);
      if (e instanceof AgentFailure) throw e;
      throw new AgentFailure('STORE_ERROR', `upload to the store failed: ${(e as Error).message}`, true);
    }
  }

  async resume(p: ResumePayload, op: Operation): Promise<ResumeResult> {
    if (await this.driver.spec(p.vm.vmId)) throw new AgentFailure('TOOLSTACK_ERROR', `a domain '${p.vm.vmId}' exists on this host already`, false);
    const ts = this.driver.toolstack();
    const want = p.restore.format === 'v2' ? 'v2' : `legacy ${p.restore.width}-bit`;
    const have = ts.streamFormat === 'v2' ? 'v2' : `legacy ${ts.bitness}-bit`;
    if (want !== have) throw new AgentFailure('INCOMPATIBLE', `asked to restore as ${want}, but this host's toolstack reads ${have}`, true);
    const total = p.vm.memoryMiB * 1024 * 1024;
    this.progress('resume', op, 'downloading', 0, total);
    let last = 0;
    // Counts only: the store checks every block of the image against its recorded checksum while it streams and breaks the transfer on a mismatch.
    const tap = new Tap(
      (n) => {
        if (Date.now() - last > 500) {
          last = Date.now();
          this.progress('resume', op, 'restoring', n, total);
        }
      },
      { hash: false },
    );
    const body = await this.store.get(p.store.url, p.store.checkpointId, p.restore, op.signal);
    try {
      const r = await this.driver.restore(p.vm, tap.pipe(body), { signal: op.signal });
      op.check();
      this.progress('resume', op, 'restoring', tap.bytes, tap.bytes);
      op.pastPointOfNoReturn = true;
      await this.driver.setState(p.vm.vmId, 'running');
      await this.driver.unpause(p.vm.vmId);
      return { vmId: p.vm.vmId, memoryDigest: r.memoryDigest };
    } catch (e) {
      if (!op.pastPointOfNoReturn && (await this.driver.spec(p.vm.vmId))) await this.driver.destroy(p.vm.vmId).catch(() => undefined);
      if (op.cancelled) throw op.signal.reason;
      throw e;
    }
  }
}
