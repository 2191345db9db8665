/**
 * @ferry/host-agent: one agent per host. `startHostAgent(env)` validates the configuration (fails
 * fast naming the variable), starts the driver, the data endpoint and the queue worker, registers
 * the host and heartbeats. `npx ferry serve host-agent` calls it.
 */
import { HostAgent, type AgentDeps } from './agent';
import { loadAgentConfig } from './config';

export interface HostAgentHandle {
  hostId: string;
  dataUrl: string;
  agent: HostAgent;
  close(): Promise<void>;
}

export async function startHostAgent(env: Record<string, string | undefined> = process.env, deps: AgentDeps = {}): Promise<HostAgentHandle> {
  const config = loadAgentConfig(env);
  const agent = new HostAgent(config, deps);
  try {
    await agent.start();
  } catch (e) {
    await agent.close().catch(() => undefined);
    throw e;
  }
  return { hostId: agent.hostId, dataUrl: agent.dataUrl, agent, close: () => agent.close() };
}

export { HostAgent, toAgentError, type AgentDeps } from './agent';
export { loadAgentConfig, parseGuests, parseToolstack, type AgentConfig } from './config';
export type { HypervisorDriver } from './driver';
export { SimDriver } from './sim/sim-driver';
export { XlDriver } from './xl/xl-driver';
export { fromWire, toWire, verifyWire } from './codec';
