import type { HostDto, MigrationPhase, VmDto } from '@ferry/contracts';
import { h } from '../dom';
import { percent } from '../format';

export function badge(text: string, kind = text): HTMLElement {
  return h('span.badge', { class: `b-${kind.replace(/[^a-z0-9-]/gi, '')}` }, text);
}

export function bar(done: number, total: number, label?: string, testid?: string): HTMLElement {
  const p = percent(done, total);
  return h(
    'div.bar',
    { title: label ?? `${p.toFixed(1)}%`, 'data-testid': testid, 'data-pct': p.toFixed(1) },
    h('div.fill', { style: { width: `${p}%` } }),
    h('span.label', label ?? `${p.toFixed(0)}%`),
  );
}

export function groupKey(host: HostDto): string {
  return `${host.toolstack.bitness}-bit · ${host.toolstack.streamFormat === 'v2' ? 'v2 stream' : 'legacy stream'}`;
}

export function hostName(hosts: Map<string, HostDto>, id: string | null): string {
  if (!id) return '-';
  // Host ids are what operators type (hostnames may repeat: sim hosts share the machine's).
  return id;
}

export function vmName(vms: Map<string, VmDto>, id: string): string {
  return vms.get(id)?.name ?? id;
}

export const PHASE_STEPS: MigrationPhase[] = ['queued', 'dispatched', 'preparing', 'precopy', 'stop-copy', 'verifying', 'committing', 'completed'];

export function section(title: string, ...children: (Node | null)[]): HTMLElement {
  return h('section', h('h2', title), ...children);
}
