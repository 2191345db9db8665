/**
 * Process entry: `node apps/cli/bin/run-ts.js apps/dashboard/src/main.ts` (what `ferry up` runs).
 * Env: PORT (default 8080), HOST, FERRY_CONTROL_PLANE_URL (required), FERRY_STORE_URL (optional).
 * Builds the bundle first when it is missing or stale.
 */
import { ensureBuilt } from './build';
import { startDashboardServer } from './server';

async function main(): Promise<void> {
  const cpUrl = process.env.FERRY_CONTROL_PLANE_URL;
  if (!cpUrl) throw new Error('FERRY_CONTROL_PLANE_URL is required (the control plane the dashboard proxies)');
  const ms = await ensureBuilt({ log: (l) => process.stdout.write(`${l}\n`) });
  if (ms) process.stdout.write(`dashboard bundle built in ${(ms / 1000).toFixed(1)} s\n`);
  const server = await startDashboardServer({
    port: Number(process.env.PORT ?? 8080),
    host: process.env.HOST ?? '0.0.0.0',
    controlPlaneUrl: cpUrl,
    ...(process.env.FERRY_STORE_URL ? { storeUrl: process.env.FERRY_STORE_URL } : {}),
  });
  process.stdout.write(`dashboard listening on ${server.url}\n`);
  const stop = (): void => {
    server.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((e: unknown) => {
  process.stderr.write(`dashboard: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
