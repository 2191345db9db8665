export { startDashboardServer, type DashboardServer, type DashboardServerOptions } from './server';
export { ensureBuilt, isStale } from './build';
