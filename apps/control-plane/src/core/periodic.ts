import type { Logger } from '@nestjs/common';

/**
 * Runs `tick` again `intervalMs` after each run ends: runs never overlap, a failed run is
 * logged and the next one still comes, and `stop()` waits for a run in flight.
 */
export class PeriodicTask {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;

  constructor(
    private readonly intervalMs: number,
    private readonly tick: () => Promise<void>,
    private readonly log: Logger,
  ) {}

  start(delayMs = 0): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.tick()
        .catch((e: unknown) => this.log.error(`tick failed: ${e instanceof Error ? e.stack : String(e)}`))
        .finally(() => {
          this.running = null;
          this.start(this.intervalMs);
        });
    }, delayMs);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }
}
