/**
 * The control plane's Lua scripts, kept as files in ./scripts the way BullMQ keeps its commands:
 * `<command>-<number of keys>.lua`, with shared pieces in ./scripts/includes pulled in by a
 * `--- @include "includes/<name>"` line. They are read once per process and registered on a client
 * with ioredis' defineCommand, which runs them by EVALSHA (EVAL only when Redis lacks the script).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type Redis from 'ioredis';
import type { Result } from 'ioredis';

export const SCRIPTS_DIR = path.join(__dirname, 'scripts');

const SCRIPT_FILE = /^([A-Za-z][A-Za-z0-9]*)-(\d+)\.lua$/;
const INCLUDE = /^--- @include "([^"]+)"[ \t]*$/gm;

export interface LuaScript {
  name: string;
  numberOfKeys: number;
  lua: string;
}

/** A script's text with its includes inlined, each at most once (an include may include others). */
function expand(file: string, included: Set<string>): string {
  return fs.readFileSync(file, 'utf8').replace(INCLUDE, (_line, ref: string) => {
    const target = path.resolve(path.dirname(file), ref.endsWith('.lua') ? ref : `${ref}.lua`);
    if (!target.startsWith(SCRIPTS_DIR + path.sep)) throw new Error(`${file}: include ${ref} is outside ${SCRIPTS_DIR}`);
    if (included.has(target)) return '';
    included.add(target);
    return expand(target, included);
  });
}

/** Every script in `dir`, includes inlined. */
export function readScripts(dir = SCRIPTS_DIR): LuaScript[] {
  return fs
    .readdirSync(dir)
    .sort()
    .flatMap((f) => {
      const m = SCRIPT_FILE.exec(f);
      return m ? [{ name: m[1]!, numberOfKeys: Number(m[2]), lua: expand(path.join(dir, f), new Set()) }] : [];
    });
}

let scripts: LuaScript[] | undefined;

/** Registers every script as a command of `redis` (the files are read on the first call only). */
export function defineScripts<T extends Redis>(redis: T): T {
  scripts ??= readScripts();
  for (const s of scripts) redis.defineCommand(s.name, { numberOfKeys: s.numberOfKeys, lua: s.lua });
  return redis;
}

// The commands defineScripts adds, typed (ioredis' way of declaring custom commands). Arguments
// after the key(s) are as each script's header says.
declare module 'ioredis' {
  interface RedisCommander<Context> {
    casHset(key: string, field: string, allowedCsv: string, nConds: string, ...condsThenSets: string[]): Result<[number, string | null], Context>;
    migTransition(key: string, prefix: string, id: string, allowedCsv: string, newPhase: string, pendingScore: string, inflightCsv: string, nConds: string, ...condsThenSets: string[]): Result<[number, string | null], Context>;
    claimActiveOp(vmKey: string, opId: string): Result<number, Context>;
    releaseActiveOp(vmKey: string, opId: string): Result<number, Context>;
    pinCheckpoint(ckptKey: string, opId: string): Result<number, Context>;
    markCheckpointDeleting(ckptKey: string, sawPinnedBy: string): Result<number, Context>;
    unmarkCheckpointDeleting(ckptKey: string): Result<number, Context>;
    renewLease(leaseKey: string, owner: string, ttlMs: string): Result<number, Context>;
    releaseLease(leaseKey: string, owner: string): Result<number, Context>;
  }
}
