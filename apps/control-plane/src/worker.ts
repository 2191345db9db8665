import { startControlPlaneWorker } from './app';

startControlPlaneWorker(process.env).then(
  (w) => {
    process.stdout.write('ferry control-plane worker running (scheduler + campaign runner)\n');
    const stop = () => void w.close().then(() => process.exit(0));
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  },
  (e: unknown) => {
    process.stderr.write(`control-plane-worker: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(2);
  },
);
