import { Catch, HttpException, Logger, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import type { Request, Response } from 'express';
import { StoreError } from './errors';

/** An error an HTTP library made for the client (http-errors: `expose` is set only for 4xx). */
function isClientHttpError(e: unknown): e is Error & { status: number } {
  const x = e as { status?: unknown; expose?: unknown } | null;
  return e instanceof Error && typeof x?.status === 'number' && x.status >= 400 && x.status < 500 && x.expose === true;
}

/** Every error as `{ statusCode, error, message }` with a one-line message; never a crash. */
@Catch()
export class ErrorFilter implements ExceptionFilter {
  private readonly log = new Logger('HTTP');

  catch(e: unknown, host: ArgumentsHost): void {
    const res = host.switchToHttp().getResponse<Response>();
    const req = host.switchToHttp().getRequest<Request>();
    let status = 500;
    let code = 'internal';
    let message = 'internal error';
    if (e instanceof StoreError) {
      status = e.status;
      code = e.code;
      message = e.message;
    } else if (isClientHttpError(e)) {
      // body-parser's refusals (http-errors): 413 too large, 400 malformed JSON, 415 charset...
      status = e.status;
      code = status === 413 ? 'too_large' : status === 415 ? 'unsupported_media_type' : 'bad_request';
      message = e.message;
    } else if (e instanceof HttpException) {
      status = e.getStatus();
      const body = e.getResponse();
      code = e.name.replace(/Exception$/, '').replace(/([a-z])([A-Z])/g, '$1_$2').toLowerCase();
      const m = typeof body === 'object' && body !== null ? (body as { message?: unknown }).message : body;
      message = Array.isArray(m) ? m.join('; ') : String(m ?? e.message);
    }
    if (status >= 500) this.log.error(`${req.method} ${req.originalUrl}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    if (res.headersSent || status === 499) {
      res.destroy();
      return;
    }
    if (!req.complete) {
      req.resume();
      // Refused before the whole body arrived: Node reads and drops the rest after the answer
      // (so the client, still sending, can read it); a client that keeps sending past a minute is cut.
      setTimeout(() => {
        if (!req.complete) req.socket.destroy();
      }, 60_000).unref();
    }
    res.status(status).json({ statusCode: status, error: code, message: message.split('\n')[0] });
  }
}
