/** Stream inspector: a dropped save file is decoded in the browser; nothing is uploaded. */
import type { App, View } from '../app';
import { h, replace } from '../dom';
import { bytes, duration } from '../format';
import { inspectFile, type InspectionResult } from '../inspector';
import { badge } from './common';

export function inspectorView(_app: App): View {
  const out = h('div.inspect-out', { 'data-testid': 'inspect-result' });
  const progress = h('p.muted');
  const input = h('input', { type: 'file', 'data-testid': 'inspect-file' });

  const run = (file: File): void => {
    replace(out);
    progress.textContent = `Decoding ${file.name} (${bytes(file.size)}) locally…`;
    inspectFile(file, (done) => (progress.textContent = `Decoding ${file.name}: ${bytes(done)} of ${bytes(file.size)}`)).then(
      (r) => {
        progress.textContent = `Decoded ${r.name} in ${duration(r.ms)}; nothing left this browser.`;
        render(r);
      },
      (e: unknown) => {
        progress.textContent = '';
        replace(out, h('p.error', e instanceof Error ? e.message : String(e)));
      },
    );
  };
  input.addEventListener('change', () => {
    const f = input.files?.[0];
    if (f) run(f);
  });

  const drop = h(
    'div.dropzone',
    {
      'data-testid': 'dropzone',
      ondragover: (e: DragEvent) => {
        e.preventDefault();
        drop.classList.add('over');
      },
      ondragleave: () => drop.classList.remove('over'),
      ondrop: (e: DragEvent) => {
        e.preventDefault();
        drop.classList.remove('over');
        const f = e.dataTransfer?.files[0];
        if (f) run(f);
      },
    },
    h('p', 'Drop a Xen save image here (legacy or v2; xl, libxl or libxc framing), or pick one: '),
    input,
  );

  const kv = (pairs: [string, unknown][]): HTMLElement => h('dl.kv', pairs.filter(([, v]) => v !== undefined && v !== null && v !== '').map(([k, v]) => [h('dt', k), h('dd', String(v))]));

  const render = (r: InspectionResult): void => {
    const rep = r.report;
    const x = rep?.libxc;
    const valid = rep?.verdict.valid ?? false;
    const width = r.width;
    replace(
      out,
      h(
        'section',
        h('h2', r.name, ' ', valid ? badge('valid', 'ok') : badge('invalid', 'failed')),
        kv([
          ['size', bytes(r.size)],
          ['format', r.sniffed === 'legacy' || r.facts?.input === 'legacy' ? 'legacy (pre-v2)' : `v2 (${r.sniffed})`],
          ['toolstack width', width?.toolstack ? `${width.toolstack}-bit` : undefined],
          ['guest width', width?.guest ? `${width.guest}-bit` : undefined],
          ['width source', width?.source],
          [r.facts?.input === 'legacy' ? 'framing (as v2)' : 'framing', rep?.framing],
          ['byte order', x?.byteOrder ?? rep?.libxl?.byteOrder],
          ['converted to v2', r.facts?.input === 'legacy' ? `${bytes(r.facts.bytesOut)} (${r.facts.records} records)` : undefined],
        ]),
        h('div', { 'data-testid': 'detected-width', 'data-width': width?.toolstack ?? width?.guest ?? '' }, width?.toolstack ? `Detected: ${width.toolstack}-bit toolstack${width.guest ? `, ${width.guest}-bit guest` : ''}` : width?.guest ? `Guest: ${width.guest}-bit` : ''),
        r.errors.length ? h('ul.error', r.errors.map((e) => h('li', e))) : null,
      ),
      r.detection
        ? h('section', h('h3', `Legacy detection: ${r.detection.width}-bit ${r.detection.guest.toUpperCase()} (${r.detection.confidence})`), h('ul.reasons', r.detection.reasons.map((s) => h('li', s))))
        : null,
      rep?.xl
        ? h(
            'section',
            h('h3', 'xl header'),
            kv([
              ['byte order', rep.xl.byteOrder],
              ['mandatory flags', rep.xl.mandatoryFlags.join(', ') || 'none'],
              ['optional data', bytes(rep.xl.optionalDataBytes)],
            ]),
            rep.xl.config !== undefined ? h('pre', JSON.stringify(rep.xl.config, null, 2).slice(0, 4000)) : rep.xl.configText ? h('pre', rep.xl.configText.slice(0, 4000)) : null,
          )
        : null,
      rep?.libxl
        ? h(
            'section',
            h('h3', `libxl stream v${rep.libxl.version}${rep.libxl.legacy ? ' (converted from legacy)' : ''}`),
            h('table', h('thead', h('tr', h('th', 'offset'), h('th', 'record'), h('th', 'length'))), h('tbody', rep.libxl.records.slice(0, 200).map((rec) => h('tr', h('td.mono', `0x${rec.offset.toString(16)}`), h('td', rec.name), h('td', bytes(rec.length)))))),
          )
        : null,
      x
        ? h(
            'section',
            h('h3', 'libxc image'),
            kv([
              ['guest', x.guest],
              ['Xen', x.xen],
              ['image version', x.version],
              ['page size', x.pageShift ? bytes(2 ** x.pageShift) : undefined],
              ['vCPUs', x.vcpus.length ? `${x.vcpus.length} (${x.vcpus.join(', ')})` : '0'],
              ['PV guest width', x.pvInfo ? `${x.pvInfo.guestWidth}-bit, ${x.pvInfo.ptLevels}-level page tables` : undefined],
              ['p2m', x.p2m ? `pfn ${x.p2m.startPfn}-${x.p2m.endPfn}, ${x.p2m.frames} frames` : undefined],
              ['TSC', x.tsc ? `mode ${x.tsc.mode}, ${x.tsc.khz} kHz` : undefined],
              ['CPUID leaves', x.cpuidLeaves],
              ['MSRs', x.msrs],
            ]),
            h('h3', 'Records'),
            h('table', { 'data-testid': 'inspect-records' }, h('thead', h('tr', h('th', 'record'), h('th', 'count'), h('th', 'bytes'))), h('tbody', Object.entries(x.records).map(([k, v]) => h('tr', h('td', k), h('td', String(v.count)), h('td', bytes(v.bytes)))))),
            h('h3', 'Pages'),
            kv([
              ['entries', x.pages.entries],
              ['with data', x.pages.withData],
              ['pfn range', x.pages.pfnMin !== undefined ? `${x.pages.pfnMin} - ${x.pages.pfnMax}` : undefined],
              ...Object.entries(x.pages.byType).map(([k, v]) => [k, v] as [string, unknown]),
            ]),
          )
        : null,
      rep && rep.emulators.length ? h('section', h('h3', 'Emulator context'), h('ul', rep.emulators.map((e) => h('li', `${e.emulator} #${e.index}: ${e.format}, ${bytes(e.bytes)}${e.sections?.length ? ` (${e.sections.slice(0, 20).join(', ')})` : ''}`)))) : null,
      rep && rep.verdict.warnings.length ? h('section', h('h3', 'Warnings'), h('ul', rep.verdict.warnings.map((w) => h('li', w)))) : null,
    );
  };

  return { mount: () => h('div.view', h('h1', 'Stream inspector'), drop, progress, out), update: () => undefined };
}
