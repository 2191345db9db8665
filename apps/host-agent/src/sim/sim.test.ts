import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Toolstack, VmSpec } from '@ferry/contracts';
import { fromWire, toWire, WidthMismatchError } from '../codec';
import { GuestMemory, checkPage, renderPages } from './memory';
import { SimDriver } from './sim-driver';

const LEGACY32: Toolstack = { xenVersion: '4.4', bitness: 32, streamFormat: 'legacy' };
const LEGACY64: Toolstack = { xenVersion: '4.4', bitness: 64, streamFormat: 'legacy' };
const V2: Toolstack = { xenVersion: '4.17', bitness: 64, streamFormat: 'v2' };

const dirs: string[] = [];
const drivers: SimDriver[] = [];
async function sim(toolstack: Toolstack, guests: { spec: VmSpec; seed: number; dirtyRate?: number }[] = []): Promise<SimDriver> {
  const stateDir = await mkdtemp(path.join(tmpdir(), 'ferry-sim-'));
  dirs.push(stateDir);
  const d = new SimDriver({
    stateDir,
    toolstack,
    capacity: { memoryMiB: 8192, vcpus: 16, maxGuests: 8 },
    guests: guests.map((g) => ({ ...g, dirtyRate: g.dirtyRate ?? 0 })),
    dirtyRate: 0,
    restartMs: 1,
  });
  await d.start();
  drivers.push(d);
  return d;
}
afterEach(async () => {
  for (const d of drivers.splice(0)) await d.close();
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function* collect(s: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  for await (const c of s) yield c.slice();
}

const pv32: VmSpec = { vmId: 'vm1', name: 'vm1', type: 'pv', guestWidth: 32, memoryMiB: 4, vcpus: 2 };
const hvm: VmSpec = { vmId: 'vm2', name: 'vm2', type: 'hvm', memoryMiB: 4, vcpus: 1 };

describe('sim memory', () => {
  it('pages check out and corruption shows in the digest', () => {
    const m = GuestMemory.fresh(42, 16);
    m.bump(3);
    const pfns = Uint32Array.from({ length: 16 }, (_, i) => i);
    const data = renderPages(42, pfns, m.versions);
    expect(checkPage(data.subarray(4096 * 3, 4096 * 4), 3)).toEqual({ seed: 42, version: 1 });
    const t = new GuestMemory(0, new Uint32Array(16), 'missing');
    for (let i = 0; i < 16; i++) t.accept(i, data.subarray(i * 4096, (i + 1) * 4096));
    expect(t.digest()).toBe(m.digest());
    data[4096 * 5 + 1000] = data[4096 * 5 + 1000]! ^ 1;
    const u = new GuestMemory(0, new Uint32Array(16), 'missing');
    for (let i = 0; i < 16; i++) u.accept(i, data.subarray(i * 4096, (i + 1) * 4096));
    expect(u.corruptPages).toBe(1);
    expect(u.digest()).not.toBe(m.digest());
  });
});

describe('sim memory, pages checked in place', () => {
  it('acceptAt reads pages at any offset, aligned or not, and still catches a flipped byte anywhere', () => {
    const m = GuestMemory.fresh(9, 8);
    const pfns = Uint32Array.from({ length: 8 }, (_, i) => i);
    const pages = renderPages(9, pfns, m.versions);
    for (const shift of [0, 2, 5]) {
      // the pages inside a bigger buffer, starting `shift` bytes in (not 4-aligned for 2 and 5)
      const big = new Uint8Array(shift + pages.byteLength + 7);
      big.set(pages, shift);
      const t = new GuestMemory(0, new Uint32Array(8), 'missing');
      for (let i = 0; i < 8; i++) t.acceptAt(i, big, shift + i * 4096);
      expect(t.corruptPages, `shift ${shift}`).toBe(0);
      expect(t.digest()).toBe(m.digest());
      for (const at of [3, 17, 63, 64, 4095]) {
        const bad = big.slice();
        bad[shift + 4096 * 2 + at]! ^= 0x40;
        const u = new GuestMemory(0, new Uint32Array(8), 'missing');
        for (let i = 0; i < 8; i++) u.acceptAt(i, bad, shift + i * 4096);
        expect(u.corruptPages, `shift ${shift}, byte ${at}`).toBe(1);
      }
    }
  });
});

describe('sim driver', () => {
  for (const spec of [pv32, hvm]) {
    it(`legacy 32-bit ${spec.type} -> edge conversion -> v2 64-bit restore keeps the digest`, async () => {
      const src = await sim(LEGACY32, [{ spec, seed: 7 }]);
      const dst = await sim(V2);
      const before = await src.memoryDigest(spec.vmId);
      const h = await src.save(spec.vmId, {});
      const res = await dst.restore(spec, toWire(h.stream, { format: 'legacy', width: 32 }), {});
      expect(res.memoryDigest).toBe(before);
      expect(h.summary().memoryDigest).toBe(before);
    });
  }

  it('v2 -> legacy 32-bit down-conversion at the target edge (HVM) keeps the digest', async () => {
    const src = await sim(V2, [{ spec: hvm, seed: 8 }]);
    const dst = await sim(LEGACY32);
    const before = await src.memoryDigest('vm2');
    const h = await src.save('vm2', {});
    const res = await dst.restore(hvm, fromWire(h.stream, { format: 'legacy', width: 32 }), {});
    expect(res.memoryDigest).toBe(before);
  });

  it('a legacy 64-bit toolstack refuses a 32-bit legacy image; the edge refuses a wrong declared width', async () => {
    const src = await sim(LEGACY32, [{ spec: hvm, seed: 7 }]);
    const dst = await sim(LEGACY64);
    await expect(dst.restore(hvm, collect((await src.save('vm2', {})).stream), {})).rejects.toThrow(/32|width|contradicts/i);
    expect(await dst.guests()).toEqual([]);
    const h = await src.save('vm2', {});
    await expect(async () => {
      for await (const _ of toWire(h.stream, { format: 'legacy', width: 64 })) void _;
    }).rejects.toThrow(WidthMismatchError);
  });

  it('live save: rounds while the guest dirties memory, then stop-copy', async () => {
    const spec: VmSpec = { ...pv32, guestWidth: 64, memoryMiB: 32 };
    const src = await sim(V2, [{ spec, seed: 9, dirtyRate: 64 * 1024 * 1024 }]);
    const dst = await sim(V2);
    const rounds: number[] = [];
    const h = await src.save('vm1', {
      live: { maxRounds: 5, stop: (s) => s.expectedDowntimeMs < 1 },
      onRound: (s) => rounds.push(s.round),
    });
    const res = await dst.restore(spec, collect(h.stream), {});
    expect(h.summary().rounds).toBeGreaterThanOrEqual(1);
    expect(res.memoryDigest).toBe(h.summary().memoryDigest);
    expect(res.memoryDigest).toBe(await src.memoryDigest('vm1')); // paused: no more writes
  });

  it('upgrade refuses while guests remain, and state survives a restart', async () => {
    const d = await sim(LEGACY32, [{ spec: hvm, seed: 1 }]);
    await expect(d.upgrade(V2)).rejects.toThrow(/remain/);
    await d.destroy('vm2');
    await d.upgrade(V2);
    await d.close();
    const again = new SimDriver({ stateDir: dirs[0]!, toolstack: LEGACY32, capacity: d.capacity(), guests: [], dirtyRate: 0 });
    await again.start();
    expect(again.toolstack()).toEqual(V2);
    await again.close();
  });

  it('an arriving guest restored paused but not committed yet survives a crash of the agent, paused, with its digest and migration', async () => {
    const src = await sim(V2, [{ spec: hvm, seed: 5 }]);
    const dst = await sim(V2);
    const h = await src.save('vm2', {});
    const r = await dst.restore(hvm, collect(h.stream), { migration: { migrationId: 'mig-1', attempt: 2 } });
    // kill -9: nothing more is written; a new agent process starts on the same state dir
    const again = new SimDriver({ stateDir: dirs[1]!, toolstack: V2, capacity: dst.capacity(), guests: [], dirtyRate: 0 });
    await again.start();
    drivers.push(again);
    expect(await again.guests()).toEqual([expect.objectContaining({ vmId: 'vm2', state: 'migrating-in', memoryDigest: r.memoryDigest })]);
    expect(await again.pendingMigrations()).toEqual([{ vmId: 'vm2', state: 'migrating-in', migrationId: 'mig-1', attempt: 2, committed: false }]);
  });

  it('a crash while a guest arrives leaves no orphan page-version file behind', async () => {
    const dst = await sim(V2);
    let release!: () => void;
    const never = new Promise<void>((r) => (release = r));
    async function* stalled(): AsyncGenerator<Uint8Array> {
      await never;
    }
    const restoring = dst.restore(hvm, stalled(), { migration: { migrationId: 'mig-2', attempt: 1 } }).catch(() => undefined);
    await dst.persist(true); // the periodic flush runs while the stream is still coming
    expect(await readdir(path.join(dirs[0]!, 'guests'))).toEqual([]);
    await writeFile(path.join(dirs[0]!, 'guests', 'ghost.versions'), new Uint8Array(16)); // left by an older crash
    const again = new SimDriver({ stateDir: dirs[0]!, toolstack: V2, capacity: dst.capacity(), guests: [], dirtyRate: 0 });
    await again.start();
    drivers.push(again);
    expect(await again.guests()).toEqual([]);
    expect(await readdir(path.join(dirs[0]!, 'guests'))).toEqual([]);
    release();
    await restoring;
  });
});
