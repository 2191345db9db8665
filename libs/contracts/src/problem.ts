/**
 * The one error contract of every Ferry HTTP service: RFC 9457 problem details, served as
 * `application/problem+json`. Each error kind has a stable `type` URI (below); clients branch on
 * `type` (or `status`), never on the wording of `title`/`detail`.
 */
import { z } from 'zod';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/** Base of every `type` URI. The URIs are identifiers; they need not resolve. */
export const PROBLEM_TYPE_BASE = 'https://ferry.dev/problems/';

/** Every error kind, its HTTP status and its fixed title. */
export const PROBLEM_KINDS = {
  'validation-failed': { status: 400, title: 'The request is not valid' },
  'bad-request': { status: 400, title: 'Bad request' },
  unauthorized: { status: 401, title: 'Authentication required' },
  forbidden: { status: 403, title: 'Not allowed' },
  'not-found': { status: 404, title: 'Not found' },
  'method-not-allowed': { status: 405, title: 'Method not allowed' },
  conflict: { status: 409, title: 'Conflict with the current state' },
  'idempotency-key-in-progress': { status: 409, title: 'A request with this Idempotency-Key is still being processed' },
  'precondition-failed': { status: 412, title: 'Precondition failed' },
  'payload-too-large': { status: 413, title: 'Request body too large' },
  'unsupported-media-type': { status: 415, title: 'Unsupported media type' },
  'range-not-satisfiable': { status: 416, title: 'Range not satisfiable' },
  unprocessable: { status: 422, title: 'The request cannot be carried out' },
  'idempotency-key-reused': { status: 422, title: 'Idempotency-Key reused with a different request' },
  'too-many-requests': { status: 429, title: 'Too many requests' },
  'client-closed-request': { status: 499, title: 'Client closed the request' },
  internal: { status: 500, title: 'Internal error' },
  integrity: { status: 500, title: 'Stored data failed its integrity check' },
  'bad-gateway': { status: 502, title: 'An upstream service failed' },
  unavailable: { status: 503, title: 'Service unavailable' },
  'gateway-timeout': { status: 504, title: 'An upstream service timed out' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ProblemKind = keyof typeof PROBLEM_KINDS;
export const PROBLEM_KIND_NAMES = Object.keys(PROBLEM_KINDS) as ProblemKind[];

export function problemType(kind: ProblemKind): string {
  return PROBLEM_TYPE_BASE + kind;
}

/** The kind a bare status maps to when nothing more specific is known. */
export function problemKindForStatus(status: number): ProblemKind {
  for (const k of PROBLEM_KIND_NAMES) {
    // the first kind listed for a status is its generic one
    if (PROBLEM_KINDS[k].status === status && k !== 'validation-failed') return k;
  }
  return status >= 500 ? 'internal' : 'bad-request';
}

/** One invalid field: where (dotted path; a header or query parameter by its name) and which rule. */
export const fieldIssueSchema = z.object({
  field: z.string().describe('dotted path of the field, or the query parameter / header name'),
  rule: z.string().describe('the rule it breaks, e.g. "is required" or "must be one of live|cold"'),
});
export type FieldIssue = z.infer<typeof fieldIssueSchema>;

export const problemSchema = z.object({
  type: z.string().url().describe(`stable URI of the error kind, ${PROBLEM_TYPE_BASE}<kind>`),
  title: z.string().describe('short summary of the kind; the same for every occurrence'),
  status: z.number().int().min(400).max(599),
  detail: z.string().describe('one line about this occurrence'),
  instance: z.string().describe('the request path this answer is about'),
  issues: z.array(fieldIssueSchema).optional().describe('validation failures: one entry per field'),
  reason: z.string().optional().describe("the service's finer reason within the kind, e.g. the store's 'checksum' or 'exists'"),
});

/** Body of every 4xx/5xx answer of the control plane and the suspend-store. */
export type Problem = z.infer<typeof problemSchema>;

/** Builds a problem body; `detail` is cut to its first line. */
export function problem(kind: ProblemKind, detail: string, instance: string, issues?: FieldIssue[], status?: number, reason?: string): Problem {
  const k = PROBLEM_KINDS[kind];
  return {
    type: problemType(kind),
    title: k.title,
    status: status ?? k.status,
    detail: detail.split('\n')[0] ?? '',
    instance,
    ...(issues && issues.length ? { issues } : {}),
    ...(reason ? { reason } : {}),
  };
}

/**
 * The value of `WWW-Authenticate` on every 401 (RFC 6750 section 3): a request without a token
 * gets only the scheme and realm; a bad token is named `invalid_token`.
 */
export function wwwAuthenticate(realm: string, tokenGiven: boolean): string {
  return tokenGiven ? `Bearer realm="${realm}", error="invalid_token"` : `Bearer realm="${realm}"`;
}
