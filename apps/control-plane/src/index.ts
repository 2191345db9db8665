export { startControlPlane, startControlPlaneWorker, type RunningControlPlane } from './app';
export { configSchema, loadCpConfig, type CpConfig } from './config';
