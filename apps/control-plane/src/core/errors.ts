import { HttpException } from '@nestjs/common';
import { PROBLEM_KINDS, problemKindForStatus, type FieldIssue, type ProblemKind } from '@ferry/contracts';

/**
 * An error the HTTP layer answers as a problem (RFC 9457, libs/contracts/src/problem.ts): its kind
 * gives `type`, `title` and `status`; the message is the one-line `detail`.
 */
export class ProblemError extends HttpException {
  constructor(
    readonly kind: ProblemKind,
    readonly detail: string,
    readonly issues?: FieldIssue[],
    status: number = PROBLEM_KINDS[kind].status,
  ) {
    super(detail, status);
  }
}

/** 400 naming each field and the rule it breaks. */
export class ValidationFailed extends ProblemError {
  constructor(issues: FieldIssue[]) {
    super(
      'validation-failed',
      issues.map((i) => `${i.field}: ${i.rule}`).join('; '),
      issues,
    );
  }
}

/** A refusal by status (the generic kind of that status) or by a more specific kind. */
export function fail(status: number, message: string, kind?: ProblemKind): ProblemError {
  return new ProblemError(kind ?? problemKindForStatus(status), message, undefined, status);
}
