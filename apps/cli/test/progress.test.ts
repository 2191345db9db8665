import { describe, expect, it } from 'vitest';
import { EMPTY_PROGRESS, type MigrationDto } from '@ferry/contracts';
import { LiveBar, fromMigration } from '../src/commands/operator/progress';

const MiB = 1048576;

describe('progress line', () => {
  it('shows the round: what it sent of what it has to send, and the growing total', () => {
    const m = { phase: 'precopy', cancellable: true, waitingReason: null, progress: { ...EMPTY_PROGRESS, bytesDone: 530 * MiB, bytesTotal: 560 * MiB, round: 2, roundBytesDone: 18 * MiB, roundBytesTotal: 48 * MiB } } as unknown as MigrationDto;
    const line = new LiveBar('migration m-1', false).line(fromMigration(m), false);
    expect(line).toContain('95% 530 MiB/560 MiB');
    expect(line).toContain('round 2: 18 MiB of 48 MiB');
  });

  it('a finished migration is at 100 %', () => {
    const m = { phase: 'completed', cancellable: false, waitingReason: null, progress: { ...EMPTY_PROGRESS, bytesDone: 523 * MiB, bytesTotal: 523 * MiB, round: 4, roundBytesDone: 3 * MiB, roundBytesTotal: 3 * MiB } } as unknown as MigrationDto;
    expect(new LiveBar('migration m-1', false).line(fromMigration(m), false)).toContain('100% 523 MiB/523 MiB');
  });
});
