/**
 * Source side of a migration (`migrate-send`): save the guest (live: pre-copy rounds while it runs,
 * then pause and stop-copy), convert a legacy image to v2 at the edge, and PUT the v2 stream to the
 * target under the bandwidth caps. The guest stays here (paused at most) until the target answers
 * that it committed; any failure or cancel before that unpauses it here.
 */
import type { Duplex } from 'node:stream';
import type { MigrateSendPayload, MigrateSendResult, StreamReceiveResponse } from '@ferry/contracts';
import { AGENT_DATA_API } from '@ferry/contracts';
import { WidthMismatchError, isCodecError, toWire } from '../codec';
import { resolveMigration, sleep, type ControlPlaneApi, type Reporter } from '../control-plane';
import { DIGEST_TRAILER, SHA256_TRAILER, StreamUpload, UploadRefused, openDuplex } from '../data-path';
import { DriverError, type HypervisorDriver, type RoundStats, type XenLiveMigration } from '../driver';
import { AgentFailure, CancelledError, type Operation } from '../operations';
import { RateLimiter, Tap, throttle } from '../stream-utils';
import { RoundTracker, V2Walker, XL_BANNER, XL_GO, XL_READY, expectMessage, v2StreamOf } from '../xl/migrate-protocol';
import { TransportSocket, playCommittedTarget, relayReport, writeTo } from './xl-live';

export interface SenderOptions {
  hostId: string;
  connectTimeoutMs: number;
  hostLimiter: RateLimiter | null;
  tlsCa?: string | Buffer;
  /** The agent's lifetime: a source asking for the decision on its paused guest stops only with it. */
  closing?: AbortSignal;
  log?: (msg: string) => void;
}

export class MigrationSender {
  constructor(
    private readonly driver: HypervisorDriver,
    private readonly cp: ControlPlaneApi,
    private readonly reporter: Reporter,
    private readonly opts: SenderOptions,
  ) {}

  async send(p: MigrateSendPayload, op: Operation): Promise<MigrateSendResult & { sourceMemoryDigest: string | null }> {
    const spec = await this.driver.spec(p.vmId);
    if (!spec) throw new AgentFailure('VM_NOT_FOUND', `no guest '${p.vmId}' on this host`, false);
    if (p.mode === 'live' && this.driver.xenLive && p.sourceFormat.format === 'v2') return this.sendXenLive(p, op, this.driver.xenLive, spec.memoryMiB * 1024 * 1024);
    const migration = { migrationId: p.migrationId, attempt: p.attempt };
    let phase: 'preparing' | 'precopy' | 'stop-copy' = 'preparing';
    let round = 0;
    let last: RoundStats | null = null;
    let pausedAt = 0;
    let memoryBytes = spec.memoryMiB * 1024 * 1024;
    const t0 = Date.now();
    const tap = new Tap();
    // The current round (pre-copy round or stop-copy) started after `roundStart` bytes and has `roundSize` to send:
    // the total is what went before plus this round, so it grows round by round and never trails what was sent.
    let roundStart = 0;
    let roundSize = memoryBytes;
    const report = (): void => {
      const elapsed = Math.max(1, Date.now() - t0);
      const rate = last?.rate ?? (tap.bytes / elapsed) * 1000;
      const roundDone = Math.max(0, tap.bytes - roundStart);
      const roundTotal = Math.max(roundSize, roundDone);
      const bytesTotal = roundStart + roundTotal;
      this.reporter.progress('migrate-send', p.migrationId, p.attempt, {
        phase,
        bytesDone: tap.bytes,
        bytesTotal,
        round,
        roundBytesDone: roundDone,
        roundBytesTotal: roundTotal,
        dirtyRate: last?.dirtyRate ?? 0,
        rate: (tap.bytes / elapsed) * 1000,
        etaMs: rate > 0 ? Math.round(((bytesTotal - tap.bytes) / rate) * 1000) : null,
        expectedDowntimeMs: last ? Math.round(last.expectedDowntimeMs) : null,
        downtimeMs: null,
      });
    };
    report();
    const ticker = setInterval(report, 500);
    await this.driver.setState(p.vmId, 'migrating-out', migration);
    let upload: StreamUpload | null = null;
    const onAbort = (): void => upload?.abort(op.signal.reason instanceof Error ? op.signal.reason : new CancelledError('cancelled'));
    op.signal.addEventListener('abort', onAbort, { once: true });
    let answered: StreamReceiveResponse | null = null;
    try {
      upload = await this.openStream(p, op, (o) => StreamUpload.open(o));
      phase = p.mode === 'live' ? 'precopy' : 'stop-copy';
      round = 1;
      const handle = await this.driver.save(p.vmId, {
        ...(p.mode === 'live'
          ? { live: { maxRounds: Math.max(1, p.maxRounds), stop: (s: RoundStats) => s.expectedDowntimeMs <= p.downtimeTargetMs } }
          : {}),
        onRound: (s) => {
          last = s;
          round = s.round + 1;
          roundStart = tap.bytes;
          roundSize = s.dirtyBytes;
          report();
        },
        onPaused: (at) => {
          pausedAt = at;
          if (phase !== 'stop-copy') {
            // live: the stop-copy sends what the last pre-copy round left dirty
            roundStart = tap.bytes;
            roundSize = last?.dirtyBytes ?? memoryBytes;
          }
          phase = 'stop-copy';
          report();
        },
        migration,
        signal: op.signal,
        consumesEachChunk: true,
      });
      memoryBytes = handle.memoryBytes;
      if (round <= 1 && roundStart === 0) roundSize = memoryBytes;
      const wire = tap.pipe(throttle(toWire(handle.stream, p.sourceFormat), [p.bandwidthBytesPerSec ? new RateLimiter(p.bandwidthBytesPerSec) : null, this.opts.hostLimiter], op.signal));
      for await (const chunk of wire) {
        op.check();
        await upload.write(chunk);
      }
      op.check();
      const summary = handle.summary();
      round = summary.rounds;
      await upload.end({ [SHA256_TRAILER]: (await tap.sha256()), ...(summary.memoryDigest ? { [DIGEST_TRAILER]: summary.memoryDigest } : {}) });
      const a = await upload.answer();
      let body: Partial<StreamReceiveResponse & { sha256: string }> = {};
      try {
        body = JSON.parse(a.body) as typeof body;
      } catch {
        /* not JSON */
      }
      answered = { committed: body.committed === true, bytesReceived: body.bytesReceived ?? 0, ...(body.reason ? { reason: body.reason } : {}) };
      if (a.status !== 200) throw new AgentFailure(a.status === 409 ? 'CANCELLED' : 'STREAM_ERROR', `target refused the stream (${a.status}): ${body.reason ?? a.body.slice(0, 200)}`, a.status !== 409);
      if (!answered.committed) throw new CancelledError(answered.reason ?? 'the target discarded its copy');
      if (body.sha256 && body.sha256 !== (await tap.sha256())) {
        // the target committed already: it owns the guest now; say so loudly but do not duplicate it
        this.opts.log?.(`migration ${p.migrationId}: target confirmed sha256 ${body.sha256}, sent ${(await tap.sha256())}`);
      }
      const downtimeMs = Date.now() - pausedAt;
      op.pastPointOfNoReturn = true;
      await this.driver.destroy(p.vmId);
      return { migrationId: p.migrationId, bytesSent: tap.bytes, rounds: summary.rounds, downtimeMs, outcome: 'handed-off', sourceMemoryDigest: summary.memoryDigest };
    } catch (e) {
      let err: unknown = e;
      if (!op.cancelled && upload && !answered && !(e instanceof AgentFailure)) {
        // the target may have stopped reading on purpose (cancel): its answer tells
        const a = await Promise.race([
          upload.answer().then(
            (x) => x,
            () => new Promise<null>(() => undefined), // no answer: wait for our own cancel or the timeout
          ),
          sleep(1000).then(() => null),
          new Promise<null>((resolve) => op.signal.addEventListener('abort', () => resolve(null), { once: true })),
        ]);
        if (a?.status === 409) err = new CancelledError(parseReason(a.body) ?? 'the target cancelled');
        else if (!(e instanceof WidthMismatchError) && !isCodecError(e)) err = new AgentFailure('STREAM_ERROR', `stream to ${p.target.hostId} broke: ${(e as Error).message}`, true);
      }
      if (op.cancelled && !(err instanceof AgentFailure && err.code !== 'INTERNAL' && err.code !== 'STREAM_ERROR')) err = op.signal.reason as Error;
      if (pausedAt && !answered) {
        // The guest is paused here and the target said nothing: it may hold a complete copy and
        // have committed it. Only the control plane knows; it ends the attempt unless it was.
        const d = await resolveMigration(
          this.cp,
          this.opts.hostId,
          p.migrationId,
          { attempt: p.attempt, reason: `source lost the stream to ${p.target.hostId} after pausing the guest: ${(err as Error)?.message ?? String(err)}` },
          this.opts.closing ?? new AbortController().signal,
          (m) => this.opts.log?.(m),
        );
        if (d === 'commit') {
          op.pastPointOfNoReturn = true;
          await this.driver.destroy(p.vmId);
          return { migrationId: p.migrationId, bytesSent: tap.bytes, rounds: round, downtimeMs: Date.now() - pausedAt, outcome: 'handed-off', sourceMemoryDigest: null };
        }
      }
      await this.resumeHere(p.vmId);
      if (err instanceof WidthMismatchError) throw new AgentFailure('INCOMPATIBLE', err.message, false);
      throw err;
    } finally {
      clearInterval(ticker);
      op.signal.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Live migration with Xen's own pre-copy (xl hosts): `xl migrate` streams through this agent to the
   * target agent; see ./xl-live.ts for who decides what. Progress comes from the records in flight:
   * the pre-copy rounds (page batches restarting at a low pfn), the stop-copy (the round in flight
   * when the first record after memory appears), and the downtime from there to the target's report.
   */
  private async sendXenLive(p: MigrateSendPayload, op: Operation, live: XenLiveMigration, memoryBytes: number): Promise<MigrateSendResult & { sourceMemoryDigest: null }> {
    const migration = { migrationId: p.migrationId, attempt: p.attempt };
    let phase: 'preparing' | 'precopy' | 'stop-copy' = 'preparing';
    let expectedDowntimeMs: number | null = null;
    const t0 = Date.now();
    const tracker = new RoundTracker((done) => {
      // libxc's next round (the stop-copy, if its policy stops here) sends what this one left dirty:
      // at most this round's pages, at this round's rate, so at most this round's duration
      expectedDowntimeMs = Math.max(0, done.endedAt - done.startedAt);
      report();
    });
    const walker = new V2Walker({ onPageBatch: (b) => tracker.batch(b), onMemoryEnd: () => (tracker.memoryEnd(), (phase = 'stop-copy'), report()) });
    const report = (): void => {
      const round = Math.max(1, tracker.rounds.length);
      const cur = tracker.rounds[tracker.rounds.length - 1];
      const roundStart = walker.bytes - (cur?.bytes ?? 0);
      const roundTotal = Math.max(round === 1 ? memoryBytes : (tracker.rounds[round - 2]?.bytes ?? 0), cur?.bytes ?? 0);
      const elapsed = Math.max(1, Date.now() - t0);
      const rate = (walker.bytes / elapsed) * 1000;
      const bytesTotal = Math.max(walker.bytes, roundStart + roundTotal);
      this.reporter.progress('migrate-send', p.migrationId, p.attempt, {
        phase,
        bytesDone: walker.bytes,
        bytesTotal,
        round,
        roundBytesDone: cur?.bytes ?? 0,
        roundBytesTotal: roundTotal,
        dirtyRate: 0,
        rate,
        etaMs: rate > 0 ? Math.round(((bytesTotal - walker.bytes) / rate) * 1000) : null,
        expectedDowntimeMs,
        downtimeMs: null,
      });
    };
    report();
    const ticker = setInterval(report, 500);
    await this.driver.setState(p.vmId, 'migrating-out', migration);
    const sock = new TransportSocket();
    let link: Duplex | null = null;
    let xl: Duplex | null = null;
    const onAbort = (): void => {
      // before the stream is through, closing xl's transport makes it resume the guest; after, the
      // control plane decides (below), so only the link goes
      link?.destroy();
      if (!walker.done) xl?.destroy();
    };
    op.signal.addEventListener('abort', onAbort, { once: true });
    let xlExit: Promise<void> | null = null;
    try {
      link = await this.openStream(p, op, openDuplex);
      link.on('error', () => undefined); // surfaces as a failed read or write
      await sock.listen();
      xlExit = live.migrateOut(p.vmId, sock.command(), { FERRY_XL_TRANSPORT_TOKEN: sock.token }, migration);
      xlExit.catch(() => undefined);
      xl = await Promise.race([
        sock.connected,
        xlExit.then(
          () => Promise.reject(new AgentFailure('TOOLSTACK_ERROR', 'xl migrate exited before running its transport', true)),
          (e: unknown) => Promise.reject(e instanceof Error ? e : new Error(String(e))),
        ),
      ]);
      xl.on('error', () => undefined);
      op.check();
      // the stream, while the guest runs (xl speaks only after the receiver's banner)
      await writeTo(xl, await expectMessage(link, XL_BANNER, 'banner from the target'));
      phase = 'precopy';
      report();
      const limiters = [p.bandwidthBytesPerSec ? new RateLimiter(p.bandwidthBytesPerSec) : null, this.opts.hostLimiter];
      for await (const chunk of throttle(v2StreamOf(xl, walker), limiters, op.signal)) {
        op.check();
        await writeTo(link, chunk);
      }
    } catch (e) {
      xl?.destroy();
      link?.destroy();
      clearInterval(ticker);
      op.signal.removeEventListener('abort', onAbort);
      await xlExit?.catch(() => undefined);
      await sock.close();
      await this.resumeAfterXl(p.vmId);
      if (op.cancelled) throw op.signal.reason;
      if (e instanceof AgentFailure || e instanceof DriverError) throw e; // DriverError: xl's own failure, with its stderr
      throw new AgentFailure('STREAM_ERROR', `xl live migration to ${p.target.hostId} broke before the stream was through: ${(e as Error).message}`, true);
    }
    try {
      // the whole stream is through: the guest is suspended here; READY means the target committed
      phase = 'stop-copy';
      report();
      const pausedAt = tracker.pausedAt || Date.now();
      let ready = false;
      let lost: Error | null = null;
      try {
        await expectMessage(link, XL_READY, 'READY from the target');
        ready = true;
      } catch (e) {
        lost = e as Error;
      }
      if (!ready) {
        const d = await resolveMigration(this.cp, this.opts.hostId, p.migrationId, { attempt: p.attempt, reason: `source lost the xl migration to ${p.target.hostId} after the stream was through: ${lost?.message}` }, this.opts.closing ?? new AbortController().signal, (m) => this.opts.log?.(m));
        if (d === 'abort') {
          xl.destroy(); // xl migrate: no READY -> it resumes the guest
          await xlExit.catch(() => undefined);
          await this.resumeAfterXl(p.vmId);
          if (op.cancelled) throw op.signal.reason;
          throw new AgentFailure('STREAM_ERROR', `xl live migration to ${p.target.hostId} broke before the target's READY: ${lost?.message}`, true);
        }
      }
      op.pastPointOfNoReturn = true;
      let rc = 0;
      let reportedAt = Date.now();
      // xl's part from READY on: READY in, GO out, REPORT and status in; what the link no longer
      // carries is played here (the target committed, so it starts the guest without our GO)
      const handshake = { ready: false, go: false, reported: false };
      try {
        if (!ready) throw lost ?? new Error('no READY');
        await writeTo(xl, XL_READY);
        handshake.ready = true;
        const go = await expectMessage(xl, XL_GO, 'GO from xl migrate');
        handshake.go = true;
        await writeTo(link, go);
        rc = await relayReport(link, xl);
        handshake.reported = true;
        reportedAt = Date.now();
      } catch (e) {
        if (handshake.reported) throw e;
        if (ready) this.opts.log?.(`migration ${p.migrationId}: link lost after the commit (${(e as Error).message}); finishing xl's handshake here`);
        await playCommittedTarget(xl, handshake).catch(() => undefined);
        reportedAt = Date.now();
      }
      const xlFailed = await xlExit.then(
        () => null,
        (e: unknown) => (e instanceof Error ? e : new Error(String(e))),
      );
      if (rc !== 0) {
        this.opts.log?.(`migration ${p.migrationId}: the target could not start the committed guest (status ${rc}); xl resumed it here`);
        await this.resumeAfterXl(p.vmId);
        throw new AgentFailure('TOOLSTACK_ERROR', `the target could not start ${p.vmId} after the commit (status ${rc}); it runs on here`, false);
      }
      if (xlFailed) {
        // Committed: the target owns the guest. xl failed on its side of the end game (a failed rename
        // before GO makes it resume the domain; a failure after GO leaves it suspended as
        // <name>--migratedaway): whatever copy it left here must not run.
        this.opts.log?.(`migration ${p.migrationId}: xl migrate failed after the commit (${xlFailed.message}); destroying the copy it left here`);
        for (const name of [p.vmId, `${p.vmId}--migratedaway`]) {
          if (await this.driver.spec(name)) await this.driver.destroy(name);
        }
      }
      await this.driver.setState(p.vmId, 'running', null);
      return { migrationId: p.migrationId, bytesSent: walker.bytes, rounds: tracker.rounds.length, downtimeMs: reportedAt - pausedAt, outcome: 'handed-off', sourceMemoryDigest: null };
    } finally {
      clearInterval(ticker);
      op.signal.removeEventListener('abort', onAbort);
      link.destroy();
      await sock.close();
    }
  }

  /**
   * After `xl migrate` failed: xl resumed the guest itself (or it never stopped, in pre-copy). Unpause
   * it only if it is paused: Xen refuses to unpause a domain nobody paused.
   */
  /**
   * Opens the data stream to the target with `open` (a one-way upload or a duplex link). A cancel
   * fails with its reason; a refusal is retryable, as TIMEOUT when the target never took the stream.
   */
  private openStream<T>(p: MigrateSendPayload, op: Operation, open: (o: Parameters<typeof openDuplex>[0]) => Promise<T>): Promise<T> {
    return open({
      url: p.target.dataUrl.replace(/\/+$/, '') + AGENT_DATA_API.stream(p.migrationId),
      token: p.streamToken,
      attempt: p.attempt,
      deadline: Date.now() + this.opts.connectTimeoutMs,
      signal: op.signal,
      ...(this.opts.tlsCa ? { ca: this.opts.tlsCa } : {}),
    }).catch((e: unknown) => {
      if (op.cancelled) throw op.signal.reason;
      throw e instanceof UploadRefused ? new AgentFailure(e.status === 404 || e.status === 0 ? 'TIMEOUT' : 'STREAM_ERROR', `cannot open the stream to ${p.target.hostId}: ${e.message}`, true) : e;
    });
  }

  private async resumeAfterXl(vmId: string): Promise<void> {
    if (!(await this.driver.spec(vmId))) return;
    await this.driver.setState(vmId, 'running', null);
    if ((await this.driver.guests()).find((g) => g.vmId === vmId)?.state === 'paused') await this.driver.unpause(vmId);
  }

  /** Unpauses first, then drops the migration mark: a crash in between leaves the mark, and the restart settles it. */
  private async resumeHere(vmId: string): Promise<void> {
    const spec = await this.driver.spec(vmId);
    if (!spec) return;
    await this.driver.unpause(vmId);
    await this.driver.setState(vmId, 'running', null);
  }
}

function parseReason(body: string): string | undefined {
  try {
    return (JSON.parse(body) as { reason?: string }).reason;
  } catch {
    return undefined;
  }
}
