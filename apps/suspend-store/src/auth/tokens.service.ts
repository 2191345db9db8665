import { Inject, Injectable } from '@nestjs/common';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { OBJECT_BACKEND, type ObjectBackend } from '../backends/backend';
import { STORE_CONFIG } from '../common/tokens';
import { StoreError, notFound } from '../common/errors';
import { SCOPES, type Scope, type StoreConfig } from '../config';

/**
 * Bearer tokens. Three sources:
 * - FERRY_ADMIN_TOKEN: the first admin token (all scopes);
 * - FERRY_STORE_TOKENS: fixed tokens, "TOKEN:SCOPE[+SCOPE],...";
 * - POST /v1/tokens (admin): made by the service, `fst_{id}_{secret}`, stored hashed (sha256) at
 *   `tokens/{id}.json` in the object store, shown once, revoked with DELETE /v1/tokens/{id}.
 * Scopes: read (GET, HEAD, list), write (PUT, DELETE of checkpoints), admin (everything, tokens).
 */
export interface TokenRecord {
  id: string;
  name: string;
  scopes: Scope[];
  created: string;
  /** sha256 (hex) of the whole token. */
  hash: string;
}

const TOKEN = /^fst_([a-f0-9]{16})_([A-Za-z0-9_-]{32,})$/;
const CACHE_MS = 5_000;

const sha = (s: string): Buffer => createHash('sha256').update(s).digest();

@Injectable()
export class TokensService {
  private readonly fixed: { hash: Buffer; scopes: Scope[] }[];
  private readonly cache = new Map<string, { at: number; record: TokenRecord | null }>();

  constructor(
    @Inject(STORE_CONFIG) config: StoreConfig,
    @Inject(OBJECT_BACKEND) private readonly backend: ObjectBackend,
  ) {
    this.fixed = [
      { hash: sha(config.adminToken), scopes: ['admin'] },
      ...config.staticTokens.map((t) => ({ hash: sha(t.token), scopes: t.scopes })),
    ];
  }

  /** The scopes a presented token grants, or null when it is unknown. */
  async scopesOf(token: string): Promise<Scope[] | null> {
    const h = sha(token);
    for (const f of this.fixed) if (timingSafeEqual(f.hash, h)) return f.scopes;
    const m = TOKEN.exec(token);
    if (!m) return null;
    const record = await this.load(m[1]!);
    if (!record) return null;
    return timingSafeEqual(Buffer.from(record.hash, 'hex'), h) ? record.scopes : null;
  }

  private async load(id: string): Promise<TokenRecord | null> {
    const hit = this.cache.get(id);
    if (hit && Date.now() - hit.at < CACHE_MS) return hit.record;
    const raw = await this.backend.getBytes(`tokens/${id}.json`);
    const record = raw ? (JSON.parse(raw.toString('utf8')) as TokenRecord) : null;
    this.cache.set(id, { at: Date.now(), record });
    return record;
  }

  async create(name: string, scopes: Scope[]): Promise<{ token: string; record: Omit<TokenRecord, 'hash'> }> {
    if (scopes.length === 0 || scopes.some((s) => !SCOPES.includes(s))) {
      throw new StoreError(400, 'bad_request', `scopes must be a non-empty list of ${SCOPES.join(', ')}`);
    }
    const id = randomBytes(8).toString('hex');
    const token = `fst_${id}_${randomBytes(24).toString('base64url')}`;
    const record: TokenRecord = { id, name, scopes: [...new Set(scopes)], created: new Date().toISOString(), hash: sha(token).toString('hex') };
    await this.backend.putBytes(`tokens/${id}.json`, Buffer.from(JSON.stringify(record)));
    this.cache.delete(id);
    const { hash: _h, ...shown } = record;
    return { token, record: shown };
  }

  async list(): Promise<Omit<TokenRecord, 'hash'>[]> {
    const out: Omit<TokenRecord, 'hash'>[] = [];
    for (const o of await this.backend.listObjects('tokens/')) {
      const raw = await this.backend.getBytes(o.key);
      if (!raw) continue;
      const { hash: _h, ...shown } = JSON.parse(raw.toString('utf8')) as TokenRecord;
      out.push(shown);
    }
    return out;
  }

  async revoke(id: string): Promise<void> {
    if (!/^[a-f0-9]{16}$/.test(id)) throw new StoreError(400, 'bad_request', 'invalid token id');
    if (!(await this.backend.head(`tokens/${id}.json`))) throw notFound(`token ${id}`);
    await this.backend.delete(`tokens/${id}.json`);
    this.cache.delete(id);
  }
}
