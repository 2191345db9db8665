/** Process entry: `node apps/cli/bin/run-ts.js apps/host-agent/src/main.ts` (or `npx ferry serve host-agent`). */
import { ConfigError } from '@ferry/config';
import { startHostAgent } from './index';

async function main(): Promise<void> {
  const handle = await startHostAgent(process.env);
  let stopping = false;
  const stop = (sig: string): void => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`host-agent: ${sig}, stopping\n`);
    handle.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

main().catch((e: unknown) => {
  process.stderr.write(`host-agent: ${e instanceof ConfigError ? e.message : ((e as Error).stack ?? String(e))}\n`);
  process.exit(1);
});
