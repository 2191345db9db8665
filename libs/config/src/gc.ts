/**
 * V8 flags for the data-path processes (suspend-store, host agent). They stream gigabytes through
 * 64 KiB socket buffers allocated outside V8's heap, which sets off a full collection every ~90 MB,
 * and on small hosts V8's helper threads and incremental steps then cost more CPU than they save:
 *  - `--single-threaded-gc`: measured on a 2-core machine, it took the store's CPU per GiB from 5.5
 *    to 3.5 s on upload and from 4.3 to 2.2 s on download, and its wall time down by a quarter,
 *    because the helpers were competing with the work (and with the S3 server) for the cores;
 *  - `--no-incremental-marking`: each full collection then marks the (~20 MB) heap in one pause of
 *    a few tens of milliseconds instead of many small steps between allocations; measured on the
 *    same machine, the store's upload went from 3.1-3.4 to 2.7-2.9 CPU s per GiB (66-68 % -> 72-78 %
 *    of raw S3), download from 1.7-2.0 to 1.6-1.7, and the migration target from 1.7-2.0 to 1.6-1.8.
 *    Latency-bound processes (the control plane's API) keep V8's defaults.
 *
 * The flags must be on the node command line (V8 refuses to switch after start, and NODE_OPTIONS
 * does not accept them), so whoever starts these processes asks here:
 *   FERRY_NODE_GC=single    always both flags
 *   FERRY_NODE_GC=parallel  V8's default
 *   FERRY_NODE_GC=auto      (default) both flags on hosts with at most 4 CPUs
 */
import * as os from 'node:os';

export const SINGLE_THREADED_GC = '--single-threaded-gc';
export const NO_INCREMENTAL_MARKING = '--no-incremental-marking';
const SMALL_HOST_GC = [SINGLE_THREADED_GC, NO_INCREMENTAL_MARKING];

export function dataPathNodeFlags(env: Record<string, string | undefined> = process.env, cpus = os.availableParallelism()): string[] {
  const policy = env.FERRY_NODE_GC ?? 'auto';
  if (policy !== 'auto' && policy !== 'single' && policy !== 'parallel') throw new Error(`FERRY_NODE_GC: must be auto, single or parallel, not '${policy}'`);
  return policy === 'single' || (policy === 'auto' && cpus <= 4) ? [...SMALL_HOST_GC] : [];
}

/** The flags of dataPathNodeFlags() that this process was not started with. */
export function missingNodeFlags(env: Record<string, string | undefined> = process.env): string[] {
  return dataPathNodeFlags(env).filter((f) => !process.execArgv.includes(f));
}
