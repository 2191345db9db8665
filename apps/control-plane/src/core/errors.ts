import { HttpException, HttpStatus } from '@nestjs/common';

/** 400 with field + rule, the shape every validation failure uses. */
export class ValidationFailed extends HttpException {
  constructor(issues: { field: string; rule: string }[]) {
    super(
      {
        statusCode: 400,
        error: 'Bad Request',
        message: issues.map((i) => `${i.field}: ${i.rule}`).join('; '),
        issues,
      },
      HttpStatus.BAD_REQUEST,
    );
  }
}

export function fail(status: number, message: string, error?: string): HttpException {
  const names: Record<number, string> = { 404: 'Not Found', 409: 'Conflict', 422: 'Unprocessable Entity', 403: 'Forbidden', 401: 'Unauthorized', 503: 'Service Unavailable' };
  return new HttpException({ statusCode: status, error: error ?? names[status] ?? 'Error', message }, status);
}
