/**
 * Source side of a migration (`migrate-send`): save the guest (live: pre-copy rounds while it runs,
 * then pause and stop-copy), convert a legacy image to v2 at the edge, and PUT the v2 stream to the
 * target under the bandwidth caps. The guest stays here (paused at most) until the target answers
 * that it committed; any failure or cancel before that unpauses it here.
 */
import type { MigrateSendPayload, MigrateSendResult, StreamReceiveResponse } from '@ferry/contracts';
import { AGENT_DATA_API } from '@ferry/contracts';
import { WidthMismatchError, isCodecError, toWire } from '../codec';
import { resolveMigration, sleep, type ControlPlaneApi, type Reporter } from '../control-plane';
import { DIGEST_TRAILER, SHA256_TRAILER, StreamUpload, UploadRefused } from '../data-path';
import type { HypervisorDriver, RoundStats } from '../driver';
import { AgentFailure, CancelledError, type Operation } from '../operations';
import { RateLimiter, Tap, throttle } from '../stream-utils';

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
      upload = await StreamUpload.open({
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
