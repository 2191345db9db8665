import type { PipeTransform } from '@nestjs/common';
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
