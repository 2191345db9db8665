import type { OpenAPIObject } from '@nestjs/swagger';
import { zodToJsonSchema } from 'zod-to-json-schema';
import { PROBLEM_CONTENT_TYPE, problem, problemSchema } from '@ferry/contracts';

type Json = Record<string, unknown>;

/**
 * Completes the store's OpenAPI document with its one error shape: the Problem component (from the
 * zod schema of libs/contracts), 401/403 on every operation that needs a token, 400 where it takes
 * a parameter, 404 where it names a resource, and the problem body on every error answer.
 */
export function completeStoreDocument(doc: OpenAPIObject): OpenAPIObject {
  const convert = zodToJsonSchema as (schema: unknown, opts: Json) => Json;
  const schema = convert(problemSchema, { target: 'openApi3', $refStrategy: 'none' });
  delete schema.$schema;
  doc.components ??= {};
  doc.components.schemas = { ...doc.components.schemas, Problem: { ...schema, example: problem('not-found', 'checkpoint c9 not found', '/v1/checkpoints/c9') } as never };
  const body = (description: string): Json => ({ description, content: { [PROBLEM_CONTENT_TYPE]: { schema: { $ref: '#/components/schemas/Problem' } } } });
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const method of ['get', 'head', 'post', 'put', 'delete'] as const) {
      const op = item[method] as (Json & { security?: unknown[]; parameters?: { in: string }[]; responses: Record<string, Json> }) | undefined;
      if (!op) continue;
      if (path.startsWith('/v1/')) {
        op.responses['401'] ??= { ...body('no or unknown bearer token'), headers: { 'WWW-Authenticate': { schema: { type: 'string' } } } };
        op.responses['403'] ??= body('the token lacks the scope');
      }
      if (op.parameters?.length || op.requestBody) op.responses['400'] ??= body('a bad id, parameter or body');
      if (op.parameters?.some((p) => p.in === 'path')) op.responses['404'] ??= body('no such resource');
      for (const [code, r] of Object.entries(op.responses)) {
        if (Number(code) >= 400 && !r.content && method !== 'head') op.responses[code] = { ...body(String(r.description ?? '')), ...(r.headers ? { headers: r.headers } : {}) };
      }
    }
  }
  return doc;
}
