import { createParamDecorator, type ExecutionContext, type PipeTransform } from '@nestjs/common';
import type { AuthedRequest } from './auth';
import { z } from '@ferry/config';
import { ValidationFailed } from '../core/errors';

export { z };

/** Where a validated value came from: an unknown key of the query string is named as a parameter. */
type Source = 'body' | 'query';

function issues(err: z.ZodError, root: string | undefined, source: Source): { field: string; rule: string }[] {
  return err.issues.flatMap((i) => {
    const path = [root, ...i.path.map(String)].filter(Boolean).join('.');
    if (i.code === 'unrecognized_keys' && source === 'query') {
      return i.keys.map((k) => ({ field: [path, k].filter(Boolean).join('.'), rule: 'unknown query parameter' }));
    }
    let rule = i.message;
    if (i.code === 'invalid_type' && i.received === 'undefined') rule = 'is required';
    else if (i.code === 'unrecognized_keys') rule = `unknown field(s): ${i.keys.join(', ')}`;
    return [{ field: path || root || `(${source})`, rule }];
  });
}

/** Validates with a zod schema; 400 naming each field and its rule. */
export class ZodPipe<S extends z.ZodTypeAny> implements PipeTransform<unknown, z.output<S>> {
  constructor(
    readonly schema: S,
    private readonly root?: string,
    private readonly source: Source = 'body',
  ) {}
  transform(value: unknown): z.output<S> {
    const r = this.schema.safeParse(value ?? (this.root ? undefined : {}));
    if (!r.success) throw new ValidationFailed(issues(r.error, this.root, this.source));
    return r.data as z.output<S>;
  }
}

/** ZodPipe for `@Query()`: its issues name query parameters. */
export class QueryPipe<S extends z.ZodTypeAny> extends ZodPipe<S> {
  constructor(schema: S) {
    super(schema, undefined, 'query');
  }
}

export function parse<S extends z.ZodTypeAny>(schema: S, value: unknown, root?: string): z.output<S> {
  return new ZodPipe(schema, root).transform(value);
}

/** A validated request header: `@Header('idempotency-key', schema)`. */
export const ValidHeader = createParamDecorator((data: { name: string; schema: z.ZodTypeAny }, ctx: ExecutionContext) => {
  const req = ctx.switchToHttp().getRequest<AuthedRequest>();
  return parse(data.schema, req.headers[data.name], data.name);
});

/** Minimal zod -> JSON schema (the subset our DTO schemas use), for OpenAPI. */
export function jsonSchema(s: z.ZodTypeAny): Record<string, unknown> {
  const d = s._def as { typeName: string; [k: string]: unknown };
  switch (d.typeName) {
    case 'ZodObject': {
      const shape = (s as z.ZodObject<z.ZodRawShape>).shape;
      const properties: Record<string, unknown> = {};
      const required: string[] = [];
      for (const [k, v] of Object.entries(shape)) {
        properties[k] = jsonSchema(v as z.ZodTypeAny);
        if (!(v as z.ZodTypeAny).isOptional()) required.push(k);
      }
      return { type: 'object', properties, ...(required.length ? { required } : {}) };
    }
    case 'ZodString': {
      const out: Record<string, unknown> = { type: 'string' };
      for (const c of (d.checks as { kind: string; value?: unknown; regex?: RegExp }[]) ?? []) {
        if (c.kind === 'regex' && c.regex) out.pattern = c.regex.source;
        if (c.kind === 'min') out.minLength = c.value;
        if (c.kind === 'max') out.maxLength = c.value;
        if (c.kind === 'url') out.format = 'uri';
      }
      return out;
    }
    case 'ZodNumber': {
      const out: Record<string, unknown> = { type: ((d.checks as { kind: string }[]) ?? []).some((c) => c.kind === 'int') ? 'integer' : 'number' };
      for (const c of (d.checks as { kind: string; value?: number; inclusive?: boolean }[]) ?? []) {
        if (c.kind === 'min') out[c.inclusive ? 'minimum' : 'exclusiveMinimum'] = c.value;
        if (c.kind === 'max') out[c.inclusive ? 'maximum' : 'exclusiveMaximum'] = c.value;
      }
      return out;
    }
    case 'ZodBoolean':
      return { type: 'boolean' };
    case 'ZodEnum':
      return { type: 'string', enum: d.values as string[] };
    case 'ZodLiteral':
      return { enum: [d.value] };
    case 'ZodOptional':
    case 'ZodNullable':
      return jsonSchema(d.innerType as z.ZodTypeAny);
    case 'ZodDefault':
      return { ...jsonSchema(d.innerType as z.ZodTypeAny), default: (d.defaultValue as () => unknown)() };
    case 'ZodEffects':
      return jsonSchema(d.schema as z.ZodTypeAny);
    case 'ZodArray':
      return { type: 'array', items: jsonSchema(d.type as z.ZodTypeAny) };
    case 'ZodUnion':
    case 'ZodDiscriminatedUnion':
      return { oneOf: [...((d.options as z.ZodTypeAny[] | Map<unknown, z.ZodTypeAny>).values())].map(jsonSchema) };
    case 'ZodRecord':
      return { type: 'object', additionalProperties: true };
    default:
      return {};
  }
}
