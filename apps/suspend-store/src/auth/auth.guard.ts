import { Injectable, SetMetadata, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request } from 'express';
import { StoreError } from '../common/errors';
import type { Scope } from '../config';
import { MetricsService } from '../metrics/metrics.service';
import { TokensService } from './tokens.service';

const SCOPE_KEY = 'ferry:scope';
/** The scope a route needs; routes without it are public (health, metrics, docs). */
export const RequireScope = (scope: Scope): MethodDecorator & ClassDecorator => SetMetadata(SCOPE_KEY, scope);

@Injectable()
export class AuthGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly tokens: TokensService,
    private readonly metrics: MetricsService,
  ) {}

  async canActivate(ctx: ExecutionContext): Promise<boolean> {
    const need = this.reflector.getAllAndOverride<Scope | undefined>(SCOPE_KEY, [ctx.getHandler(), ctx.getClass()]);
    if (!need) return true;
    const req = ctx.switchToHttp().getRequest<Request>();
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    const scopes = m ? await this.tokens.scopesOf(m[1]!) : null;
    if (!scopes) {
      this.metrics.refusals.inc({ reason: 'unauthorized' });
      throw new StoreError(401, 'unauthorized', m ? 'unknown or revoked bearer token' : 'missing bearer token (Authorization: Bearer TOKEN)');
    }
    if (!scopes.includes('admin') && !scopes.includes(need)) {
      this.metrics.refusals.inc({ reason: 'forbidden' });
      throw new StoreError(403, 'forbidden', `this token lacks the '${need}' scope`);
    }
    return true;
  }
}
