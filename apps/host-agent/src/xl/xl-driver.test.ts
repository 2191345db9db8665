/**
 * The xl driver against a scripted stand-in for `xl` (apps/host-agent/test/fake-xl/xl, put on PATH):
 * command lines, the FIFO data flow both ways, inventory parsing and failures.
 * The same driver against a real dom0: xl-driver.slow.test.ts.
 */
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encodeV2, synthStream } from '@ferry/stream-codec';
import { DriverError } from '../driver';
import { XlDriver } from './xl-driver';

const FAKE = path.resolve(__dirname, '../../test/fake-xl');
let dir: string;
let image: Buffer;

async function bytes(s: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ferry-fake-xl-'));
  process.env.FAKE_XL_DIR = dir;
  if (!process.env.PATH!.startsWith(FAKE)) process.env.PATH = `${FAKE}${path.delimiter}${process.env.PATH}`;
  image = await bytes(encodeV2(synthStream({ guest: 'pv', framing: 'xl', pages: 300, vcpus: 2 })));
  await writeFile(path.join(dir, 'save.img'), image);
  await writeFile(path.join(dir, 'domains.json'), JSON.stringify([{ name: 'vm1', domid: 7, type: 'pv', memkb: 262144, vcpus: 2, paused: false }]));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function driver(): XlDriver {
  return new XlDriver({ xlPath: 'xl', workDir: path.join(dir, 'work'), capacity: { memoryMiB: 4096, vcpus: 8, maxGuests: 8 } });
}
const calls = async (): Promise<string[]> => (await readFile(path.join(dir, 'calls.log'), 'utf8')).trim().split('\n');

// every fake `xl` call is a node process start: slow on a loaded machine
describe('xl driver (fake xl on PATH)', { timeout: 180_000 }, () => {
  it('reads the toolstack from xl info and the inventory from xl list', async () => {
    const d = driver();
    await d.start();
    expect(d.toolstack()).toEqual({ xenVersion: '4.17', bitness: 64, streamFormat: 'v2' });
    expect(await d.guests()).toEqual([{ vmId: 'vm1', name: 'vm1', type: 'pv', memoryMiB: 256, vcpus: 2, state: 'running', memoryDigest: null }]);
    expect((await calls()).sort()).toEqual(['info', 'list', 'list -l']);
  });

  it('saves with -p into a FIFO the agent reads, leaving the domain paused', async () => {
    const d = driver();
    await d.start();
    let pausedAt = 0;
    const h = await d.save('vm1', { onPaused: (t) => (pausedAt = t) });
    expect(await bytes(h.stream)).toEqual(image);
    expect(pausedAt).toBeGreaterThan(0);
    const save = (await calls()).find((c) => c.startsWith('save'))!;
    expect(save).toMatch(/^save -p vm1 .*\.fifo$/);
    expect((await d.guests())[0]!.state).toBe('paused');
    await d.unpause('vm1');
    expect((await d.guests())[0]!.state).toBe('running');
  });

  it('restores with -p from a FIFO the agent writes, then unpauses and destroys', async () => {
    const d = driver();
    await d.start();
    await d.restore({ vmId: 'synth-pv', name: 'synth-pv', type: 'pv', memoryMiB: 64, vcpus: 1 }, (async function* () {
      for (let o = 0; o < image.length; o += 5000) yield image.subarray(o, o + 5000);
    })(), {});
    expect(await readFile(path.join(dir, 'restored-synth-pv.img'))).toEqual(image);
    expect((await calls()).some((c) => /^restore -p .*\.fifo$/.test(c))).toBe(true);
    expect((await d.guests()).find((g) => g.vmId === 'synth-pv')!.state).toBe('resuming');
    await d.unpause('synth-pv');
    await d.setState('synth-pv', 'running', null);
    await d.destroy('synth-pv');
    expect((await d.guests()).map((g) => g.vmId)).toEqual(['vm1']);
    expect(await calls()).toContain('destroy synth-pv');
  });

  // Found against real Xen 4.17 (tools/real-xen): every drain wait of restore left an 'error' listener
  // on the FIFO's write stream, so an 88 MiB restore warned MaxListenersExceededWarning.
  it('restores a long stream through the FIFO without piling up listeners', async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on('warning', onWarning);
    try {
      const d = driver();
      await d.start();
      let n = 0;
      await d.restore({ vmId: 'synth-pv', name: 'synth-pv', type: 'pv', memoryMiB: 64, vcpus: 1 }, (async function* () {
        for (let o = 0; o < image.length; o += 1000) yield image.subarray(o, o + 1000);
      })(), { onBytes: (b) => (n += b) });
      expect(n).toBe(image.length);
      expect(await readFile(path.join(dir, 'restored-synth-pv.img'))).toEqual(image);
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning').map((w) => w.message)).toEqual([]);
  });

  it('reports xl failing before it opens the FIFO instead of waiting on the FIFO for ever', async () => {
    // an `xl` that refuses save and restore at once, as real xl does on bad arguments or no memory
    const early = path.join(dir, 'xl-early');
    await writeFile(early, `#!/bin/sh\ncase "$1" in save|restore) echo "libxl: error: refused $1 early" >&2; exit 3;; esac\nexec "${path.join(FAKE, 'xl')}" "$@"\n`);
    await chmod(early, 0o755);
    const d = new XlDriver({ xlPath: early, workDir: path.join(dir, 'work'), capacity: { memoryMiB: 4096, vcpus: 8, maxGuests: 8 } });
    await d.start();
    const h = await d.save('vm1', {});
    await expect(bytes(h.stream)).rejects.toThrow(/exited 3: libxl: error: refused save early/);
    await expect(
      d.restore({ vmId: 'synth-pv', name: 'synth-pv', type: 'pv', memoryMiB: 64, vcpus: 1 }, (async function* () {
        for (let o = 0; o < image.length; o += 65536) yield image.subarray(o, o + 65536);
      })(), {}),
    ).rejects.toThrow(/exited 3: libxl: error: refused restore early/);
  });

  // Found against real Xen 4.17 (tools/real-xen): a PVH domain was inventoried as 'pv', but its save
  // stream is an x86 HVM stream. The JSON below is the shape xl 4.17 printed (trimmed): the type in
  // c_info.type, and b_info's type-specific part under "type.<kind>".
  it('reads guest types as xl 4.17 prints them; PVH is hvm (its save stream is HVM)', async () => {
    const entry = (domid: number, name: string, type: string, memkb: number, extra: object = {}): object => ({
      domid,
      config: { c_info: { type, name, domid: 4294967295, uuid: `00000000-0000-0000-0000-00000000000${domid}` }, b_info: { max_vcpus: 1, max_memkb: memkb, target_memkb: memkb, [`type.${type}`]: extra } },
    });
    const longJson = JSON.stringify([
      { domid: 0, config: { c_info: { type: 'pv', name: 'Domain-0' }, b_info: { max_memkb: 1572864, target_memkb: 1572863, 'type.pv': {} } } },
      entry(1, 'pv', 'pv', 90112),
      entry(2, 'pvh', 'pvh', 90112),
      entry(3, 'hvm', 'hvm', 65536, { firmware: 'bios' }),
    ], null, 4);
    const plain = ['Name                                        ID   Mem VCPUs\tState\tTime(s)', 'Domain-0                                     0  1536     1     r-----     104.2',
      'pv                                           1    88     1     -b----       4.6', 'pvh                                          2    88     1     --p---       7.1', 'hvm                                          3    64     1     -b----       2.2'].join('\n');
    await writeFile(path.join(dir, 'long.json'), longJson);
    await writeFile(path.join(dir, 'plain.txt'), plain + '\n');
    const xl = path.join(dir, 'xl-417');
    await writeFile(xl, `#!/bin/sh\nif [ "$1 $2" = "list -l" ]; then cat "${dir}/long.json"; elif [ "$1" = list ]; then cat "${dir}/plain.txt"; else exec "${path.join(FAKE, 'xl')}" "$@"; fi\n`);
    await chmod(xl, 0o755);
    const d = new XlDriver({ xlPath: xl, workDir: path.join(dir, 'work'), capacity: { memoryMiB: 4096, vcpus: 8, maxGuests: 8 } });
    expect((await d.guests()).map((g) => [g.vmId, g.type, g.memoryMiB, g.state])).toEqual([
      ['pv', 'pv', 88, 'running'],
      ['pvh', 'hvm', 88, 'paused'],
      ['hvm', 'hvm', 64, 'running'],
    ]);
  });

  // Found against real Xen 4.17 (tools/real-xen): an aborted save killed xl save, which left the
  // domain suspended (`---ss-`) for good. Now the driver closes the FIFO: xl save fails its write,
  // resumes the domain and exits on its own; the driver then pauses it (as after a complete save -p).
  it('cancels a save by closing the FIFO, not by killing xl, and leaves the domain paused', async () => {
    // an `xl save` that writes until its reader goes away, then "resumes the domain" and exits 1
    const saver = path.join(dir, 'slow-save.js');
    await writeFile(saver, [
      "const fs = require('fs'); const path = require('path'); const dir = process.env.FAKE_XL_DIR; const a = process.argv.slice(2);",
      "fs.appendFileSync(path.join(dir, 'calls.log'), a.join(' ') + '\\n');",
      "process.on('SIGTERM', () => { fs.writeFileSync(path.join(dir, 'killed'), '1'); process.exit(143); });",
      "const fd = fs.openSync(a[a.length - 1], 'w'); const buf = Buffer.alloc(65536, 7);",
      "(function loop() { try { fs.writeSync(fd, buf); } catch (e) { fs.writeFileSync(path.join(dir, 'resumed'), e.code); process.stderr.write('Failed to save domain, resuming domain\\n'); process.exit(1); } setTimeout(loop, 2); })();",
    ].join('\n'));
    const xl = path.join(dir, 'xl-cancel');
    await writeFile(xl, `#!/bin/sh\nif [ "$1" = save ]; then exec node "${saver}" "$@"; fi\nexec "${path.join(FAKE, 'xl')}" "$@"\n`);
    await chmod(xl, 0o755);
    const d = new XlDriver({ xlPath: xl, workDir: path.join(dir, 'work'), capacity: { memoryMiB: 4096, vcpus: 8, maxGuests: 8 } });
    await d.start();

    // 1. aborted through the signal
    const ac = new AbortController();
    const h = await d.save('vm1', { signal: ac.signal });
    let n = 0;
    await expect((async () => {
      for await (const c of h.stream) {
        n += c.byteLength;
        if (n >= 256 * 1024) ac.abort();
      }
    })()).rejects.toThrow(/exited 1: Failed to save domain, resuming domain/);
    expect(await readFile(path.join(dir, 'resumed'), 'utf8')).toBe('EPIPE');
    await expect(readFile(path.join(dir, 'killed'))).rejects.toThrow();
    expect(await calls()).toContain('pause vm1');
    expect((await d.guests())[0]!.state).toBe('paused');

    // 2. the consumer stops reading (e.g. the network side failed)
    await d.unpause('vm1');
    await rm(path.join(dir, 'resumed'));
    const h2 = await d.save('vm1', {});
    for await (const c of h2.stream) {
      if (c.byteLength > 0) break;
    }
    expect(await readFile(path.join(dir, 'resumed'), 'utf8')).toBe('EPIPE');
    await expect(readFile(path.join(dir, 'killed'))).rejects.toThrow();
    expect((await d.guests())[0]!.state).toBe('paused');
  });

  it('fails like xl does: unknown domain, a stream xl refuses', async () => {
    const d = driver();
    await d.start();
    await expect(d.save('nope', {})).rejects.toBeInstanceOf(DriverError);
    await expect(
      d.restore({ vmId: 'x', name: 'x', type: 'pv', memoryMiB: 64, vcpus: 1 }, (async function* () {
        yield new Uint8Array(100);
      })(), {}),
    ).rejects.toThrow(/not an xl save file/);
    await expect(d.upgrade()).rejects.toThrow(/operator/);
  });
});
