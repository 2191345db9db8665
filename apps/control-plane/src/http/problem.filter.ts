import { Catch, HttpException, Logger, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import type { Request, Response } from 'express';
import { PROBLEM_CONTENT_TYPE, problem, problemKindForStatus, wwwAuthenticate, type Problem } from '@ferry/contracts';
import { ProblemError } from '../core/errors';

/** An error an HTTP library made for the client (http-errors: `expose` is set only for 4xx). */
function isClientHttpError(e: unknown): e is Error & { status: number } {
  const x = e as { status?: unknown; expose?: unknown } | null;
  return e instanceof Error && typeof x?.status === 'number' && x.status >= 400 && x.status < 500 && x.expose === true;
}

/** The one-line detail of one of Nest's own exceptions (404 of an unknown route, 413...). */
function nestDetail(e: HttpException): string {
  const r = e.getResponse();
  const m = typeof r === 'object' && r !== null ? (r as { message?: unknown }).message : r;
  return Array.isArray(m) ? m.join('; ') : String(m ?? e.message);
}

/** Every error of the control plane as `application/problem+json` (libs/contracts/src/problem.ts). */
@Catch()
export class ProblemFilter implements ExceptionFilter {
  private readonly log = new Logger('HTTP');

  catch(e: unknown, host: ArgumentsHost): void {
    const res = host.switchToHttp().getResponse<Response>();
    const req = host.switchToHttp().getRequest<Request>();
    const instance = req.path;
    let body: Problem;
    if (e instanceof ProblemError) body = problem(e.kind, e.detail, instance, e.issues, e.getStatus());
    else if (e instanceof HttpException) body = problem(problemKindForStatus(e.getStatus()), nestDetail(e), instance, undefined, e.getStatus());
    else if (isClientHttpError(e)) body = problem(problemKindForStatus(e.status), e.message, instance, undefined, e.status);
    else body = problem('internal', 'internal error', instance);
    // a refusal we made ourselves (502 from the store...) is one line; anything else keeps its stack
    if (body.status >= 500) this.log.error(`${req.method} ${req.path}: ${e instanceof ProblemError ? e.detail : e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (body.status === 401) res.setHeader('WWW-Authenticate', wwwAuthenticate('ferry', typeof req.headers.authorization === 'string'));
    res.status(body.status).type(PROBLEM_CONTENT_TYPE).send(JSON.stringify(body));
  }
}
