/**
 * Ferry dashboard: sign-in, navigation, one SSE connection that keeps the store current.
 * Views: fleet, migrations (with throughput chart), campaigns, checkpoints, stream inspector.
 */
import type { CampaignDto, FerryEvent, HostDto, MigrationDto, Role, VmDto } from '@ferry/contracts';
import { HttpError, api, getToken, listAll, setToken } from './api';
import type { App, View } from './app';
import { h, replace } from './dom';
import { rate } from './format';
import { connectSse, type SseStatus } from './sse';
import { Store } from './store';
import { campaignsView } from './views/campaigns';
import { checkpointsView } from './views/checkpoints';
import { fleetView } from './views/fleet';
import { inspectorView } from './views/inspector';
import { migrationsView } from './views/migrations';
import './style.css';

const ROUTES: Record<string, { title: string; make: (app: App) => View }> = {
  fleet: { title: 'Fleet', make: fleetView },
  migrations: { title: 'Migrations', make: migrationsView },
  campaigns: { title: 'Campaigns', make: campaignsView },
  checkpoints: { title: 'Checkpoints', make: checkpointsView },
  inspector: { title: 'Stream inspector', make: inspectorView },
};

const store = new Store();
const root = document.getElementById('app')!;

function takeTokenFromUrl(): void {
  const u = new URL(location.href);
  const t = u.searchParams.get('token');
  if (t) {
    setToken(t);
    u.searchParams.delete('token');
    history.replaceState(null, '', u.pathname + u.search + u.hash);
  }
}

function signIn(message?: string): void {
  const input = h('input', { type: 'password', placeholder: 'API token', autocomplete: 'off', 'data-testid': 'token-input', size: 48 });
  const form = h(
    'form.signin',
    {
      onsubmit: (e: Event) => {
        e.preventDefault();
        const t = input.value.trim();
        if (!t) return;
        api('GET', '/v1/hosts', undefined, t).then(
          () => {
            setToken(t);
            start();
          },
          (err: unknown) => signIn(err instanceof Error ? err.message : String(err)),
        );
      },
    },
    h('h1', 'Ferry'),
    h('p', 'Sign in with an API token (viewer, operator or admin). `npm start` prints one.'),
    input,
    h('button', { type: 'submit', 'data-testid': 'signin' }, 'Sign in'),
    message ? h('p.error', message) : null,
  );
  replace(root, form);
  input.focus();
}

let sse: { stop: () => void } | null = null;

function start(): void {
  const token = getToken();
  if (!token) return signIn();
  const status = h('span.status', { 'data-testid': 'sse-status' }, 'connecting');
  const summary = h('span.summary');
  const toasts = h('div.toasts');
  const nav = h('nav');
  const main = h('main');
  const app: App = {
    store,
    toast(text, kind = 'ok') {
      const t = h(`div.toast.${kind}`, text);
      toasts.appendChild(t);
      setTimeout(() => t.remove(), kind === 'error' ? 8000 : 4000);
    },
    navigate(r) {
      location.hash = `#/${r}`;
    },
  };
  const signOut = h('button.link', { onclick: () => (setToken(null), sse?.stop(), (store.role = null), signIn()) }, 'Sign out');
  const roleBadge = h('span.role', { 'data-testid': 'role' });
  const renderRole = (): void => {
    roleBadge.textContent = store.role ?? '';
    roleBadge.title = store.role === 'viewer' ? 'read-only: actions are hidden' : '';
  };
  replace(root, h('header', h('strong.brand', 'Ferry'), nav, h('span.spacer'), summary, status, roleBadge, signOut), main, toasts);

  let current: View | null = null;
  let currentRoute = '';
  const route = (): void => {
    const name = (location.hash.replace(/^#\/?/, '').split('/')[0] || 'fleet') as string;
    const r = ROUTES[name] ? name : 'fleet';
    if (r === currentRoute) return;
    current?.unmount?.();
    currentRoute = r;
    current = ROUTES[r]!.make(app);
    replace(main, current.mount());
    current.update();
    replace(nav, ...Object.entries(ROUTES).map(([k, v]) => h('a', { href: `#/${k}`, class: k === r ? 'active' : '', 'data-testid': `nav-${k}` }, v.title)));
    document.title = `Ferry - ${ROUTES[r]!.title}`;
  };
  window.onhashchange = route;
  route();

  const renderSummary = (): void => {
    const hosts = [...store.hosts.values()];
    const online = hosts.filter((x) => x.state === 'online').length;
    const active = [...store.migrations.values()].filter((m) => !['completed', 'failed', 'cancelled'].includes(m.phase)).length;
    const last = store.samples[store.samples.length - 1];
    summary.textContent = `${online}/${hosts.length} hosts online · ${store.vms.size} VMs · ${active} moving · ${rate(last?.rate ?? 0)}`;
  };
  store.subscribe(() => {
    renderSummary();
    current?.update();
  });

  const setStatus = (s: SseStatus, detail?: string): void => {
    status.textContent = s === 'live' ? 'live' : s;
    status.className = `status ${s}`;
    status.title = detail ?? '';
    if (s === 'unauthorized') {
      setToken(null);
      signIn('The token was refused (401/403). Sign in again.');
    }
  };

  sse?.stop();
  sse = connectSse({
    url: '/v1/events',
    token,
    onStatus: setStatus,
    onOpen: async () => {
      // Snapshot on every (re)connect; from here on, events keep it current.
      const [hosts, vms, migrations, campaigns] = await Promise.all([
        listAll<HostDto>('/v1/hosts'),
        listAll<VmDto>('/v1/vms'),
        Promise.all([listAll<MigrationDto>('/v1/migrations?active=true'), api<{ items: MigrationDto[] }>('GET', '/v1/migrations?limit=100')]).then(([a, r]) => [
          ...new Map([...r.items, ...a].map((m) => [m.id, m])).values(),
        ]),
        listAll<CampaignDto>('/v1/campaigns').catch(() => [] as CampaignDto[]),
      ]);
      store.load({ hosts, vms, migrations, campaigns });
      // What this token may do; a control plane without /v1/me (older) gets every button, as before.
      store.role = await api<{ role: Role }>('GET', '/v1/me').then(
        (r) => r.role,
        (e: unknown) => (e instanceof HttpError && e.status === 404 ? 'admin' : store.role),
      );
      renderRole();
      store.changed();
    },
    onMessage: (m) => {
      if (!m.data || m.event === 'ping' || m.event === 'hello') return;
      try {
        const ev = JSON.parse(m.data) as FerryEvent;
        if ('hello' in ev) return;
        if (!ev.entity) {
          if (typeof (ev as { id?: unknown }).id !== 'string') return;
          // Tolerate servers that send the DTO alone, with the type in `event:`.
          const [entity] = m.event.split('.');
          const d = ev as unknown as { id: string };
          store.apply({ id: m.id ?? '', type: m.event as FerryEvent['type'], at: new Date().toISOString(), entity: entity as FerryEvent['entity'], entityId: d.id, data: ev as unknown as FerryEvent['data'] });
        } else store.apply(ev);
      } catch {
        /* ignore malformed */
      }
    },
  });
}

// One client-side sample per second for the throughput chart (no server polling).
setInterval(() => {
  store.sample();
  store.changed();
}, 1000);

takeTokenFromUrl();
start();
