/** Operations in progress on this agent, so a `cancel` (or a cancelOperations list) can abort them. */
import type { AgentErrorCode, HostJobName } from '@ferry/contracts';

export class AgentFailure extends Error {
  override name = 'AgentFailure';
  constructor(
    readonly code: AgentErrorCode,
    message: string,
    readonly retryable: boolean,
  ) {
    super(message);
  }
}

export class CancelledError extends AgentFailure {
  constructor(reason: string) {
    super('CANCELLED', `cancelled: ${reason}`, false);
  }
}

export class Operation {
  readonly controller = new AbortController();
  /** Set once this side passed the point of no return: a cancel is refused from then on. */
  pastPointOfNoReturn = false;
  /** Unlinks this operation from its parent signal (set by Operations.begin, run by Operations.end). */
  detach: () => void = () => undefined;
  constructor(
    readonly operationId: string,
    readonly attempt: number,
    readonly job: HostJobName,
  ) {}
  get signal(): AbortSignal {
    return this.controller.signal;
  }
  get cancelled(): boolean {
    return this.signal.aborted;
  }
  /** Throws the cancellation if there was one. */
  check(): void {
    if (this.signal.aborted) throw this.signal.reason instanceof Error ? this.signal.reason : new CancelledError(String(this.signal.reason));
  }
}

export class Operations {
  private readonly ops = new Map<string, Operation>();

  begin(operationId: string, attempt: number, job: HostJobName, parent?: AbortSignal): Operation {
    const op = new Operation(operationId, attempt, job);
    const key = `${job}:${operationId}`;
    this.ops.get(key)?.controller.abort(new CancelledError('superseded by a newer attempt'));
    this.ops.set(key, op);
    if (parent) {
      // The parent (the worker's shutdown signal) lives as long as the agent: the link must go when the operation ends.
      const onAbort = (): void => op.controller.abort(new AgentFailure('INTERNAL', 'agent is shutting down', true));
      if (parent.aborted) onAbort();
      else {
        parent.addEventListener('abort', onAbort, { once: true });
        op.detach = () => parent.removeEventListener('abort', onAbort);
      }
    }
    return op;
  }

  end(op: Operation): void {
    op.detach();
    const key = `${op.job}:${op.operationId}`;
    if (this.ops.get(key) === op) this.ops.delete(key);
  }

  /** Cancels every job of that operation with attempt <= maxAttempt that has not passed its point of no return. */
  cancel(operationId: string, maxAttempt: number, reason: string): boolean {
    let any = false;
    for (const op of this.ops.values()) {
      if (op.operationId !== operationId || op.attempt > maxAttempt || op.job === 'cancel') continue;
      if (op.pastPointOfNoReturn) continue;
      if (!op.cancelled) op.controller.abort(new CancelledError(reason));
      any = true;
    }
    return any;
  }

  active(): string[] {
    return [...new Set([...this.ops.values()].filter((o) => o.job !== 'cancel' && o.job !== 'inventory').map((o) => o.operationId))];
  }

  abortAll(reason: string): void {
    for (const op of this.ops.values()) op.controller.abort(new AgentFailure('INTERNAL', reason, true));
  }
}
