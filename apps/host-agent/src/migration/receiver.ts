/**
 * Target side of a migration (`migrate-receive`): wait for the source's PUT carrying the one-time
 * stream token, verify the v2 stream while restoring it PAUSED, confirm the sha256, ask the control
 * plane to commit (point of no return), then unpause or discard, and answer the PUT.
 */
import { timingSafeEqual } from 'node:crypto';
import type * as http from 'node:http';
import type { CommitResponse, MigrateReceivePayload, MigrateReceiveResult, StreamReceiveResponse } from '@ferry/contracts';
import { fromWire, verifyWire } from '../codec';
import { resolveMigration, type ControlPlaneApi, type Reporter } from '../control-plane';
import { DIGEST_TRAILER, SHA256_TRAILER, json } from '../data-path';
import type { HypervisorDriver } from '../driver';
import { AgentFailure, CancelledError, type Operation } from '../operations';
import { Tap } from '../stream-utils';

interface Incoming {
  req: http.IncomingMessage;
  res: http.ServerResponse;
}

class Expectation {
  connected = false;
  resolve!: (v: Incoming) => void;
  readonly incoming = new Promise<Incoming>((r) => (this.resolve = r));
  constructor(readonly payload: MigrateReceivePayload) {}
}

export class MigrationReceiver {
  private readonly expected = new Map<string, Expectation>();

  constructor(
    private readonly hostId: string,
    private readonly driver: HypervisorDriver,
    private readonly cp: ControlPlaneApi,
    private readonly reporter: Reporter,
    private readonly log: (msg: string) => void = () => undefined,
    /** The agent's lifetime: a target waiting for the decision on its copy stops only with it. */
    private readonly closing: AbortSignal = new AbortController().signal,
  ) {}

  /** Data server entry: the source's PUT. */
  readonly onStream = (migrationId: string, token: string, attempt: number | null, req: http.IncomingMessage, res: http.ServerResponse, expectContinue: boolean): void => {
    const exp = this.expected.get(migrationId);
    if (!exp) return json(res, 404, { statusCode: 404, error: 'Not Found', message: `not expecting migration '${migrationId}' (yet)` }, true);
    const a = Buffer.from(token);
    const b = Buffer.from(exp.payload.streamToken);
    if (a.length !== b.length || !timingSafeEqual(a, b)) return json(res, 401, { statusCode: 401, error: 'Unauthorized', message: 'bad stream token' }, true);
    if (attempt !== null && attempt !== exp.payload.attempt) {
      return json(res, 409, { statusCode: 409, error: 'Conflict', message: `attempt ${attempt} is not the expected attempt ${exp.payload.attempt}` }, true);
    }
    if (exp.connected) return json(res, 409, { statusCode: 409, error: 'Conflict', message: 'the stream token was used already' }, true);
    exp.connected = true;
    this.expected.delete(migrationId); // one-time token
    if (expectContinue) res.writeContinue();
    exp.resolve({ req, res });
  };

  /**
   * A copy of the guest may still be on its way out of this host: the one it sent away a moment
   * ago (the source drops it after the commit), or an uncommitted copy of an earlier attempt (the
   * newer attempt cancelled it; it is being discarded). Waits for it, within `timeoutMs`; any other
   * domain of that name is a conflict.
   */
  private async waitForDeparture(p: MigrateReceivePayload, timeoutMs: number, op: Operation): Promise<void> {
    const vmId = p.vm.vmId;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const leaving = (await this.driver.pendingMigrations()).some(
        (m) => m.vmId === vmId && (m.state === 'migrating-out' || (m.state === 'migrating-in' && !m.committed && (m.migrationId !== p.migrationId || m.attempt < p.attempt))),
      );
      if (!leaving) {
        if (!(await this.driver.spec(vmId))) return;
        throw new AgentFailure('TOOLSTACK_ERROR', `a domain '${vmId}' exists on this host already`, false);
      }
      if (Date.now() > deadline) throw new AgentFailure('TOOLSTACK_ERROR', `this host's earlier copy of '${vmId}' is still leaving`, true);
      op.check();
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async receive(p: MigrateReceivePayload, op: Operation): Promise<MigrateReceiveResult> {
    const progress = (phase: 'preparing' | 'verifying', bytesDone: number): void =>
      this.reporter.progress('migrate-receive', p.migrationId, p.attempt, {
        phase,
        bytesDone,
        bytesTotal: p.vm.memoryMiB * 1024 * 1024,
        round: 0,
        dirtyRate: 0,
        rate: 0,
        etaMs: null,
        expectedDowntimeMs: null,
        downtimeMs: null,
      });
    if (await this.driver.spec(p.vm.vmId)) await this.waitForDeparture(p, p.connectTimeoutMs, op);
    progress('preparing', 0);
    const exp = new Expectation(p);
    this.expected.set(p.migrationId, exp);
    let conn: Incoming;
    try {
      conn = await new Promise<Incoming>((resolve, reject) => {
        const t = setTimeout(() => reject(new AgentFailure('TIMEOUT', `the source did not connect within ${p.connectTimeoutMs} ms`, true)), p.connectTimeoutMs);
        const onAbort = (): void => reject(op.signal.reason as Error);
        op.signal.addEventListener('abort', onAbort, { once: true });
        void exp.incoming.then((v) => {
          clearTimeout(t);
          op.signal.removeEventListener('abort', onAbort);
          resolve(v);
        });
      });
    } finally {
      if (this.expected.get(p.migrationId) === exp) this.expected.delete(p.migrationId);
    }
    const { req, res } = conn;
    const onAbort = (): void => {
      // past the point of no return the guest is ours: never tell the source we discarded it
      if (op.pastPointOfNoReturn) return;
      json(res, 409, { committed: false, bytesReceived: tap.bytes, reason: String((op.signal.reason as Error)?.message ?? 'cancelled') } satisfies StreamReceiveResponse, true);
      req.destroy();
    };
    op.signal.addEventListener('abort', onAbort, { once: true });
    let lastReport = 0;
    const tap = new Tap((n) => {
      if (Date.now() - lastReport > 500) {
        lastReport = Date.now();
        progress('preparing', n);
      }
    });
    let restored = false;
    try {
      const wire = verifyWire(tap.pipe(req));
      // the whole stream is in and verified: what remains is building the domain, then the commit
      wire.facts.then(
        () => {
          if (op.cancelled) return;
          progress('verifying', tap.bytes);
          void this.reporter.flush();
        },
        () => undefined,
      );
      const native = fromWire(wire.output, p.restore, (what) => this.log(`migration ${p.migrationId}: the legacy image for this toolstack leaves out ${what}`));
      const migration = { migrationId: p.migrationId, attempt: p.attempt };
      const r = await this.driver.restore(p.vm, native, { signal: op.signal, migration });
      restored = true;
      const facts = await wire.facts;
      op.check();
      if (facts.guest !== p.vm.type) throw new AgentFailure('STREAM_ERROR', `stream holds a ${facts.guest} guest, expected ${p.vm.type}`, false);
      const sent = req.trailers[SHA256_TRAILER];
      if (sent !== (await tap.sha256())) throw new AgentFailure('STREAM_ERROR', `stream sha256 mismatch: source says ${sent ?? '(none)'}, received ${(await tap.sha256())}`, true);
      const srcDigest = req.trailers[DIGEST_TRAILER];
      if (srcDigest && r.memoryDigest && srcDigest !== r.memoryDigest) {
        throw new AgentFailure('STREAM_ERROR', `memory digest mismatch after restore: source ${srcDigest}, restored ${r.memoryDigest}`, true);
      }
      progress('verifying', tap.bytes);
      await this.reporter.flush();
      // POINT OF NO RETURN is decided by the control plane.
      let c: CommitResponse;
      try {
        c = await this.cp.commit(this.hostId, p.migrationId, { attempt: p.attempt, bytesReceived: tap.bytes, memoryDigest: r.memoryDigest });
      } catch (e) {
        // no answer: the commit may have been granted, so the copy is neither kept nor dropped on a guess
        const d = await resolveMigration(this.cp, this.hostId, p.migrationId, { attempt: p.attempt, reason: `target got no answer to its commit: ${(e as Error).message}` }, this.closing, this.log);
        c = d === 'commit' ? { commit: true } : { commit: false, reason: 'the control plane ended this attempt' };
      }
      if (!c.commit) {
        await this.driver.destroy(p.vm.vmId).catch(() => undefined);
        restored = false;
        json(res, 200, { committed: false, bytesReceived: tap.bytes, reason: c.reason ?? 'commit refused' } satisfies StreamReceiveResponse);
        throw new CancelledError(c.reason ?? 'commit refused by the control plane');
      }
      op.pastPointOfNoReturn = true;
      await this.driver.setState(p.vm.vmId, 'migrating-in', { ...migration, committed: true });
      await this.driver.unpause(p.vm.vmId);
      await this.driver.setState(p.vm.vmId, 'running', null);
      json(res, 200, { committed: true, bytesReceived: tap.bytes, sha256: (await tap.sha256()) });
      return { migrationId: p.migrationId, bytesReceived: tap.bytes, memoryDigest: r.memoryDigest, outcome: 'running-on-target' };
    } catch (e) {
      if (!op.pastPointOfNoReturn) {
        // an agent shutting down leaves a restored copy to its next start, which asks the control plane
        if (!(restored && this.closing.aborted) && (restored || (await this.driver.spec(p.vm.vmId).catch(() => null)))) {
          const mine = (await this.driver.pendingMigrations()).some((m) => m.vmId === p.vm.vmId && m.migrationId === p.migrationId);
          if (mine) await this.driver.destroy(p.vm.vmId).catch(() => undefined);
        }
        if (!op.cancelled && !(e instanceof AgentFailure) && (req.destroyed || !req.complete)) {
          // the source may have dropped the stream because it was cancelled: our own cancel is on its way
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, 1000);
            op.signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
          });
        }
        let err = op.cancelled ? (op.signal.reason as Error) : e;
        if (!op.cancelled && !(e instanceof AgentFailure) && (req.destroyed || !req.complete) && !restored) {
          err = new AgentFailure('STREAM_ERROR', `stream from ${p.source.hostId} broke after ${tap.bytes} bytes: ${(e as Error).message}`, true);
        }
        json(res, err instanceof CancelledError ? 409 : 422, { committed: false, bytesReceived: tap.bytes, reason: (err as Error).message } satisfies StreamReceiveResponse, true);
        if (!req.complete) req.destroy();
        throw err;
      }
      throw e;
    } finally {
      op.signal.removeEventListener('abort', onAbort);
    }
  }
}
