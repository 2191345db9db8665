import { Injectable, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import express, { type Request, type RequestHandler, type Response } from 'express';
import type { Observable } from 'rxjs';
import { StoreError } from './errors';

/**
 * Reads a route's JSON body after the guards have run, so an unauthenticated client never gets its
 * body parsed (or even read). A declared Content-Length over `limitBytes` is refused here at once
 * (express.json would first wait for the whole declared body to arrive, to drop it); a chunked body
 * that passes the limit is refused by express.json as soon as it does. Its errors (413 too large,
 * 400 malformed) carry their status and the ErrorFilter answers them as such.
 */
@Injectable()
export class JsonBody implements NestInterceptor {
  private readonly parse: RequestHandler;

  constructor(private readonly limitBytes: number) {
    this.parse = express.json({ limit: limitBytes });
  }

  async intercept(ctx: ExecutionContext, next: CallHandler): Promise<Observable<unknown>> {
    const http = ctx.switchToHttp();
    const req = http.getRequest<Request>();
    const res = http.getResponse<Response>();
    const declared = req.headers['content-length'];
    if (declared !== undefined && !(/^\d{1,15}$/.test(declared) && Number(declared) <= this.limitBytes)) {
      throw new StoreError(413, 'too_large', `a JSON body may have at most ${this.limitBytes} bytes (Content-Length: ${declared.slice(0, 20)})`);
    }
    await new Promise<void>((resolve, reject) => {
      this.parse(req, res, (e?: unknown) => (e ? reject(e as Error) : resolve()));
    });
    return next.handle();
  }
}
