/**
 * The OpenAPI document of the control plane: routes and their parameters come from Nest's own
 * metadata (@nestjs/swagger), every schema from the zod schemas the code validates with
 * (zod-to-json-schema), and every error answer is the problem shape of libs/contracts.
 */
import { ApiQuery, type OpenAPIObject } from '@nestjs/swagger';
import { RequestMethod, applyDecorators, type Type } from '@nestjs/common';
import { METHOD_METADATA, PATH_METADATA } from '@nestjs/common/constants';
import { zodToJsonSchema } from 'zod-to-json-schema';
import {
  PROBLEM_CONTENT_TYPE,
  campaignDtoSchema,
  campaignPlanDtoSchema,
  hostDtoSchema,
  migrationDtoSchema,
  operationDtoSchema,
  problem,
  problemSchema,
  vmDtoSchema,
  type ProblemKind,
} from '@ferry/contracts';
import type { z } from './validation';

type Json = Record<string, unknown>;

/** JSON schema (OpenAPI 3 dialect) of a zod schema; a transform is described by its input. */
export function jsonSchema(s: z.ZodTypeAny): Json {
  // (the library's generic signature recurses too deep for tsc on our schemas: call it untyped)
  const convert = zodToJsonSchema as (schema: unknown, opts: Json) => Json;
  const out = convert(s, { target: 'openApi3', $refStrategy: 'none', effectStrategy: 'input' });
  delete out.$schema;
  return out;
}

/** The object a query schema validates (through `paged()`'s transform). */
function queryShape(s: z.ZodTypeAny): Record<string, z.ZodTypeAny> {
  let cur = s as z.ZodTypeAny & { _def: { schema?: z.ZodTypeAny; shape?: () => Record<string, z.ZodTypeAny> } };
  while (cur._def.schema) cur = cur._def.schema as typeof cur;
  return cur._def.shape ? cur._def.shape() : {};
}

/** Documents every query parameter of a (strict) query schema. */
export function QueryDoc(s: z.ZodTypeAny): MethodDecorator {
  return applyDecorators(
    ...Object.entries(queryShape(s)).map(([name, field]) =>
      ApiQuery({ name, required: !field.isOptional(), schema: jsonSchema(field), ...(field.description ? { description: field.description } : {}) }),
    ),
  );
}

/** A list answer: the page envelope of libs/contracts/src/page.ts. */
export const PAGE_SCHEMA: Json = {
  type: 'object',
  required: ['items', 'nextCursor', 'limit', 'total'],
  properties: {
    items: { type: 'array', items: { type: 'object' } },
    nextCursor: { type: 'string', nullable: true, description: 'pass as cursor for the next page; null on the last page' },
    limit: { type: 'integer' },
    total: { type: 'integer' },
  },
  example: { items: [], nextCursor: 'c32', limit: 50, total: 120 },
};

const EXAMPLES: Partial<Record<ProblemKind, Json>> = {
  'validation-failed': problem('validation-failed', 'mode: must be one of live|cold', '/v1/migrations', [{ field: 'mode', rule: "Invalid enum value. Expected 'live' | 'cold', received 'warp'" }]),
  unauthorized: problem('unauthorized', 'missing bearer token', '/v1/hosts'),
  forbidden: problem('forbidden', "role 'viewer' may not do this (needs 'operator')", '/v1/migrations'),
  'not-found': problem('not-found', "vm 'vm9' not found", '/v1/vms/vm9'),
  conflict: problem('conflict', "vm 'vm1' already has an active operation (mig-1)", '/v1/migrations'),
  unprocessable: problem('unprocessable', 'Idempotency-Key was already used with a different request', '/v1/migrations'),
};

const ERROR_TEXT: Record<number, [ProblemKind, string]> = {
  400: ['validation-failed', 'invalid path, query, header or body: issues names each field and its rule'],
  401: ['unauthorized', 'no or unknown bearer token (WWW-Authenticate: Bearer)'],
  403: ['forbidden', "the token's role or kind may not do this"],
  404: ['not-found', 'no such resource'],
  409: ['conflict', 'conflicts with the current state (or the same Idempotency-Key is still running)'],
  422: ['unprocessable', 'cannot be carried out as asked (or Idempotency-Key reused with another request)'],
};

function problemResponse(status: number): Json {
  const [kind, description] = ERROR_TEXT[status]!;
  return {
    description,
    ...(status === 401 ? { headers: { 'WWW-Authenticate': { schema: { type: 'string' }, description: 'Bearer realm="ferry"' } } } : {}),
    content: { [PROBLEM_CONTENT_TYPE]: { schema: { $ref: '#/components/schemas/Problem' }, example: EXAMPLES[kind] } },
  };
}

/** Answer bodies described by the zod schemas of libs/contracts/src/responses.ts. */
const COMPONENTS = {
  Host: hostDtoSchema,
  Vm: vmDtoSchema,
  Operation: operationDtoSchema,
  Migration: migrationDtoSchema,
  Campaign: campaignDtoSchema,
  CampaignPlan: campaignPlanDtoSchema,
};
type Component = keyof typeof COMPONENTS;

/** The success answer of each operation that has one of those bodies: `method path` -> [status, component, page?]. */
export const ANSWERS: Record<string, [number, Component, 'page'?]> = {
  'get /v1/hosts': [200, 'Host', 'page'],
  'get /v1/hosts/{id}': [200, 'Host'],
  'delete /v1/hosts/{id}/drain': [200, 'Host'],
  'post /v1/hosts/{id}/maintenance': [200, 'Host'],
  'get /v1/vms': [200, 'Vm', 'page'],
  'get /v1/vms/{id}': [200, 'Vm'],
  'post /v1/vms/{id}/suspend': [202, 'Operation'],
  'post /v1/vms/{id}/resume': [202, 'Operation'],
  'get /v1/operations': [200, 'Operation', 'page'],
  'get /v1/operations/{id}': [200, 'Operation'],
  'post /v1/migrations': [202, 'Migration'],
  'get /v1/migrations': [200, 'Migration', 'page'],
  'get /v1/migrations/{id}': [200, 'Migration'],
  'post /v1/migrations/{id}/cancel': [200, 'Migration'],
  'post /v1/campaigns/plan': [200, 'CampaignPlan'],
  'post /v1/campaigns': [201, 'Campaign'],
  'get /v1/campaigns': [200, 'Campaign', 'page'],
  'get /v1/campaigns/{id}': [200, 'Campaign'],
  'post /v1/campaigns/{id}/pause': [200, 'Campaign'],
  'post /v1/campaigns/{id}/resume': [200, 'Campaign'],
  'post /v1/campaigns/{id}/abort': [200, 'Campaign'],
};

/**
 * Completes what @nestjs/swagger assembled: the Problem component, the errors each operation can
 * answer (400 when it takes input, 401/403 unless public, 404 with a path parameter, 409/422 on
 * POST/DELETE), `Location` on 201/202 and the page envelope on collections.
 */
export function completeDocument(doc: OpenAPIObject, publicPaths: ReadonlySet<string>): OpenAPIObject {
  doc.components ??= {};
  doc.components.schemas = { ...doc.components.schemas, Problem: { ...jsonSchema(problemSchema), example: EXAMPLES['validation-failed'] } as never };
  for (const [name, schema] of Object.entries(COMPONENTS)) doc.components.schemas[name] = jsonSchema(schema) as never;
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const method of ['get', 'post', 'put', 'delete', 'patch'] as const) {
      const op = item[method] as (Json & { parameters?: { in: string }[]; requestBody?: unknown; responses: Record<string, Json> }) | undefined;
      if (!op) continue;
      const params = op.parameters ?? [];
      const statuses: number[] = [];
      if (params.length || op.requestBody) statuses.push(400);
      if (!publicPaths.has(path)) statuses.push(401, 403);
      if (params.some((p) => p.in === 'path')) statuses.push(404);
      if (method === 'post' || method === 'delete') statuses.push(409, 422);
      for (const s of statuses) op.responses[String(s)] ??= problemResponse(s);
      // an error a route documents itself keeps its description and gets the problem body
      for (const [code, r] of Object.entries(op.responses)) {
        if (Number(code) >= 400 && !r.content) op.responses[code] = { ...problemResponse(ERROR_TEXT[Number(code)] ? Number(code) : 400), description: r.description };
      }
      for (const [code, r] of Object.entries(op.responses)) {
        if (code === '201' || code === '202') r.headers = { ...(r.headers as Json | undefined), Location: { schema: { type: 'string' }, description: 'where what was created or started can be read' } };
      }
      const answer = ANSWERS[`${method} ${path}`];
      if (answer) {
        const [status, name, page] = answer;
        const ref = { $ref: `#/components/schemas/${name}` };
        const schema = page ? { ...PAGE_SCHEMA, properties: { ...(PAGE_SCHEMA.properties as Json), items: { type: 'array', items: ref } } } : ref;
        op.responses[String(status)] = { ...op.responses[String(status)], description: (op.responses[String(status)]?.description as string | undefined) || name, content: { 'application/json': { schema } } };
      }
      const ok = op.responses['200'];
      if (method === 'get' && ok && params.some((p) => (p as { name?: string }).name === 'cursor') && !ok.content) {
        ok.content = { 'application/json': { schema: PAGE_SCHEMA } };
      }
    }
  }
  return doc;
}

export interface Route {
  method: string;
  /** OpenAPI form: `/v1/vms/{id}`. */
  path: string;
  handler: (...a: unknown[]) => unknown;
}

/** Every route the controllers declare, from Nest's route metadata. */
export function routesOf(controllers: Type[]): Route[] {
  const out: Route[] = [];
  for (const c of controllers) {
    const base = String(Reflect.getMetadata(PATH_METADATA, c) ?? '');
    for (const name of Object.getOwnPropertyNames(c.prototype)) {
      const handler = (c.prototype as Record<string, unknown>)[name];
      if (name === 'constructor' || typeof handler !== 'function') continue;
      const sub = Reflect.getMetadata(PATH_METADATA, handler) as string | undefined;
      const m = Reflect.getMetadata(METHOD_METADATA, handler) as RequestMethod | undefined;
      if (sub === undefined || m === undefined) continue;
      const path = ('/' + [base, sub].filter((x) => x && x !== '/').join('/')).replace(/\/+/g, '/').replace(/:([A-Za-z]+)/g, '{$1}');
      out.push({ method: RequestMethod[m].toLowerCase(), path: path === '' ? '/' : path, handler: handler as Route['handler'] });
    }
  }
  return out;
}
