/** Checkpoints in the suspend-store: source format, size, checksum, download. */
import { getToken } from '../api';
import type { App, View } from '../app';
import { h, replace } from '../dom';
import { ago, bytes } from '../format';
import { badge } from './common';

/** The suspend-store's CheckpointView (apps/suspend-store checkpoint.model.ts), as listed. */
export interface StoredCheckpoint {
  id: string;
  vm: string;
  created: string;
  size: number;
  sha256: string;
  source: { format: 'v2' | 'legacy'; framing: string; byteOrder: string; guest: string; guestWidth?: number; width?: number; widthSource?: string; size: number; sha256: string; xenVersion?: string };
  stats?: { pages: number; vcpus: number; records: number };
  labels?: Record<string, string>;
}

/** The dashboard server proxies /store/* to the suspend-store (same token under `ferry up`). */
const STORE = '/store/v1/checkpoints';

export function checkpointsView(app: App): View {
  const { store } = app;
  const body = h('div', { 'data-testid': 'checkpoints' });
  let items: StoredCheckpoint[] | null = null;
  let error: string | null = null;
  let loading = false;
  let lastSig = '';

  const load = async (): Promise<void> => {
    loading = true;
    const out: StoredCheckpoint[] = [];
    let cursor: string | null = null;
    try {
      do {
        const res = await fetch(`${STORE}?limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, { headers: { Authorization: `Bearer ${getToken() ?? ''}` } });
        if (!res.ok) throw new Error(`suspend-store: ${res.status} ${(await res.text()).slice(0, 200)}`);
        const page = (await res.json()) as { items: StoredCheckpoint[]; nextCursor: string | null };
        out.push(...page.items);
        cursor = page.nextCursor;
      } while (cursor);
      items = out.sort((a, b) => b.created.localeCompare(a.created));
      error = null;
    } catch (e) {
      error = e instanceof Error ? e.message : String(e);
    } finally {
      loading = false;
      store.changed();
    }
  };

  const download = (c: StoredCheckpoint, query = ''): void => {
    // Streams the image through the page with the bearer header (a plain link cannot carry it).
    fetch(`${STORE}/${encodeURIComponent(c.id)}${query}`, { headers: { Authorization: `Bearer ${getToken() ?? ''}` } })
      .then(async (res) => {
        if (!res.ok) throw new Error(`download ${c.id}: ${res.status} ${(await res.text()).slice(0, 200)}`);
        const blob = await res.blob();
        const a = h('a', { href: URL.createObjectURL(blob), download: `${c.id}${query ? '.legacy' : ''}.xen` });
        document.body.appendChild(a);
        a.click();
        a.remove();
        setTimeout(() => URL.revokeObjectURL(a.href), 60_000);
      })
      .catch((e: unknown) => app.toast(e instanceof Error ? e.message : String(e), 'error'));
  };

  return {
    mount() {
      void load();
      return h('div.view', h('h1', 'Checkpoints', h('button.small', { onclick: () => void load() }, 'Reload')), body);
    },
    update() {
      // New checkpoints appear with vm.updated events (latestCheckpoint): reload then.
      const sig = [...store.vms.values()].map((v) => v.latestCheckpoint?.id ?? '').join(',');
      if (sig !== lastSig && items !== null && !loading) {
        lastSig = sig;
        void load();
      }
      if (items === null && !error) return replace(body, h('p.muted', 'Loading…'));
      replace(
        body,
        error ? h('p.error', error) : null,
        items && items.length === 0 ? h('p.muted', 'The suspend-store holds no checkpoints.') : null,
        items && items.length
          ? h(
              'table.checkpoints',
              h('thead', h('tr', h('th', 'checkpoint'), h('th', 'VM'), h('th', 'created'), h('th', 'source format'), h('th', 'guest'), h('th', 'size'), h('th', 'sha256'), h('th', 'download'))),
              h(
                'tbody',
                items.map((c) =>
                  h(
                    'tr',
                    { 'data-testid': `checkpoint-${c.id}` },
                    h('td.mono', c.id),
                    h('td', store.vms.get(c.vm)?.name ?? c.vm),
                    h('td', ago(c.created)),
                    h('td', badge(c.source.format === 'legacy' ? `legacy ${c.source.width ?? '?'}-bit` : `v2 ${c.source.framing}`, c.source.format), c.source.widthSource ? h('span.muted', ` ${c.source.widthSource}`) : null),
                    h('td', `${c.source.guest.toUpperCase()}${c.source.guestWidth ? ` ${c.source.guestWidth}-bit` : ''} · ${c.source.byteOrder}`),
                    h('td', bytes(c.size)),
                    h('td.mono', { title: c.sha256 }, `${c.sha256.slice(0, 16)}…`),
                    h(
                      'td',
                      h('button.small', { onclick: () => download(c) }, 'v2'),
                      ' ',
                      h('button.small', { onclick: () => download(c, '?format=legacy&width=32'), title: 'converted for a 32-bit legacy toolstack' }, 'legacy 32'),
                    ),
                  ),
                ),
              ),
            )
          : null,
      );
    },
  };
}
