import { startControlPlane } from './app';

startControlPlane(process.env).then(
  (cp) => {
    process.stdout.write(`ferry control plane listening on ${cp.url} (docs at ${cp.url}/docs)\n`);
    const stop = () => void cp.close().then(() => process.exit(0));
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  },
  (e: unknown) => {
    process.stderr.write(`control-plane: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(2);
  },
);
