/**
 * Target side of a migration (`migrate-receive`): wait for the source's PUT carrying the one-time
 * stream token, verify the v2 stream while restoring it PAUSED, confirm the sha256, ask the control
 * plane to commit (point of no return), then unpause or discard, and answer the PUT.
 */
import { timingSafeEqual } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type * as http from 'node:http';
import type { Duplex } from 'node:stream';
import type { CommitResponse, MigrateReceivePayload, MigrateReceiveResult, StreamReceiveResponse } from '@ferry/contracts';
import { fromWire, verifyWire } from '../codec';
import { resolveMigration, type ControlPlaneApi, type Reporter } from '../control-plane';
import { DIGEST_TRAILER, SHA256_TRAILER, json } from '../data-path';
import type { HypervisorDriver, XenLiveMigration } from '../driver';
import { AgentFailure, CancelledError, type Operation } from '../operations';
import { Tap } from '../stream-utils';
import { V2Walker, XL_BANNER, XL_GO, XL_READY, XL_REPORT, expectMessage, readExactly, v2StreamOf } from '../xl/migrate-protocol';
import { GO_WAIT_MS, writeTo } from './xl-live';

type Incoming =
  | { kind?: undefined; req: http.IncomingMessage; res: http.ServerResponse }
  /** An xl live migration: the upgraded duplex stream, accepted (101) once the receiver is set. */
  | { kind: 'xl'; link: Duplex; accept: () => void };

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

  /** The expectation this connection may take (consuming the one-time token), or why not. */
  private claim(migrationId: string, token: string, attempt: number | null): Expectation | { status: number; message: string } {
    const exp = this.expected.get(migrationId);
    if (!exp) return { status: 404, message: `not expecting migration '${migrationId}' (yet)` };
    const a = Buffer.from(token);
    const b = Buffer.from(exp.payload.streamToken);
    if (a.length !== b.length || !timingSafeEqual(a, b)) return { status: 401, message: 'bad stream token' };
    if (attempt !== null && attempt !== exp.payload.attempt) return { status: 409, message: `attempt ${attempt} is not the expected attempt ${exp.payload.attempt}` };
    if (exp.connected) return { status: 409, message: 'the stream token was used already' };
    exp.connected = true;
    this.expected.delete(migrationId); // one-time token
    return exp;
  }

  /** Data server entry: the source's PUT. */
  readonly onStream = (migrationId: string, token: string, attempt: number | null, req: http.IncomingMessage, res: http.ServerResponse, expectContinue: boolean): void => {
    const exp = this.claim(migrationId, token, attempt);
    if (!(exp instanceof Expectation)) return json(res, exp.status, { statusCode: exp.status, error: STATUS_CODES[exp.status] ?? 'Error', message: exp.message }, true);
    if (expectContinue) res.writeContinue();
    exp.resolve({ req, res });
  };

  /** Data server entry: the source's Upgrade for an xl live migration. */
  readonly onDuplex = (migrationId: string, token: string, attempt: number | null, link: Duplex, refuse: (status: number, message: string) => void, accept: () => void): void => {
    const exp = this.claim(migrationId, token, attempt);
    if (!(exp instanceof Expectation)) return refuse(exp.status, exp.message);
    if (!this.driver.xenLive || exp.payload.restore.format !== 'v2') {
      refuse(422, 'this host cannot receive an xl live migration (not an xl host with a v2 toolstack); migrate cold');
      exp.resolve({ kind: 'xl', link, accept: () => undefined }); // the receive fails on it at once
      return;
    }
    exp.resolve({ kind: 'xl', link, accept });
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
    const progress = (phase: 'preparing' | 'verifying', bytesDone: number): void => this.progressOf(p, phase, bytesDone);
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
    if (conn.kind === 'xl') {
      if (!this.driver.xenLive || p.restore.format !== 'v2') throw new AgentFailure('INCOMPATIBLE', 'the source asked for an xl live migration; this host cannot receive one', false);
      return this.receiveXenLive(p, op, this.driver.xenLive, conn.link, conn.accept);
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

  /**
   * Target of a live migration with Xen's own pre-copy (./xl-live.ts): `xl migrate-receive -p` builds
   * the domain from the stream, verified here as it flows; at its READY the agent commits with the
   * control plane and only then passes READY to the source. Before the commit any failure closes
   * migrate-receive's stdin (it destroys what it built) and the link (the source's xl resumes).
   */
  private async receiveXenLive(p: MigrateReceivePayload, op: Operation, live: XenLiveMigration, link: Duplex, accept: () => void): Promise<MigrateReceiveResult> {
    const migration = { migrationId: p.migrationId, attempt: p.attempt };
    let lastReport = 0;
    const tap = new Tap((n) => {
      if (Date.now() - lastReport > 500) {
        lastReport = Date.now();
        this.progressOf(p, 'preparing', n);
      }
    });
    link.on('error', () => undefined);
    let xl: Awaited<ReturnType<XenLiveMigration['migrateIn']>> | null = null;
    const onAbort = (): void => {
      link.destroy();
      xl?.stdin.destroy();
    };
    op.signal.addEventListener('abort', onAbort, { once: true });
    try {
      try {
        xl = await live.migrateIn(p.vm, migration);
        accept();
        xl.stdout.on('error', () => undefined);
        await writeTo(link, await expectMessage(xl.stdout, XL_BANNER, 'banner from xl migrate-receive'));
        const wire = verifyWire(tap.pipe(v2StreamOf(link, new V2Walker())));
        for await (const chunk of wire.output) await writeTo(xl.stdin, chunk);
        const facts = await wire.facts;
        if (facts.guest !== p.vm.type) throw new AgentFailure('STREAM_ERROR', `stream holds a ${facts.guest} guest, expected ${p.vm.type}`, false);
        this.progressOf(p, 'verifying', tap.bytes);
        await this.reporter.flush();
        await expectMessage(xl.stdout, XL_READY, 'READY from xl migrate-receive');
        op.check();
      } catch (e) {
        throw await this.failXenLive(p, op, e, xl, link, tap.bytes);
      }
      // POINT OF NO RETURN is decided by the control plane.
      let c: CommitResponse;
      try {
        c = await this.cp.commit(this.hostId, p.migrationId, { attempt: p.attempt, bytesReceived: tap.bytes, memoryDigest: null });
      } catch (e) {
        const d = await resolveMigration(this.cp, this.hostId, p.migrationId, { attempt: p.attempt, reason: `target got no answer to its commit: ${(e as Error).message}` }, this.closing, this.log);
        c = d === 'commit' ? { commit: true } : { commit: false, reason: 'the control plane ended this attempt' };
      }
      if (!c.commit) throw await this.failXenLive(p, op, new CancelledError(c.reason ?? 'commit refused by the control plane'), xl, link, tap.bytes);
      op.pastPointOfNoReturn = true;
      await this.driver.setState(p.vm.vmId, 'migrating-in', { ...migration, committed: true });
      // READY to the source, its GO back; without them, migrate-receive gets GO from us: we own the guest now
      const sourceGo = writeTo(link, XL_READY).then(() => expectMessage(link, XL_GO, 'GO from the source'));
      let timer: NodeJS.Timeout | undefined;
      const fromSource = await Promise.race([sourceGo.then(() => true, () => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), GO_WAIT_MS)))]);
      clearTimeout(timer);
      if (!fromSource) this.log(`migration ${p.migrationId}: no GO from the source; starting the committed guest anyway`);
      let rc: number;
      try {
        await writeTo(xl.stdin, XL_GO);
        await expectMessage(xl.stdout, XL_REPORT, 'report from xl migrate-receive');
        rc = (await readExactly(xl.stdout, 1, 'status from xl migrate-receive'))[0]!;
      } catch (e) {
        // migrate-receive died after the commit: the guest is ours; start it if it got its name
        const failed = await xl.exit.then(() => '', (x: unknown) => (x as Error).message);
        if (!(await this.driver.spec(p.vm.vmId))) throw new AgentFailure('TOOLSTACK_ERROR', `xl migrate-receive failed after the commit: ${(e as Error).message} ${failed}`, false);
        this.log(`migration ${p.migrationId}: xl migrate-receive failed after the commit (${(e as Error).message}); starting ${p.vm.vmId} here`);
        rc = 0;
      }
      if (rc === 0) {
        await this.driver.unpause(p.vm.vmId);
        await this.driver.setState(p.vm.vmId, 'running', null);
      }
      // the report goes to the source after the guest runs here: the source measures downtime to it
      await writeTo(link, Buffer.concat([XL_REPORT, Buffer.from([rc])])).catch(() => undefined);
      if (rc !== 0) {
        await writeTo(link, await expectMessage(xl.stdout, XL_GO, 'xl migrate-receive giving the domain back')).catch(() => undefined);
        await xl.exit.catch(() => undefined);
        await this.driver.setState(p.vm.vmId, 'running', null);
        throw new AgentFailure('TOOLSTACK_ERROR', `xl migrate-receive could not start ${p.vm.vmId} (status ${rc}); the source resumes it`, false);
      }
      await xl.exit.catch((e: unknown) => this.log(`migration ${p.migrationId}: ${(e as Error).message}`));
      return { migrationId: p.migrationId, bytesReceived: tap.bytes, memoryDigest: null, outcome: 'running-on-target' };
    } finally {
      op.signal.removeEventListener('abort', onAbort);
      link.end();
    }
  }

  /** Before the commit: migrate-receive loses its stdin (it destroys its copy), the source its link. */
  private async failXenLive(p: MigrateReceivePayload, op: Operation, e: unknown, xl: { stdin: { destroy(): void }; exit: Promise<void> } | null, link: Duplex, bytes: number): Promise<Error> {
    link.destroy();
    let why = '';
    if (xl) {
      xl.stdin.destroy();
      why = await xl.exit.then(
        () => '',
        (x: unknown) => ` (${(x as Error).message})`,
      );
    }
    // what migrate-receive built and did not destroy itself (it was killed, or failed on the way)
    const mine = (await this.driver.pendingMigrations()).some((m) => m.vmId === p.vm.vmId && m.migrationId === p.migrationId);
    for (const name of [p.vm.vmId, `${p.vm.vmId}--incoming`]) {
      if (mine && (await this.driver.spec(name).catch(() => null))) await this.driver.destroy(name).catch(() => undefined);
    }
    if (mine) await this.driver.setState(p.vm.vmId, 'running', null);
    if (op.cancelled) return op.signal.reason as Error;
    if (e instanceof AgentFailure) return e;
    return new AgentFailure('STREAM_ERROR', `xl live migration from ${p.source.hostId} failed after ${bytes} bytes: ${(e as Error).message}${why}`, true);
  }

  private progressOf(p: MigrateReceivePayload, phase: 'preparing' | 'verifying', bytesDone: number): void {
    this.reporter.progress('migrate-receive', p.migrationId, p.attempt, {
      phase,
      bytesDone,
      // the stream carries more than the guest's memory (headers, vCPU and device state)
      bytesTotal: Math.max(bytesDone, p.vm.memoryMiB * 1024 * 1024),
      round: 0,
      dirtyRate: 0,
      rate: 0,
      etaMs: null,
      expectedDowntimeMs: null,
      downtimeMs: null,
    });
  }
}

