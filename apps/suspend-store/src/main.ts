/**
 * Process entry of the suspend-store: `node apps/cli/bin/run-ts.js apps/suspend-store/src/main.ts`
 * (what `ferry serve suspend-store` runs). Configuration comes from the environment (see config.ts).
 */
import { ConfigError, startSuspendStore } from './index';

startSuspendStore(process.env).then(
  (store) => {
    process.stdout.write(`suspend-store listening on ${store.url}\n`);
    const stop = (): void => {
      store.close().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  },
  (e: unknown) => {
    process.stderr.write(`${e instanceof ConfigError ? e.message : `suspend-store: ${e instanceof Error ? e.message : String(e)}`}\n`);
    process.exit(1);
  },
);
