import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { assertSafeKey } from './backend';
import { FsBackend } from './fs.backend';

describe('local-folder backend', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-fsb-'));
  const b = new FsBackend(root);
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

  it('refuses keys that could leave its folder', () => {
    for (const k of ['../x', '/etc/passwd', 'a/../../b', 'a//b', 'a/./b', 'a\\b', '']) expect(() => assertSafeKey(k), k).toThrow(/unsafe/);
    expect(() => assertSafeKey('checkpoints/a-1/meta.json')).not.toThrow();
  });

  it('writes through a temporary file and leaves nothing when the stream fails', async () => {
    await b.init();
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield Buffer.from('part');
      throw new Error('boom');
    }
    await expect(b.putStream('checkpoints/f/image', failing())).rejects.toThrow('boom');
    expect(await b.head('checkpoints/f/image')).toBeNull();
    expect(fs.readdirSync(path.join(root, 'tmp'))).toEqual([]);
    await b.putStream('checkpoints/f/image', [Buffer.from('ab'), Buffer.from('cd')] as unknown as AsyncIterable<Uint8Array>);
    expect((await b.getBytes('checkpoints/f/image'))!.toString()).toBe('abcd');
    const r = await b.getStream('checkpoints/f/image', { start: 1, end: 2 });
    let s = '';
    for await (const c of r!) s += String(c);
    expect(s).toBe('bc');
  });

  it('lists children in S3 order after a marker', async () => {
    for (const id of ['a', 'a-b', 'a.c', 'b', 'a0']) await b.putBytes(`list/${id}/meta.json`, Buffer.from('{}'));
    const all = await b.listChildren('list/', undefined, 10);
    expect(all.names).toEqual(['a-b', 'a.c', 'a', 'a0', 'b']);
    expect((await b.listChildren('list/', 'a', 2)).names).toEqual(['a0', 'b']);
    expect((await b.listChildren('list/', 'a', 1)).truncated).toBe(true);
  });
});
