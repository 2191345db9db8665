/**
 * Live display of a migration or operation: a one-line bar on a terminal (stderr), plain
 * progress lines otherwise (stdout: one per phase / round change, at most one per second of
 * byte progress in between).
 */
import type { MigrationDto, OperationDto } from '@ferry/contracts';
import { mib, secs } from './common';

export interface Snapshot {
  phase: string;
  bytesDone: number;
  bytesTotal: number;
  round?: number;
  /** Bytes of the current round sent, and what it has to send. */
  roundBytesDone?: number;
  roundBytesTotal?: number;
  rate?: number;
  etaMs?: number | null;
  cancellable?: boolean;
  note?: string | null;
}

export function fromMigration(m: MigrationDto): Snapshot {
  return {
    phase: m.phase,
    bytesDone: m.progress.bytesDone,
    bytesTotal: m.progress.bytesTotal,
    round: m.progress.round,
    roundBytesDone: m.progress.roundBytesDone,
    roundBytesTotal: m.progress.roundBytesTotal,
    rate: m.progress.rate,
    etaMs: m.progress.etaMs,
    cancellable: m.cancellable,
    note: m.phase === 'queued' ? m.waitingReason : null,
  };
}

export function fromOperation(o: OperationDto): Snapshot {
  return { phase: o.phase || o.state, bytesDone: o.progress.bytesDone, bytesTotal: o.progress.bytesTotal };
}

export class LiveBar {
  private lastKey = '';
  private lastPlain = 0;
  private drawn = false;
  constructor(
    private readonly label: string,
    private readonly tty = process.stderr.isTTY === true,
    private readonly width = 30,
  ) {}

  update(s: Snapshot): void {
    if (this.tty) {
      process.stderr.write(`\r${this.line(s, true)}\x1b[K`);
      this.drawn = true;
      return;
    }
    const key = `${s.phase}/${s.round ?? ''}/${s.note ?? ''}`;
    const now = Date.now();
    if (key === this.lastKey && now - this.lastPlain < 1000) return;
    this.lastKey = key;
    this.lastPlain = now;
    process.stdout.write(this.line(s, false) + '\n');
  }

  line(s: Snapshot, bar: boolean): string {
    const parts = [this.label, s.phase.padEnd(bar ? 10 : 0)];
    if (s.bytesTotal > 0) {
      const frac = Math.min(s.bytesDone / s.bytesTotal, 1);
      if (bar) {
        const fill = Math.round(frac * this.width);
        parts.push(`[${'#'.repeat(fill)}${'.'.repeat(this.width - fill)}]`);
      }
      parts.push(`${(frac * 100).toFixed(0)}%`, `${mib(s.bytesDone)}/${mib(s.bytesTotal)}`);
    }
    if (s.round) parts.push(s.roundBytesTotal ? `round ${s.round}: ${mib(s.roundBytesDone ?? 0)} of ${mib(s.roundBytesTotal)}` : `round ${s.round}`);
    if (s.rate) parts.push(`${mib(s.rate)}/s`);
    if (s.etaMs !== undefined && s.etaMs !== null) parts.push(`ETA ${secs(s.etaMs)}`);
    if (s.cancellable !== undefined) parts.push(s.cancellable ? 'cancellable' : 'not cancellable');
    if (s.note) parts.push(`(${s.note})`);
    return parts.join(' ');
  }

  finish(): void {
    if (this.tty && this.drawn) process.stderr.write('\r\x1b[K');
    this.drawn = false;
  }
}
