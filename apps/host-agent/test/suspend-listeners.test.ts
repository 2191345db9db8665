/**
 * 50 suspend/resume cycles through the agent's own pieces (Operations with the worker's shared
 * shutdown signal as parent, SuspendService, the sim driver, the HTTP store client against a
 * loopback store) leave no listener behind and raise no MaxListenersExceededWarning.
 */
import { getEventListeners } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { VmSpec } from '@ferry/contracts';
import { Reporter, type ControlPlaneApi } from '../src/control-plane';
import { Operations } from '../src/operations';
import { SimDriver } from '../src/sim/sim-driver';
import { HttpStoreClient, SuspendService } from '../src/suspend';
import { FakeStore } from './fake-store';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const api: ControlPlaneApi = {
  register: () => Promise.reject(new Error('unused')),
  heartbeat: () => Promise.reject(new Error('unused')),
  reports: () => Promise.resolve({ accepted: 0, cancelOperations: [] }),
  commit: () => Promise.reject(new Error('unused')),
  decision: () => Promise.reject(new Error('unused')),
};

describe('suspend/resume listeners', () => {
  it('50 cycles leave no listener on the shared signal and raise no warning', async () => {
    const stateDir = await mkdtemp(path.join(tmpdir(), 'ferry-leak-'));
    const spec: VmSpec = { vmId: 'vm1', name: 'vm1', type: 'pv', guestWidth: 64, memoryMiB: 1, vcpus: 1 };
    const driver = new SimDriver({
      stateDir,
      toolstack: { xenVersion: '4.17', bitness: 64, streamFormat: 'v2' },
      capacity: { memoryMiB: 1024, vcpus: 8, maxGuests: 4 },
      guests: [{ spec, seed: 1, dirtyRate: 0 }],
      dirtyRate: 0,
      restartMs: 1,
    });
    await driver.start();
    const store = new FakeStore();
    await store.start();
    cleanups.push(() => rm(stateDir, { recursive: true, force: true }), () => driver.close(), () => store.close());

    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    cleanups.push(async () => void process.off('warning', onWarning));

    const svc = new SuspendService(driver, new HttpStoreClient(store.token), new Reporter(api, 'h1'));
    const ops = new Operations();
    // The worker's signal: one for the agent's lifetime, the parent of every operation.
    const worker = new AbortController();
    for (let i = 0; i < 50; i++) {
      const s = ops.begin(`sus-${i}`, 1, 'suspend', worker.signal);
      let vm: VmSpec;
      try {
        vm = (await svc.suspend({ operationId: `sus-${i}`, attempt: 1, vmId: 'vm1', store: { url: store.url, checkpointId: `ck-${i}` }, keepRunning: false }, s)).checkpoint.vm;
      } finally {
        ops.end(s);
      }
      const r = ops.begin(`res-${i}`, 1, 'resume', worker.signal);
      try {
        await svc.resume({ operationId: `res-${i}`, attempt: 1, vm, store: { url: store.url, checkpointId: `ck-${i}` }, restore: { format: 'v2' } }, r);
      } finally {
        ops.end(r);
      }
      store.images.delete(`ck-${i}`);
    }
    await new Promise((r) => setImmediate(r));
    expect(getEventListeners(worker.signal, 'abort')).toHaveLength(0);
    expect(warnings.filter((w) => /MaxListeners/.test(w))).toEqual([]);
    expect(ops.active()).toEqual([]);
  }, 120_000);
});
