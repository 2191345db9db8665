/**
 * OPT-IN, SLOW: the xl driver against a REAL Xen dom0 (not part of `npm test`; *.slow.test.ts is
 * excluded by the root vitest config).
 *
 * Run it inside dom0 (as root, with xenstored/xenconsoled up) from the repository root with:
 *   FERRY_REAL_XEN=1 FERRY_REAL_XEN_CFG=/guests/pv.cfg FERRY_REAL_XEN_GUEST=pv FERRY_XL_PATH=/usr/lib/xen-4.17/bin/xl \
 *     ./node_modules/.bin/vitest run --config apps/host-agent/test/vitest.slow.config.ts apps/host-agent/src/xl/xl-driver.slow.test.ts
 * (FERRY_REAL_XEN_BOOT_WAIT_MS: how long the guest gets to boot, default 60000.)
 *
 * What it checks, through the same XlDriver the agent uses:
 *  1. toolstack from `xl info` (4.17 -> v2), the guest in `xl list -l`;
 *  2. save with -p through a FIFO: the stream verifies as v2 with @ferry/stream-codec, the domain stays paused;
 *  3. destroy, restore -p from a FIFO the driver writes, unpause: the guest is listed running again.
 *
 * Run for real on 2026-11-25: it passed twice (1 test, 138 s each; driver of commits 9993887 and
 * 68725cd) in a Xen 4.17 dom0 (hypervisor 4.17.7, xl 4.17.5) under QEMU TCG, with tools/real-xen
 * (PV guest tools/real-xen/dom0/pv.cfg, 88 MiB, FERRY_REAL_XEN_BOOT_WAIT_MS=40000). tools/real-xen/xl-check.ts runs the same steps and more without vitest (PVH and
 * HVM guests, checks that the restored guest really runs, a save piped into a restore through the
 * codec, aborted save/restore): see tools/real-xen/results-2026-11-25.md.
 * NOT run against real Xen: a migration between two dom0s, legacy toolstacks, real hardware.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { verifyStream } from '@ferry/stream-codec';
import { XlDriver } from './xl-driver';

const REAL = process.env.FERRY_REAL_XEN === '1';
const CFG = process.env.FERRY_REAL_XEN_CFG ?? '/guests/pv.cfg';
const GUEST = process.env.FERRY_REAL_XEN_GUEST ?? 'pv';
const XL = process.env.FERRY_XL_PATH ?? 'xl';

async function collect(s: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

describe.skipIf(!REAL)('xl driver on a real dom0', () => {
  it(
    'saves, verifies, restores and unpauses a real guest',
    async () => {
      execFileSync(XL, ['create', CFG], { stdio: 'inherit', timeout: 300_000 });
      // give the guest time to boot far enough to be saveable
      await new Promise((r) => setTimeout(r, Number(process.env.FERRY_REAL_XEN_BOOT_WAIT_MS ?? 60_000)));
      const d = new XlDriver({ xlPath: XL, workDir: await mkdtemp(path.join(tmpdir(), 'ferry-xl-')), capacity: { memoryMiB: 2048, vcpus: 2, maxGuests: 4 }, commandTimeoutMs: 600_000 });
      await d.start();
      const ts = d.toolstack();
      expect(ts.streamFormat).toBe(Number(ts.xenVersion.split('.')[1]) >= 6 ? 'v2' : 'legacy');
      const before = await d.guests();
      expect(before.map((g) => g.vmId)).toContain(GUEST);
      const spec = (await d.spec(GUEST))!;

      const h = await d.save(GUEST, {});
      const image = await collect(h.stream);
      const facts = await verifyStream([image]);
      expect(facts.input).toBe('v2');
      expect(facts.pages).toBeGreaterThan(0);
      expect((await d.guests()).find((g) => g.vmId === GUEST)!.state).toBe('paused');

      await d.destroy(GUEST);
      await d.restore(spec, (async function* () {
        for (let o = 0; o < image.length; o += 1 << 20) yield image.subarray(o, o + (1 << 20));
      })(), {});
      await d.setState(GUEST, 'running', null);
      await d.unpause(GUEST);
      const after = (await d.guests()).find((g) => g.vmId === GUEST);
      expect(after?.state).toBe('running');
      await d.destroy(GUEST);
    },
    30 * 60_000,
  );
});
