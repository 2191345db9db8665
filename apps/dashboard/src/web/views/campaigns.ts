/** Campaigns: each host's step; start from a plan that is shown (dry run) first. */
import type { CampaignDto, CampaignHostPlan, CampaignPlanDto, CampaignStrategy, CreateCampaignRequest, HostSelector } from '@ferry/contracts';
import { api, HttpError } from '../api';
import type { App, View } from '../app';
import { h, replace } from '../dom';
import { ago, duration } from '../format';
import { badge, bar, hostName, vmName } from './common';

/** "elapsed 3m 05s · ETA 1m 40s" while it runs, "took 5m 12s" once it ended. */
export function timingText(c: Pick<CampaignDto, 'state' | 'timing'>): string {
  if (['completed', 'aborted', 'failed'].includes(c.state)) return `took ${duration(c.timing.elapsedMs)}`;
  return `elapsed ${duration(c.timing.elapsedMs)} · ETA ${c.timing.etaMs === null ? 'after the first host' : duration(c.timing.etaMs)}`;
}

const tsText = (t: { xenVersion: string; bitness: number; streamFormat: string }): string => `Xen ${t.xenVersion} ${t.bitness}-bit ${t.streamFormat}`;

/** Dry-run plan: POST /v1/campaigns/plan (falls back to ?dryRun=true). */
export async function planCampaign(req: CreateCampaignRequest): Promise<CampaignPlanDto> {
  try {
    return await api<CampaignPlanDto>('POST', '/v1/campaigns/plan', req);
  } catch (e) {
    if (e instanceof HttpError && (e.status === 404 || e.status === 405)) return api<CampaignPlanDto>('POST', '/v1/campaigns?dryRun=true', req);
    throw e;
  }
}

export function campaignsView(app: App): View {
  const { store } = app;
  const list = h('div', { 'data-testid': 'campaigns' });
  const planBox = h('div.plan', { 'data-testid': 'plan' });

  // ---- the plan form ----
  const scope = h(
    'select',
    { 'data-testid': 'campaign-scope' },
    h('option', { value: 'bitness:32' }, 'every 32-bit host'),
    h('option', { value: 'format:legacy' }, 'every legacy-stream host'),
    h('option', { value: 'ids' }, 'the hosts ticked below'),
  );
  const picks = h('div.picks');
  const strategy = h('select', { 'data-testid': 'campaign-strategy' }, h('option', { value: 'evacuate-and-return' }, 'evacuate and return (live migrations)'), h('option', { value: 'suspend-and-resume' }, 'suspend and resume (via the suspend-store)'));
  const maxHosts = h('input', { type: 'number', min: 1, value: 1, size: 3 });
  const maxMig = h('input', { type: 'number', min: 1, value: 2, size: 3 });
  const onError = h('select', h('option', { value: 'stop' }, 'stop'), h('option', { value: 'continue' }, 'continue with the next host'));
  const name = h('input', { type: 'text', placeholder: 'optional name' });

  let lastPlan: CampaignPlanDto | null = null;

  const request = (): CreateCampaignRequest => {
    let hosts: HostSelector;
    if (scope.value === 'bitness:32') hosts = { bitness: 32 };
    else if (scope.value === 'format:legacy') hosts = { streamFormat: 'legacy' };
    else hosts = { ids: [...picks.querySelectorAll<HTMLInputElement>('input:checked')].map((i) => i.value) };
    return {
      ...(name.value.trim() ? { name: name.value.trim() } : {}),
      hosts,
      strategy: strategy.value as CampaignStrategy,
      maxParallelHosts: Number(maxHosts.value) || 1,
      maxParallelMigrations: Number(maxMig.value) || 1,
      onError: onError.value as 'stop' | 'continue',
    };
  };

  const showPlan = (p: CampaignPlanDto): void => {
    lastPlan = p;
    const start = h(
      'button.primary',
      {
        disabled: !p.feasible || !store.can('admin'),
        title: store.can('admin') ? '' : 'starting a campaign needs an admin token',
        'data-testid': 'campaign-start',
        onclick: () => {
          start.disabled = true;
          api<CampaignDto>('POST', '/v1/campaigns', p.request).then(
            (c) => {
              store.campaigns.set(c.id, c);
              app.toast(`Campaign ${c.name} started`);
              lastPlan = null;
              replace(planBox);
              store.changed();
            },
            (e: unknown) => {
              start.disabled = false;
              app.toast(e instanceof Error ? e.message : String(e), 'error');
            },
          );
        },
      },
      'Start campaign',
    );
    replace(
      planBox,
      h('h3', `Plan (dry run): ${p.hosts.length} host(s), ${p.hosts.reduce((n, x) => n + x.vms.length, 0)} VM move(s)`, p.feasible ? badge('feasible', 'ok') : badge('blocked', 'failed')),
      p.blockers.length
        ? h('ul.blockers', p.blockers.map((b) => h('li.error', `${b.code}${b.hostId ? ` (${hostName(store.hosts, b.hostId)})` : ''}${b.vmId ? ` ${vmName(store.vms, b.vmId)}` : ''}: ${b.message}`)))
        : null,
      h(
        'table.plan-table',
        h('thead', h('tr', h('th', '#'), h('th', 'host'), h('th', 'toolstack'), h('th', 'guests'))),
        h(
          'tbody',
          p.hosts.map((x) =>
            h(
              'tr',
              h('td', String(x.order + 1)),
              h('td', hostName(store.hosts, x.hostId)),
              h('td', `${tsText(x.toolstackBefore)} → ${tsText(x.toolstackAfter)}`),
              h('td', x.vms.length ? x.vms.map((v) => h('div', `${vmName(store.vms, v.vmId)}: ${v.action}${v.parkOn ? ` → park on ${hostName(store.hosts, v.parkOn)}` : ''}`)) : h('span.muted', 'none')),
            ),
          ),
        ),
      ),
      h('div.actions', h('button', { onclick: () => ((lastPlan = null), replace(planBox)) }, 'Discard'), start),
    );
  };

  const form = h(
    'form.campaign-form',
    {
      onsubmit: (e: Event) => {
        e.preventDefault();
        planCampaign(request()).then(showPlan, (err: unknown) => replace(planBox, h('p.error', err instanceof Error ? err.message : String(err))));
      },
    },
    h('label', 'Upgrade ', scope, ' to 64-bit Xen 4.17 (v2 streams)'),
    picks,
    h('label', 'Strategy ', strategy),
    h('label', 'Hosts at a time ', maxHosts),
    h('label', 'Migrations at a time ', maxMig),
    h('label', 'On error ', onError),
    h('label', 'Name ', name),
    h('div.actions', h('button.primary', { type: 'submit', 'data-testid': 'campaign-plan' }, 'Plan (dry run)')),
  );

  const control = (c: CampaignDto, action: 'pause' | 'resume' | 'abort'): void => {
    api<CampaignDto>('POST', `/v1/campaigns/${encodeURIComponent(c.id)}/${action}`, {}).then(
      (x) => {
        if (x && 'state' in x) store.campaigns.set(x.id, x);
        store.changed();
      },
      (e: unknown) => app.toast(e instanceof Error ? e.message : String(e), 'error'),
    );
  };

  const hostRow = (x: CampaignHostPlan): HTMLElement =>
    h(
      'tr',
      { 'data-testid': `campaign-host-${x.hostId}`, 'data-state': x.state ?? 'pending' },
      h('td', String(x.order + 1)),
      h('td', hostName(store.hosts, x.hostId)),
      h('td', `${tsText(x.toolstackBefore)} → ${tsText(x.toolstackAfter)}`),
      h('td', badge(x.state ?? 'pending')),
      h('td', { 'data-testid': `step-time-${x.hostId}` }, x.durationMs === null || x.durationMs === undefined ? '' : `${duration(x.durationMs)}${x.finishedAt ? '' : ' so far'}`),
      h(
        'td',
        x.vms.map((v) => h('span.vmstep', { title: v.error ?? '' }, `${vmName(store.vms, v.vmId)} `, badge(v.state ?? 'pending'), v.parkOn ? h('span.muted', ` @${hostName(store.hosts, v.parkOn)}`) : null)),
      ),
      h('td.error', x.error ?? ''),
    );

  const card = (c: CampaignDto): HTMLElement => {
    const live = ['running', 'paused', 'aborting'].includes(c.state);
    return h(
      'article.campaign',
      { 'data-testid': `campaign-${c.id}`, 'data-state': c.state },
      h(
        'div.mig-head',
        h('strong', c.name),
        h('span.muted', ` ${c.request.strategy} · started ${ago(c.createdAt)}`),
        c.timing ? h('span.muted', { 'data-testid': `campaign-timing-${c.id}` }, ` · ${timingText(c)}`) : null,
        h('span.spacer'),
        badge(c.state),
        c.state === 'running' && store.can('operator') ? h('button.small', { onclick: () => control(c, 'pause') }, 'Pause') : null,
        c.state === 'paused' && store.can('operator') ? h('button.small', { onclick: () => control(c, 'resume') }, 'Resume') : null,
        live && c.state !== 'aborting' && store.can('admin') ? h('button.small.danger', { onclick: () => control(c, 'abort') }, 'Abort') : null,
      ),
      bar(c.counts.hostsDone, c.counts.hostsTotal, `${c.counts.hostsDone}/${c.counts.hostsTotal} hosts done${c.counts.hostsFailed ? `, ${c.counts.hostsFailed} failed` : ''}`),
      h('table.steps-table', h('thead', h('tr', h('th', '#'), h('th', 'host'), h('th', 'toolstack'), h('th', 'step'), h('th', 'time'), h('th', 'guests'), h('th'))), h('tbody', [...c.hosts].sort((a, b) => a.order - b.order).map(hostRow))),
      c.error ? h('p.error', c.error) : null,
    );
  };

  let pickedSig = '';
  return {
    mount: () => h('div.view', h('h1', 'Campaigns'), h('section', h('h2', 'Plan an upgrade'), form, planBox), h('section', h('h2', 'Campaigns'), list)),
    update() {
      // Host checkboxes: rebuilt only when the set of hosts changes (keeps ticks).
      const hosts = [...store.hosts.values()].sort((a, b) => a.id.localeCompare(b.id));
      const sig = hosts.map((x) => `${x.id}:${x.toolstack.bitness}${x.toolstack.streamFormat}`).join(',');
      if (sig !== pickedSig) {
        pickedSig = sig;
        const ticked = new Set([...picks.querySelectorAll<HTMLInputElement>('input:checked')].map((i) => i.value));
        replace(picks, hosts.map((x) => h('label.pick', h('input', { type: 'checkbox', value: x.id, checked: ticked.has(x.id) }), ` ${x.id} (${x.toolstack.bitness}-bit ${x.toolstack.streamFormat})`)));
      }
      const all = [...store.campaigns.values()].sort((a, b) => b.createdAt.localeCompare(a.createdAt));
      replace(list, all.length ? all.map(card) : h('p.muted', 'No campaigns yet.'));
      void lastPlan;
    },
  };
}
