/**
 * `ferry stream inspect FILE|-`: describes a v2 image: the xl header (with the
 * domain config), the libxl and libxc headers, record counts and sizes, pages by
 * type, vcpus, the emulator context and xenstore data, and the verdict.
 * --json prints the whole report. Exit 0 when the stream is valid, 1 when not.
 */
import { inspectStream, type InspectReport } from '@ferry/stream-codec';
import { Progress } from '../io';
import { parseStreamCommand } from './stream-args';

const USAGE = `usage: ferry stream inspect [options] FILE|-

options:
  -f, --format auto|xl|libxl|libxc   outermost framing (default: auto-detected)
      --json                         the full report as JSON (with the domain config)
      --config                       also print the xl domain config (text mode)
  -h, --help`;


const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;

function configSummary(config: unknown): string | undefined {
  const c = config as { c_info?: { name?: string; type?: string }; b_info?: { max_memkb?: number; max_vcpus?: number } } | undefined;
  if (!c || typeof c !== 'object') return undefined;
  const parts: string[] = [];
  if (c.c_info?.name) parts.push(`name ${c.c_info.name}`);
  if (c.c_info?.type) parts.push(`type ${c.c_info.type}`);
  if (c.b_info?.max_memkb) parts.push(`memory ${c.b_info.max_memkb / 1024} MiB`);
  if (c.b_info?.max_vcpus) parts.push(`${c.b_info.max_vcpus} vcpus`);
  return parts.join(', ');
}

/**
 * `inputBytes`: the input's size (a file's, or what was read of a pipe). The report's `bytes` is how
 * far the stream decoded, which for a non-stream is 0: both are said when they differ.
 */
export function renderText(rep: InspectReport, name: string, withConfig: boolean, inputBytes = rep.bytes): string {
  const decoded = rep.bytes === inputBytes ? '' : rep.bytes === 0 ? ', nothing of it decoded' : `, decoded up to byte ${rep.bytes}`;
  const out: string[] = [`${name}: ${rep.framing ?? 'unknown'} framing, ${inputBytes} bytes (${mib(inputBytes)})${decoded}`];
  if (rep.xl) {
    out.push(`xl header: ${rep.xl.byteOrder}-endian, mandatory flags ${rep.xl.mandatoryFlags.join('|') || 'none'}, optional flags 0x${rep.xl.optionalFlags.toString(16)}, ${rep.xl.optionalDataBytes} bytes of optional data`);
    const s = configSummary(rep.xl.config);
    if (s) out.push(`  domain config (JSON): ${s}`);
    if (withConfig && rep.xl.config !== undefined) out.push(JSON.stringify(rep.xl.config, null, 2).replace(/^/gm, '    '));
    if (rep.xl.configText !== undefined) out.push(`  domain config (text, ${rep.xl.configText.length} chars)${withConfig ? `:\n${rep.xl.configText}` : ''}`);
  }
  if (rep.libxl) {
    out.push(`libxl header: version ${rep.libxl.version}, ${rep.libxl.byteOrder}-endian${rep.libxl.legacy ? ', legacy converted' : ''}`);
    for (const r of rep.libxl.records) out.push(`  libxl record ${r.name.padEnd(24)} length ${r.length} at ${r.offset}`);
  }
  const x = rep.libxc;
  if (x) {
    out.push(`libxc image: version ${x.version}, ${x.byteOrder}-endian; domain ${x.guest}, page_shift ${x.pageShift}, Xen ${x.xen}`);
    if (x.pvInfo) out.push(`  PV guest: ${x.pvInfo.guestWidth}-bit, ${x.pvInfo.ptLevels} levels of page tables`);
    if (x.p2m) out.push(`  P2M: pfns 0x${x.p2m.startPfn.toString(16)}-0x${x.p2m.endPfn.toString(16)} in ${x.p2m.frames} frames`);
    out.push('  records:');
    for (const [n, s] of Object.entries(x.records)) out.push(`    ${n.padEnd(26)} ${String(s.count).padStart(7)}  ${String(s.bytes).padStart(12)} bytes`);
    const types = Object.entries(x.pages.byType).map(([t, n]) => `${t} ${n}`).join(', ');
    out.push(`  pages: ${x.pages.entries} pfn entries, ${x.pages.withData} with data (${mib(x.pages.withData * 4096)})${types ? `; ${types}` : ''}`);
    if (x.pages.pfnMin !== undefined) out.push(`  pfn range: 0x${x.pages.pfnMin.toString(16)}-0x${(x.pages.pfnMax ?? 0).toString(16)}`);
    out.push(`  vcpus: ${x.vcpus.length} (${x.vcpus.join(', ')})`);
    if (x.tsc) out.push(`  TSC: mode ${x.tsc.mode}, ${x.tsc.khz} kHz, ${x.tsc.nsec} ns, incarnation ${x.tsc.incarnation}`);
    if (x.hvmParams) out.push(`  HVM params: ${x.hvmParams.map((p) => `${p.index}=${p.value}`).join(' ')}`);
    if (x.cpuidLeaves !== undefined) out.push(`  CPUID policy: ${x.cpuidLeaves} leaves`);
    if (x.msrs !== undefined) out.push(`  MSR policy: ${x.msrs} entries`);
    if (x.optionalRecords) out.push(`  optional records ignored: ${x.optionalRecords}`);
  }
  for (const e of rep.emulators) {
    out.push(`emulator context: ${e.emulator} index ${e.index}, ${e.bytes} bytes, ${e.format}`);
    if (e.sections?.length) out.push(`  device sections: ${e.sections.join(', ')}`);
  }
  for (const xs of rep.xenstore) {
    out.push(`emulator xenstore data: ${xs.emulator} index ${xs.index}, ${xs.pairs.length} keys`);
    for (const [k, v] of xs.pairs) out.push(`  ${k} = ${v}`);
  }
  out.push(rep.verdict.valid ? 'verdict: valid' : `verdict: INVALID: ${rep.verdict.error}`);
  for (const w of rep.verdict.warnings) out.push(`  warning: ${w}`);
  return out.join('\n');
}

export async function run(argv: string[]): Promise<number> {
  const cmd = parseStreamCommand('inspect', USAGE, argv, {
    json: { type: 'boolean', default: false },
    config: { type: 'boolean', default: false },
  });
  if ('code' in cmd) return cmd.code;
  const { values, input } = cmd;
  const progress = new Progress(input.size, 'inspect', process.stderr.isTTY === true && (input.size ?? Infinity) > 32 * 1024 * 1024);
  let read = 0;
  const rep = await inspectStream(input.source, {
    format: cmd.format,
    onChunk: (c) => {
      read += c.byteLength;
      progress.add(c.byteLength);
    },
  });
  progress.finish();
  const inputBytes = input.size ?? read;
  if (values.json) process.stdout.write(JSON.stringify({ file: input.name, inputBytes, ...rep }, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n');
  else process.stdout.write(renderText(rep, input.name, values.config, inputBytes) + '\n');
  return rep.verdict.valid ? 0 : 1;
}
