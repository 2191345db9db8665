/**
 * V8 flags for the data-path processes (suspend-store, host agent). They stream gigabytes through
 * 64 KiB socket buffers, and on small hosts V8's parallel and concurrent GC helper threads then cost
 * more CPU than they save: measured on a 2-core machine, `--single-threaded-gc` took the store's CPU
 * per GiB from 5.5 to 3.5 s on upload and from 4.3 to 2.2 s on download, and its wall time down by a
 * quarter, because the helpers were competing with the work (and with the S3 server) for the cores.
 *
 * The flag must be on the node command line (V8 refuses to switch after start, and NODE_OPTIONS
 * does not accept it), so whoever starts these processes asks here:
 *   FERRY_NODE_GC=single    always single-threaded GC
 *   FERRY_NODE_GC=parallel  V8's default
 *   FERRY_NODE_GC=auto      (default) single-threaded on hosts with at most 4 CPUs
 */
import * as os from 'node:os';

export const SINGLE_THREADED_GC = '--single-threaded-gc';

export function dataPathNodeFlags(env: Record<string, string | undefined> = process.env, cpus = os.availableParallelism()): string[] {
  const policy = env.FERRY_NODE_GC ?? 'auto';
  if (policy !== 'auto' && policy !== 'single' && policy !== 'parallel') throw new Error(`FERRY_NODE_GC: must be auto, single or parallel, not '${policy}'`);
  return policy === 'single' || (policy === 'auto' && cpus <= 4) ? [SINGLE_THREADED_GC] : [];
}

/** The flags of dataPathNodeFlags() that this process was not started with. */
export function missingNodeFlags(env: Record<string, string | undefined> = process.env): string[] {
  return dataPathNodeFlags(env).filter((f) => !process.execArgv.includes(f));
}
