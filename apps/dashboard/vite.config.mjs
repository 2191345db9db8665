// Builds the browser bundle: apps/dashboard/src/web -> apps/dashboard/dist (plain TS + DOM, no framework).
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('./src/web', import.meta.url));

export default {
  root,
  base: '/',
  logLevel: 'warn',
  build: {
    outDir: process.env.FERRY_DASHBOARD_OUT ?? fileURLToPath(new URL('./dist', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: true,
    reportCompressedSize: false,
  },
};
