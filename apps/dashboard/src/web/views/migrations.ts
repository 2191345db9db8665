/** Migrations: live progress, rate, ETA, round, downtime; cancel while still possible; throughput chart. */
import { isCancellable, isTerminalPhase, type MigrationDto } from '@ferry/contracts';
import { api } from '../api';
import type { App, View } from '../app';
import { h, replace } from '../dom';
import { ago, bytes, duration, rate } from '../format';
import { areaChart, sparkline } from './chart';
import { throughputSeries } from '../store';
import { PHASE_STEPS, badge, bar, hostName, vmName } from './common';

const terminal0 = (m: MigrationDto): boolean => isTerminalPhase(m.phase);

export function migrationsView(app: App): View {
  const { store } = app;
  const chart = h('div.chart-box', { 'data-testid': 'throughput-chart' });
  const active = h('div', { 'data-testid': 'active-migrations' });
  const recent = h('div', { 'data-testid': 'recent-migrations' });

  const cancel = (m: MigrationDto): void => {
    api<MigrationDto>('POST', `/v1/migrations/${encodeURIComponent(m.id)}/cancel`, {}).then(
      (r) => {
        if (r && typeof r === 'object' && 'phase' in r) store.migrations.set(r.id, r);
        app.toast(`Cancel requested for ${vmName(store.vms, m.vmId)}`);
        store.changed();
      },
      (e: unknown) => app.toast(e instanceof Error ? e.message : String(e), 'error'),
    );
  };

  const steps = (m: MigrationDto): HTMLElement => {
    const phases = m.mode === 'cold' ? PHASE_STEPS.filter((p) => p !== 'precopy') : PHASE_STEPS;
    const idx = phases.indexOf(m.phase);
    return h(
      'ol.steps',
      phases.map((p, i) =>
        h('li', { class: [i < idx || m.phase === 'completed' ? 'done' : '', p === m.phase ? 'current' : '', p === 'committing' ? 'ponr' : ''].join(' '), title: p === 'committing' ? 'point of no return' : p }, p),
      ),
    );
  };

  const row = (m: MigrationDto): HTMLElement => {
    const p = m.progress;
    const src = terminal0(m) ? undefined : store.hosts.get(m.sourceHostId);
    const terminal = isTerminalPhase(m.phase);
    const canCancel = m.cancellable && isCancellable(m.phase, m.cancelRequested);
    const hist = store.rateHistory.get(m.id)?.map((x) => x.rate) ?? [];
    // Stuck: moving but no new figure for 10 s (the agents report at least once a second).
    const lastSeen = Math.max(hist.length ? store.rateHistory.get(m.id)!.at(-1)!.t : 0, Date.parse(m.updatedAt) || 0);
    const quietMs = Date.now() - lastSeen;
    const stuck = !terminal && m.phase !== 'queued' && quietMs > 10_000;
    const downtime = p.downtimeMs !== null ? `${duration(p.downtimeMs)} measured` : p.expectedDowntimeMs !== null ? `~${duration(p.expectedDowntimeMs)} expected` : '-';
    return h(
      'article.migration',
      { 'data-testid': `migration-${m.id}`, 'data-phase': m.phase, 'data-vm': m.vmId, class: stuck ? 'stuck' : '' },
      h(
        'div.mig-head',
        h('strong', vmName(store.vms, m.vmId)),
        h('span', ` ${hostName(store.hosts, m.sourceHostId)} → ${hostName(store.hosts, m.targetHostId ?? m.requestedTargetHostId)}`),
        h('span.muted', ` · ${m.mode}${src ? ` · from ${src.toolstack.bitness}-bit ${src.toolstack.streamFormat}` : ''}${m.bandwidthMiBps ? ` · cap ${m.bandwidthMiBps} MiB/s` : ''}${m.restore ? ` · restore ${m.restore.format === 'legacy' ? `legacy ${m.restore.width}-bit` : 'v2'}` : ''}${m.campaignId ? ' · campaign' : ''}`),
        h('span.spacer'),
        badge(m.phase, m.phase),
        m.cancelRequested && !terminal ? badge('cancel requested', 'warn') : null,
        stuck ? badge(`no progress for ${duration(quietMs)}`, 'failed') : null,
        canCancel && store.can('operator') ? h('button.small.danger', { onclick: () => cancel(m), 'data-testid': `cancel-${m.id}` }, 'Cancel') : null,
        !terminal && !canCancel && m.pointOfNoReturn?.passed ? h('span.muted', { title: 'past the point of no return' }, ' committed') : null,
      ),
      steps(m),
      terminal
        ? null
        : h(
            'div.mig-progress',
            bar(p.bytesDone, p.bytesTotal, p.bytesTotal ? `${bytes(p.bytesDone)} / ${bytes(p.bytesTotal)}` : 'waiting', `progress-${m.id}`),
            sparkline(hist.slice(-60)),
          ),
      h(
        'dl.figures',
        h('dt', 'rate'),
        h('dd', rate(p.rate)),
        h('dt', 'ETA'),
        h('dd', terminal ? '-' : duration(p.etaMs)),
        h('dt', 'round'),
        h('dd', { 'data-testid': `round-${m.id}` }, p.roundBytesTotal && !terminal ? `${p.round}: ${bytes(p.roundBytesDone)} of ${bytes(p.roundBytesTotal)}` : String(p.round)),
        h('dt', 'dirty'),
        h('dd', rate(p.dirtyRate)),
        h('dt', 'downtime'),
        h('dd', downtime),
        h('dt', 'attempt'),
        h('dd', `${m.attempt}/${m.maxAttempts}`),
        h('dt', terminal ? 'finished' : 'started'),
        h('dd', terminal ? ago(m.finishedAt ?? m.updatedAt) : ago(m.startedAt ?? m.createdAt)),
      ),
      m.waitingReason && m.phase === 'queued' ? h('p.muted', `waiting: ${m.waitingReason}`) : null,
      m.nextAttemptAt && !terminal ? h('p.muted', `next attempt ${new Date(m.nextAttemptAt).toLocaleTimeString()}`) : null,
      m.error ? h('p.error', `${m.error.code}: ${m.error.message}`) : null,
    );
  };

  return {
    mount: () =>
      h(
        'div.view',
        h('h1', 'Migrations'),
        h('section', h('h2', 'Throughput (all migrations, last 10 minutes)'), chart),
        h('section', h('h2', 'Moving'), active),
        h('section', h('h2', 'Finished'), recent),
      ),
    update() {
      const all = [...store.migrations.values()].sort((a, b) => b.createdAt.localeCompare(a.createdAt));
      const act = all.filter((m) => !isTerminalPhase(m.phase));
      const done = all.filter((m) => isTerminalPhase(m.phase)).slice(0, 50);
      const last = store.samples[store.samples.length - 1];
      const width = Math.max(480, Math.round(chart.clientWidth - 20) || 960);
      replace(chart, areaChart(throughputSeries(store, 10 * 60_000, 2000), { width }), h('p.muted', `now ${rate(last?.rate ?? 0)} across ${last?.active ?? 0} migration(s)`));
      replace(active, act.length ? act.map(row) : h('p.muted', 'Nothing is moving.'));
      replace(recent, done.length ? done.map(row) : h('p.muted', 'None yet.'));
    },
  };
}
