import { Catch, HttpException, Logger, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import type { Request, Response } from 'express';
import { PROBLEM_CONTENT_TYPE, problem, problemKindForStatus, wwwAuthenticate, type Problem, type ProblemKind } from '@ferry/contracts';
import { StoreError } from './errors';

/** An error an HTTP library made for the client (http-errors: `expose` is set only for 4xx). */
function isClientHttpError(e: unknown): e is Error & { status: number } {
  const x = e as { status?: unknown; expose?: unknown } | null;
  return e instanceof Error && typeof x?.status === 'number' && x.status >= 400 && x.status < 500 && x.expose === true;
}

/** Every error as `application/problem+json` (libs/contracts/src/problem.ts) with a one-line detail; never a crash. */
@Catch()
export class ErrorFilter implements ExceptionFilter {
  private readonly log = new Logger('HTTP');

  catch(e: unknown, host: ArgumentsHost): void {
    const res = host.switchToHttp().getResponse<Response>();
    const req = host.switchToHttp().getRequest<Request>();
    let body: Problem;
    if (e instanceof StoreError) {
      const kind: ProblemKind = e.code === 'integrity' ? 'integrity' : problemKindForStatus(e.status);
      body = problem(kind, e.message, req.path, undefined, e.status, e.code);
    } else if (isClientHttpError(e)) {
      // body-parser's refusals (http-errors): 413 too large, 400 malformed JSON, 415 charset...
      body = problem(problemKindForStatus(e.status), e.message, req.path, undefined, e.status);
    } else if (e instanceof HttpException) {
      const r = e.getResponse();
      const m = typeof r === 'object' && r !== null ? (r as { message?: unknown }).message : r;
      body = problem(problemKindForStatus(e.getStatus()), Array.isArray(m) ? m.join('; ') : String(m ?? e.message), req.path, undefined, e.getStatus());
    } else {
      body = problem('internal', 'internal error', req.path);
    }
    if (body.status >= 500) this.log.error(`${req.method} ${req.originalUrl}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    if (res.headersSent || body.status === 499) {
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
    if (body.status === 401) res.setHeader('WWW-Authenticate', wwwAuthenticate('ferry-store', typeof req.headers.authorization === 'string'));
    res.status(body.status).type(PROBLEM_CONTENT_TYPE).send(JSON.stringify(body));
  }
}
