/**
 * Checkpoints, from the control plane (GET /v1/checkpoints): source format, size, what the store's
 * retention will do to each, and for operators download, resume from it, and delete.
 */
import { canReceive, type CheckpointDownloadLinkDto, type CheckpointDto, type CheckpointPage, type OperationDto, type RetentionPolicyDto } from '@ferry/contracts';
import { api } from '../api';
import type { App, View } from '../app';
import { h, replace } from '../dom';
import { ago, bytes, duration, mib } from '../format';
import { badge } from './common';

const ALL = '';
/** What a host not upgraded yet runs: a download converted for it is offered when the guest fits (canReceive). */
const LEGACY32 = { xenVersion: '4.4', bitness: 32, streamFormat: 'legacy' } as const;

export function checkpointsView(app: App): View {
  const { store } = app;
  const body = h('div', { 'data-testid': 'checkpoints' });
  const dialog = h('dialog.resume');
  const vmFilter = h('select', { 'data-testid': 'checkpoints-vm', onchange: () => void load() }, h('option', { value: ALL }, 'all VMs'));
  let items: CheckpointDto[] | null = null;
  let policy: RetentionPolicyDto | null = null;
  let error: string | null = null;
  let loading = false;
  let lastSig = '';

  const load = async (): Promise<void> => {
    loading = true;
    const vm = vmFilter.value;
    const out: CheckpointDto[] = [];
    try {
      for (let cursor: string | null = null; ; ) {
        const page: CheckpointPage = await api<CheckpointPage>(
          'GET',
          `/v1/checkpoints?limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}${vm ? `&vm=${encodeURIComponent(vm)}` : ''}`,
        );
        policy = page.retentionPolicy;
        out.push(...page.items);
        cursor = page.nextCursor;
        if (!cursor) break;
      }
      items = out;
      error = null;
    } catch (e) {
      error = e instanceof Error ? e.message : String(e);
    } finally {
      loading = false;
      store.changed();
    }
  };

  const fail = (e: unknown): void => app.toast(e instanceof Error ? e.message : String(e), 'error');

  /** The browser downloads through a short-lived signed link, streaming to disk (a Blob would hold the image in memory). */
  const download = (c: CheckpointDto, legacy?: '32' | '64'): void => {
    api<CheckpointDownloadLinkDto>('POST', `/v1/checkpoints/${encodeURIComponent(c.id)}/download-link${legacy ? `?format=legacy&width=${legacy}` : ''}`).then((link) => {
      const a = h('a', { href: link.url, download: `${c.id}.${legacy ? `legacy${legacy}` : 'v2'}`, 'data-testid': `download-link-${c.id}` });
      document.body.appendChild(a);
      a.click();
      a.remove();
    }, fail);
  };

  const remove = (c: CheckpointDto): void => {
    const vm = store.vms.get(c.vmId)?.name ?? c.vmId;
    if (!confirm(`Delete checkpoint ${c.id} of ${vm} (${ago(c.createdAt)})? Its image is removed from the suspend-store; this cannot be undone.`)) return;
    api('DELETE', `/v1/checkpoints/${encodeURIComponent(c.id)}`).then(() => {
      app.toast(`Deleted checkpoint ${c.id}`);
      void load();
    }, fail);
  };

  const openResume = (c: CheckpointDto): void => {
    const vm = store.vms.get(c.vmId);
    const spec = c.vm ?? (vm ? { type: vm.type, ...(vm.guestWidth ? { guestWidth: vm.guestWidth } : {}) } : null);
    const hosts = [...store.hosts.values()].sort((a, b) => a.id.localeCompare(b.id));
    const host = h(
      'select',
      { name: 'host', 'data-testid': 'resume-host' },
      h('option', { value: '' }, 'scheduler picks a compatible host'),
      hosts.map((t) => {
        const ok = spec ? canReceive(t.toolstack, spec) : null;
        const usable = t.state === 'online';
        return h('option', { value: t.id, disabled: !usable || (ok !== null && !ok.ok) }, `${t.id} (${t.toolstack.bitness}-bit ${t.toolstack.streamFormat})${ok && !ok.ok ? ` - ${ok.reason}` : ''}${usable ? '' : ` - ${t.state}`}`);
      }),
    );
    const err = h('p.error');
    const form = h(
      'form',
      {
        method: 'dialog',
        onsubmit: (e: Event) => {
          e.preventDefault();
          api<OperationDto>('POST', `/v1/vms/${encodeURIComponent(c.vmId)}/resume`, { checkpointId: c.id, ...(host.value ? { host: host.value } : {}) }).then(
            (op) => {
              store.operations.set(op.id, op);
              dialog.close();
              app.toast(`Resuming ${vm?.name ?? c.vmId} from ${c.id}`);
              void load();
            },
            (e2: unknown) => (err.textContent = e2 instanceof Error ? e2.message : String(e2)),
          );
        },
      },
      h('h3', `Resume ${vm?.name ?? c.vmId} from ${c.id}`),
      h('p.muted', `Saved ${ago(c.createdAt)} on ${c.sourceHostId}${c.latest ? ' (its latest checkpoint)' : ' (not its latest: the guest comes back as it was then)'}`),
      h('label', 'Host ', host),
      err,
      h('div.actions', h('button', { type: 'button', onclick: () => dialog.close() }, 'Cancel'), h('button.primary', { type: 'submit', 'data-testid': 'resume-submit' }, 'Resume')),
    );
    replace(dialog, form);
    dialog.showModal();
  };

  const retention = (c: CheckpointDto): HTMLElement => {
    const r = c.retention;
    const label = r.state === 'expiring' ? 'expiring' : r.state === 'unknown' ? 'unknown' : r.expiresAt ? `until ${new Date(r.expiresAt).toLocaleDateString()}` : r.newerUntilRemoval !== null ? `${r.newerUntilRemoval} more` : 'kept';
    return h('span', { title: r.summary, 'data-testid': `retention-${c.id}` }, badge(label, r.state === 'expiring' ? 'warn' : r.state === 'unknown' ? 'info' : 'ok'));
  };

  const actions = (c: CheckpointDto): HTMLElement => {
    const vm = store.vms.get(c.vmId);
    const op = store.can('operator');
    const why = c.inUseBy ? `a resume (${c.inUseBy}) reads it` : c.onlyImageOfSuspendedVm ? 'the only image of a suspended VM: deleting it would lose the VM' : '';
    return h(
      'td.actions-cell',
      op ? h('button.small', { onclick: () => download(c), 'data-testid': `download-${c.id}` }, 'Download') : null,
      op && c.vm && canReceive(LEGACY32, c.vm).ok ? [' ', h('button.small', { onclick: () => download(c, '32'), title: 'converted for a 32-bit legacy toolstack' }, 'legacy 32')] : null,
      op && vm?.state === 'suspended' ? [' ', h('button.small', { onclick: () => openResume(c), 'data-testid': `resume-${c.id}` }, 'Resume')] : null,
      op ? [' ', h('button.small.danger', { onclick: () => remove(c), disabled: !!why, title: why || 'delete from the suspend-store', 'data-testid': `delete-${c.id}` }, 'Delete')] : null,
    );
  };

  const policyLine = (): HTMLElement =>
    h(
      'p.muted',
      { 'data-testid': 'retention-policy' },
      policy
        ? policy.keepLast === null && policy.maxAgeMs === null
          ? 'Store retention: none (checkpoints are kept until deleted).'
          : `Store retention: ${[policy.keepLast !== null ? `keep the last ${policy.keepLast} per VM` : '', policy.maxAgeMs !== null ? `remove after ${duration(policy.maxAgeMs)}` : ''].filter(Boolean).join(', ')}; next pass ${new Date(policy.nextPassAt).toLocaleTimeString()}.`
        : 'Store retention: unknown (the suspend-store did not answer).',
    );

  return {
    mount() {
      void load();
      return h('div.view', h('h1', 'Checkpoints', ' ', vmFilter, h('button.small', { onclick: () => void load() }, 'Reload')), body, dialog);
    },
    update() {
      // The VM filter follows the fleet (keeping the choice).
      const ids = [...store.vms.keys()].sort();
      if (vmFilter.options.length !== ids.length + 1) {
        const chosen = vmFilter.value;
        replace(vmFilter, h('option', { value: ALL }, 'all VMs'), ids.map((id) => h('option', { value: id }, store.vms.get(id)?.name ?? id)));
        vmFilter.value = ids.includes(chosen) ? chosen : ALL;
      }
      // New, resumed and deleted checkpoints show up in VM and checkpoint events: reload then.
      const sig = `${store.checkpointEvents}|${[...store.vms.values()].map((v) => `${v.latestCheckpoint?.id ?? ''}:${v.state}`).join(',')}`;
      if (sig !== lastSig && items !== null && !loading) {
        lastSig = sig;
        void load();
      }
      if (items === null && !error) return replace(body, h('p.muted', 'Loading…'));
      replace(
        body,
        error ? h('p.error', error) : null,
        policyLine(),
        items && items.length === 0 ? h('p.muted', 'No checkpoints.') : null,
        items && items.length
          ? h(
              'table.checkpoints',
              h('thead', h('tr', h('th', 'checkpoint'), h('th', 'VM'), h('th', 'created'), h('th', 'from'), h('th', 'source format'), h('th', 'guest'), h('th', 'size'), h('th', 'retention'), h('th'), h('th'))),
              h(
                'tbody',
                items.map((c) => {
                  const i = c.image;
                  return h(
                    'tr',
                    { 'data-testid': `checkpoint-${c.id}` },
                    h('td.mono', { title: i ? `sha256 ${i.sha256}` : c.sha256 }, c.id),
                    h('td', store.vms.get(c.vmId)?.name ?? c.vmId),
                    h('td', { title: c.createdAt }, ago(c.createdAt)),
                    h('td', c.sourceHostId),
                    h('td', i ? [badge(i.sourceFormat === 'legacy' ? `legacy ${i.width ?? '?'}-bit` : `v2 ${i.framing}`, i.sourceFormat), i.widthSource ? h('span.muted', ` ${i.widthSource}`) : null] : '-'),
                    h('td', c.vm ? `${c.vm.type.toUpperCase()}${c.vm.guestWidth ? ` ${c.vm.guestWidth}-bit` : ''} · ${mib(c.vm.memoryMiB)}` : '-'),
                    h('td', bytes(i?.bytes ?? c.bytes)),
                    h('td', retention(c)),
                    h('td', c.latest ? badge('latest', 'info') : null, c.inUseBy ? [' ', badge('in use', 'resuming')] : null),
                    actions(c),
                  );
                }),
              ),
            )
          : null,
      );
    },
  };
}
