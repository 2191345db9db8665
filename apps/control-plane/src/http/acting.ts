import { createHash } from 'node:crypto';
import { Inject, Injectable, SetMetadata, UseInterceptors, applyDecorators, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { ApiHeader } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import type Redis from 'ioredis';
import { lastValueFrom, map, of, type Observable } from 'rxjs';
import { REDIS } from '../config';
import { fail } from '../core/errors';
import { RedisKeys } from '../core/repos';
import { idemKey } from './schemas';
import { parse } from './validation';

const ACTING = 'ferry:acting';

export interface ActingOptions<R> {
  /** The URI of what the request created or started (sent as `Location`). */
  location?: (result: R) => string;
  /**
   * 'http' (default): a repeated Idempotency-Key replays the first answer (same body) and a different
   * body under that key is 422. 'service': the service keys the request itself (migrations).
   */
  idempotency?: 'http' | 'service';
}

/** How long an Idempotency-Key is remembered. */
const IDEM_TTL_S = 24 * 3600;

interface Stored {
  /** sha256 of method, path and body. */
  f: string;
  /** false while the first request is still running. */
  done: boolean;
  body?: unknown;
  location?: string;
}

/**
 * A POST that creates or acts: `Idempotency-Key` accepted (never required), `Location` on what it
 * made. Documented in the OpenAPI document as an optional header.
 */
export function Acting<R>(opts: ActingOptions<R> = {}): MethodDecorator {
  return applyDecorators(
    SetMetadata(ACTING, opts),
    UseInterceptors(ActingInterceptor),
    ApiHeader({ name: 'Idempotency-Key', required: false, description: 'retry safely: the same key and body replay the first answer; the same key with another body is 422 (kept 24 h)' }),
  );
}

@Injectable()
export class ActingInterceptor implements NestInterceptor {
  constructor(
    private readonly reflector: Reflector,
    @Inject(REDIS) private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {}

  async intercept(ctx: ExecutionContext, next: CallHandler): Promise<Observable<unknown>> {
    const opts = this.reflector.get<ActingOptions<unknown> | undefined>(ACTING, ctx.getHandler()) ?? {};
    const req = ctx.switchToHttp().getRequest<Request>();
    const res = ctx.switchToHttp().getResponse<Response>();
    const header = req.headers['idempotency-key'];
    const locate = (result: unknown): unknown => {
      if (opts.location && result !== null && result !== undefined) res.location(opts.location(result));
      return result;
    };
    if (header === undefined || opts.idempotency === 'service') {
      if (header !== undefined) parse(idemKey, header, 'Idempotency-Key');
      return next.handle().pipe(map(locate));
    }
    const key = parse(idemKey, header, 'Idempotency-Key');
    const f = createHash('sha256').update(JSON.stringify([req.method, req.path, req.body ?? null])).digest('hex');
    const rk = this.keys.idemHttp(key);
    const claimed = await this.redis.set(rk, JSON.stringify({ f, done: false } satisfies Stored), 'EX', IDEM_TTL_S, 'NX');
    if (claimed !== 'OK') {
      const raw = await this.redis.get(rk);
      const prev = raw ? (JSON.parse(raw) as Stored) : null;
      if (prev && prev.f !== f) throw fail(422, 'Idempotency-Key was already used with a different request (method, path or body)', 'idempotency-key-reused');
      if (!prev || !prev.done) throw fail(409, 'a request with this Idempotency-Key is still being processed', 'idempotency-key-in-progress');
      if (prev.location) res.location(prev.location);
      res.setHeader('Idempotent-Replayed', 'true');
      return of(prev.body);
    }
    try {
      const result = locate(await lastValueFrom(next.handle(), { defaultValue: undefined }));
      const stored: Stored = { f, done: true, body: result, location: res.getHeader('location') as string | undefined };
      await this.redis.set(rk, JSON.stringify(stored), 'EX', IDEM_TTL_S, 'XX');
      return of(result);
    } catch (e) {
      // a refused request may be retried with the same key once the cause is fixed
      await this.redis.del(rk);
      throw e;
    }
  }
}
