import { CanActivate, ExecutionContext, Inject, Injectable, SetMetadata } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { verifyAgentToken } from '@ferry/config';
import type { Role } from '@ferry/contracts';
import { CP_CONFIG, type CpConfig } from '../config';
import { fail } from '../core/errors';

const AUTH = 'ferry:auth';
type AuthSpec = { kind: 'public' } | { kind: 'role'; role: Role } | { kind: 'agent' };

/** No token needed (health, metrics, docs). */
export const Public = () => SetMetadata(AUTH, { kind: 'public' } satisfies AuthSpec);
/** Minimum role: viewer < operator < admin. */
export const Roles = (role: Role) => SetMetadata(AUTH, { kind: 'role', role } satisfies AuthSpec);
/** Agent token bound to one hostId (checked against :hostId or body.hostId). */
export const AgentOnly = () => SetMetadata(AUTH, { kind: 'agent' } satisfies AuthSpec);

/** Whether a route handler needs no token. */
export function isPublic(handler: object): boolean {
  return (Reflect.getMetadata(AUTH, handler) as AuthSpec | undefined)?.kind === 'public';
}

const RANK: Record<Role, number> = { viewer: 1, operator: 2, admin: 3 };

/** The bits of the (express) request we use. */
export interface AuthedRequest {
  headers: Record<string, string | string[] | undefined>;
  params: Record<string, string>;
  body: unknown;
  ferryRole?: Role;
  agentHostId?: string;
}

@Injectable()
export class AuthGuard implements CanActivate {
  private readonly tokens = new Map<string, Role>();
  constructor(
    private readonly reflector: Reflector,
    @Inject(CP_CONFIG) private readonly cfg: CpConfig,
  ) {
    for (const t of cfg.FERRY_API_TOKENS) this.tokens.set(t.token, t.role);
    this.tokens.set(cfg.FERRY_ADMIN_TOKEN, 'admin');
  }

  canActivate(ctx: ExecutionContext): boolean {
    const spec = this.reflector.getAllAndOverride<AuthSpec | undefined>(AUTH, [ctx.getHandler(), ctx.getClass()]) ?? { kind: 'role', role: 'admin' };
    if (spec.kind === 'public') return true;
    const req = ctx.switchToHttp().getRequest<AuthedRequest>();
    const h = typeof req.headers.authorization === 'string' ? req.headers.authorization : undefined;
    const token = h?.startsWith('Bearer ') ? h.slice(7).trim() : undefined;
    if (!token) throw fail(401, 'missing bearer token');
    if (spec.kind === 'agent') {
      const hostId = verifyAgentToken(this.cfg.agentSecret, token);
      if (!hostId) throw fail(this.tokens.has(token) ? 403 : 401, this.tokens.has(token) ? 'agent endpoints need an agent token' : 'invalid token');
      const want = req.params.hostId ?? (req.body as { hostId?: unknown } | undefined)?.hostId;
      if (typeof want === 'string' && want !== hostId) throw fail(403, `token is for host '${hostId}', not '${want}'`);
      req.agentHostId = hostId;
      return true;
    }
    const role = this.tokens.get(token);
    if (!role) throw fail(verifyAgentToken(this.cfg.agentSecret, token) ? 403 : 401, verifyAgentToken(this.cfg.agentSecret, token) ? 'agent tokens cannot use the operator API' : 'invalid token');
    if (RANK[role] < RANK[spec.role]) throw fail(403, `role '${role}' may not do this (needs '${spec.role}')`);
    req.ferryRole = role;
    return true;
  }
}
