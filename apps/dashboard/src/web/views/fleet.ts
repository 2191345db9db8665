/** Fleet: hosts grouped by toolstack bitness and stream format, their VMs, states and capacity. */
import { canReceive, type HostDto, type MigrationMode, type MigrationDto, type VmDto } from '@ferry/contracts';
import { api, getToken, newKey } from '../api';
import type { App, View } from '../app';
import { h, replace } from '../dom';
import { ago, mib, shortDigest } from '../format';
import { badge, bar, groupKey } from './common';

export function fleetView(app: App): View {
  const { store } = app;
  const live = h('div.groups', { 'data-testid': 'fleet' });
  const dialog = h('dialog.migrate');

  const openMigrate = (vm: VmDto): void => {
    const src = vm.hostId ? store.hosts.get(vm.hostId) : undefined;
    const guest = { type: vm.type, ...(vm.guestWidth ? { guestWidth: vm.guestWidth } : {}) };
    const targets = [...store.hosts.values()]
      .filter((t) => t.id !== vm.hostId)
      .map((t) => ({ t, c: canReceive(t.toolstack, guest), usable: t.state === 'online' && !t.draining && !t.maintenance }))
      .sort((a, b) => a.t.id.localeCompare(b.t.id));
    const target = h(
      'select',
      { name: 'target', 'data-testid': 'migrate-target' },
      h('option', { value: '' }, 'scheduler picks a compatible host'),
      targets.map(({ t, c, usable }) =>
        h(
          'option',
          { value: t.id, disabled: !c.ok || !usable },
          `${t.id} (${t.toolstack.bitness}-bit ${t.toolstack.streamFormat}, Xen ${t.toolstack.xenVersion})${c.ok ? (c.restore.format === 'legacy' ? ' - down-converts to legacy' : '') : ` - ${c.reason}`}${usable ? '' : ` - ${t.state}${t.draining ? ', draining' : ''}${t.maintenance ? ', maintenance' : ''}`}`,
        ),
      ),
    );
    const mode = h('select', { name: 'mode', 'data-testid': 'migrate-mode' }, h('option', { value: 'live' }, 'live (pre-copy)'), h('option', { value: 'cold' }, 'cold (paused)'));
    const bw = h('input', { type: 'number', min: 1, placeholder: 'unlimited', name: 'bandwidth' });
    const err = h('p.error');
    const form = h(
      'form',
      {
        method: 'dialog',
        onsubmit: (e: Event) => {
          e.preventDefault();
          const body = { vm: vm.id, mode: mode.value as MigrationMode, ...(target.value ? { target: target.value } : {}), ...(bw.value ? { bandwidth: Number(bw.value) } : {}) };
          api<MigrationDto>('POST', '/v1/migrations', body, getToken(), { 'Idempotency-Key': newKey() }).then(
            (m) => {
              store.migrations.set(m.id, m);
              dialog.close();
              app.toast(`Migration of ${vm.name} queued`);
              app.navigate('migrations');
            },
            (e2: unknown) => (err.textContent = e2 instanceof Error ? e2.message : String(e2)),
          );
        },
      },
      h('h3', `Migrate ${vm.name}`),
      h('p.muted', `${vm.type.toUpperCase()}${vm.guestWidth ? ` ${vm.guestWidth}-bit` : ''}, ${mib(vm.memoryMiB)}, now on ${src?.id ?? vm.hostId ?? '-'}`),
      h('label', 'Target ', target),
      h('label', 'Mode ', mode),
      h('label', 'Bandwidth cap (MiB/s) ', bw),
      err,
      h('div.actions', h('button', { type: 'button', onclick: () => dialog.close() }, 'Cancel'), h('button.primary', { type: 'submit', 'data-testid': 'migrate-submit' }, 'Start migration')),
    );
    replace(dialog, form);
    dialog.showModal();
  };

  const act = (what: string, method: string, path: string, body?: unknown): void => {
    api(method, path, body).then(
      () => app.toast(what),
      (e: unknown) => app.toast(e instanceof Error ? e.message : String(e), 'error'),
    );
  };

  // A finished campaign may leave its id on a host until the host's next update: trust the campaign's state.
  const liveCampaign = (id: string): boolean => {
    const c = store.campaigns.get(id);
    return !c || ['running', 'paused', 'aborting'].includes(c.state);
  };

  const hostActions = (host: HostDto): HTMLElement | null =>
    !store.can('operator')
      ? null
      : h(
      'span.host-actions',
      host.draining
        ? h('button.small', { onclick: () => act(`${host.id}: no longer draining`, 'DELETE', `/v1/hosts/${encodeURIComponent(host.id)}/drain`) }, 'Undrain')
        : h(
            'button.small',
            {
              title: 'stop placing work here and live-migrate its guests away',
              onclick: () => {
                if (confirm(`Drain ${host.id}? Its guests are live-migrated to compatible hosts.`)) act(`${host.id}: draining`, 'POST', `/v1/hosts/${encodeURIComponent(host.id)}/drain`, { evacuate: true });
              },
            },
            'Drain',
          ),
      h(
        'button.small',
        { onclick: () => act(`${host.id}: maintenance ${host.maintenance ? 'off' : 'on'}`, 'POST', `/v1/hosts/${encodeURIComponent(host.id)}/maintenance`, { enabled: !host.maintenance }) },
        host.maintenance ? 'End maintenance' : 'Maintenance',
      ),
    );

  const hostCard = (host: HostDto): HTMLElement => {
    const vms = [...store.vms.values()].filter((v) => v.hostId === host.id).sort((a, b) => a.name.localeCompare(b.name));
    const flags = [host.draining ? badge('draining', 'warn') : null, host.maintenance ? badge('maintenance', 'warn') : null, host.campaignId && liveCampaign(host.campaignId) ? badge('in campaign', 'info') : null];
    return h(
      'article.host',
      { 'data-testid': `host-${host.id}`, 'data-bitness': host.toolstack.bitness },
      h('div.host-head', h('strong', host.id), host.hostname !== host.id ? h('span.muted', ` ${host.hostname}`) : null, h('span.spacer'), badge(host.state), ...flags, hostActions(host)),
      h('div.muted', `Xen ${host.toolstack.xenVersion} · ${host.toolstack.bitness}-bit dom0 · ${host.toolstack.streamFormat} stream · ${host.byteOrder}-endian · heartbeat ${ago(host.lastHeartbeatAt)}`),
      h(
        'div.capacity',
        h('span', 'memory'),
        bar(host.used.memoryMiB, host.capacity.memoryMiB, `${mib(host.used.memoryMiB)} / ${mib(host.capacity.memoryMiB)}`),
        h('span', 'guests'),
        bar(host.used.guests, host.capacity.maxGuests, `${host.used.guests} / ${host.capacity.maxGuests}`),
      ),
      vms.length === 0
        ? h('p.muted', 'no guests')
        : h(
            'table.vms',
            h('thead', h('tr', h('th', 'VM'), h('th', 'type'), h('th', 'memory'), h('th', 'vCPUs'), h('th', 'state'), h('th', 'memory digest'), h('th'))),
            h(
              'tbody',
              vms.map((vm) =>
                h(
                  'tr',
                  { 'data-testid': `vm-${vm.id}` },
                  h('td', vm.name),
                  h('td', `${vm.type.toUpperCase()}${vm.guestWidth ? ` ${vm.guestWidth}` : ''}`),
                  h('td', mib(vm.memoryMiB)),
                  h('td', String(vm.vcpus)),
                  h('td', badge(vm.state)),
                  h('td.mono', { title: vm.memoryDigest ?? '' }, shortDigest(vm.memoryDigest)),
                  h(
                    'td.actions-cell',
                    vm.state === 'running' && !vm.activeOperationId && store.can('operator')
                      ? [
                          h('button.small', { onclick: () => openMigrate(vm), 'data-testid': `migrate-${vm.id}` }, 'Migrate'),
                          ' ',
                          h('button.small', { title: 'save it into the suspend-store', onclick: () => act(`suspending ${vm.name}`, 'POST', `/v1/vms/${encodeURIComponent(vm.id)}/suspend`, {}) }, 'Suspend'),
                        ]
                      : null,
                  ),
                ),
              ),
            ),
          ),
    );
  };

  return {
    mount: () => h('div.view', h('h1', 'Fleet'), live, dialog),
    update() {
      const groups = new Map<string, HostDto[]>();
      for (const host of store.hosts.values()) {
        const k = groupKey(host);
        if (!groups.has(k)) groups.set(k, []);
        groups.get(k)!.push(host);
      }
      const keys = [...groups.keys()].sort();
      const homeless = [...store.vms.values()].filter((v) => !v.hostId);
      replace(
        live,
        keys.length === 0 ? h('p.muted', 'No hosts registered yet.') : null,
        keys.map((k) => {
          const hosts = groups.get(k)!.sort((a, b) => a.id.localeCompare(b.id));
          const mem = hosts.reduce((a, x) => [a[0]! + x.used.memoryMiB, a[1]! + x.capacity.memoryMiB], [0, 0]);
          return h(
            'div.group',
            { 'data-testid': `group-${k.replace(/[^a-z0-9]+/gi, '-')}` },
            h('h2', k, h('span.muted', ` ${hosts.length} host${hosts.length === 1 ? '' : 's'} · ${mib(mem[0]!)} of ${mib(mem[1]!)} used`)),
            h('div.hosts', hosts.map(hostCard)),
          );
        }),
        homeless.length
          ? h(
              'div.group',
              h('h2', 'Suspended (in the suspend-store)'),
              h(
                'ul',
                homeless.map((v) =>
                  h(
                    'li',
                    `${v.name} · ${mib(v.memoryMiB)} · ${v.state}${v.latestCheckpoint ? ` · checkpoint ${v.latestCheckpoint.id}` : ''} `,
                    v.state === 'suspended' && store.can('operator') ? h('button.small', { onclick: () => act(`resuming ${v.name}`, 'POST', `/v1/vms/${encodeURIComponent(v.id)}/resume`, {}) }, 'Resume') : null,
                  ),
                ),
              ),
            )
          : null,
      );
    },
  };
}
