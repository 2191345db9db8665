import { afterAll, expect, it } from 'vitest';
import type { FerryEvent, MigrationDto } from '@ferry/contracts';
import { V2_64, VIEWER, World, api, guest, until } from './harness';

const w = new World();
afterAll(() => w.close());

async function collect(url: string, path: string, headers: Record<string, string>, stopWhen: (e: FerryEvent[]) => boolean): Promise<FerryEvent[]> {
  const ctrl = new AbortController();
  const res = await fetch(url + path, { headers: { authorization: `Bearer ${VIEWER}`, ...headers }, signal: ctrl.signal });
  expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
  const events: FerryEvent[] = [];
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  let buf = '';
  const timer = setTimeout(() => ctrl.abort(), 15_000);
  try {
    while (!stopWhen(events)) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i: number;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const msg = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const data = msg.split('\n').find((l) => l.startsWith('data: '));
        const type = msg.split('\n').find((l) => l.startsWith('event: '));
        if (data && type !== 'event: hello') events.push(JSON.parse(data.slice(6)) as FerryEvent);
      }
    }
  } finally {
    clearTimeout(timer);
    ctrl.abort();
  }
  return events;
}

it('GET /v1/events streams every state change and progress tick; Last-Event-ID resumes', async () => {
  const { url } = await w.cp();
  expect((await api(url, '/v1/events', { token: null })).status).toBe(401);
  await w.agent(url, { hostId: 'a', toolstack: V2_64, guests: [guest('vm-e')], rounds: 3 });
  await w.agent(url, { hostId: 'b', toolstack: V2_64 });
  const live = collect(url, '/v1/events?entity=migration', {}, (es) => es.some((e) => (e.data as MigrationDto).phase === 'completed'));
  await new Promise((r) => setTimeout(r, 200));
  const r = await api<MigrationDto>(url, '/v1/migrations', { body: { vm: 'vm-e', mode: 'live' }, headers: { 'idempotency-key': 'ev' } });
  const events = await live;
  const phases = events.map((e) => (e.data as MigrationDto).phase);
  expect(events.every((e) => e.entity === 'migration' && e.entityId === r.body.id)).toBe(true);
  expect(phases[0]).toBe('queued');
  expect(phases).toContain('precopy');
  expect(events.filter((e) => e.type === 'migration.progress').length).toBeGreaterThanOrEqual(3);
  expect(phases.at(-1)).toBe('completed');
  // resume from the first event: the backlog is replayed
  const first = events[0]!.id;
  const replay = await collect(url, `/v1/events?entity=migration`, { 'last-event-id': first }, (es) => es.some((e) => (e.data as MigrationDto).phase === 'completed'));
  expect(replay[0]!.id).toBe(events[1]!.id);
  await until('done', async () => true);
});

it('an idle stream gets a keep-alive comment every FERRY_SSE_KEEPALIVE_MS (15 s by default), and the client ignores it', async () => {
  const { url } = await w.cp({ FERRY_SSE_KEEPALIVE_MS: '100' });
  const ctrl = new AbortController();
  const res = await fetch(`${url}/v1/events?entity=campaign&id=none`, { headers: { authorization: `Bearer ${VIEWER}` }, signal: ctrl.signal });
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  let text = '';
  const timer = setTimeout(() => ctrl.abort(), 10_000);
  try {
    while ((text.match(/^: keep-alive$/gm) ?? []).length < 2) {
      const { value, done } = await reader.read();
      if (done) break;
      text += dec.decode(value, { stream: true });
    }
  } finally {
    clearTimeout(timer);
    ctrl.abort();
  }
  expect(text).toMatch(/^event: hello$/m);
  // whole comment blocks, never inside a message
  expect(text.split('\n\n').filter((b) => b.includes('keep-alive')).every((b) => b.trim() === ': keep-alive')).toBe(true);
});
