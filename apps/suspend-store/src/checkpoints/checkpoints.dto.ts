import { z } from 'zod';
import { badRequest } from '../common/errors';
import { parseLabels, validateId } from './checkpoint.model';

/** Query parameters, validated with one clear message on the first problem. */
function parse<S extends z.ZodTypeAny>(schema: S, query: unknown): z.output<S> {
  const r = schema.safeParse(query);
  if (r.success) return r.data as z.output<S>;
  const issue = r.error.issues[0]!;
  throw badRequest(`query parameter '${issue.path.join('.') || '?'}': ${issue.message}`);
}

const one = <T extends z.ZodTypeAny>(s: T) => z.preprocess((v) => (Array.isArray(v) ? v.at(-1) : v), s);
const width = one(z.enum(['auto', '32', '64']).default('auto')).transform((w) => (w === 'auto' ? 'auto' : (Number(w) as 32 | 64)));

const UploadQuery = z.object({
  vm: one(z.string({ required_error: 'is required (the VM this image belongs to)' })),
  format: one(z.enum(['auto', 'v2', 'legacy']).default('auto')),
  width,
  guest: one(z.enum(['auto', 'pv', 'hvm']).default('auto')),
  sha256: one(
    z
      .string()
      .regex(/^[A-Fa-f0-9]{64}$/, 'must be 64 hex digits')
      .transform((s) => s.toLowerCase())
      .optional(),
  ),
  label: z.unknown().optional(),
});

export function parseUploadQuery(query: unknown) {
  const q = parse(UploadQuery, query);
  return { ...q, vm: validateId(q.vm, 'vm'), labels: parseLabels(q.label) };
}

const ReadQuery = z.object({
  format: one(z.enum(['v2', 'legacy']).default('v2')),
  width: one(z.enum(['32', '64']).optional()).transform((w) => (w === undefined ? undefined : (Number(w) as 32 | 64))),
});

export function parseReadQuery(query: unknown): { format: 'v2' | 'legacy'; width?: 32 | 64 } {
  const q = parse(ReadQuery, query);
  if (q.format === 'legacy' && q.width === undefined) throw badRequest("query parameter 'width': is required with format=legacy (32 or 64)");
  return q.width === undefined ? { format: q.format } : { format: q.format, width: q.width };
}

const ListQuery = z.object({
  vm: one(z.string().optional()),
  cursor: one(z.string().max(400).optional()),
  limit: one(z.string().regex(/^\d+$/, 'must be a number from 1 to 1000').default('50'))
    .transform(Number)
    .pipe(z.number().int().min(1, 'must be at least 1').max(1000, 'must be at most 1000')),
});

export function parseListQuery(query: unknown): { vm?: string; cursor?: string; limit: number } {
  const q = parse(ListQuery, query);
  return {
    limit: q.limit,
    ...(q.vm !== undefined ? { vm: validateId(q.vm, 'vm') } : {}),
    ...(q.cursor !== undefined ? { cursor: q.cursor } : {}),
  };
}
