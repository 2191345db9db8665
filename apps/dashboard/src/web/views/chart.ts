/** Throughput over time as an SVG area chart (no chart library: keeps the bundle small). */
import { s } from '../dom';
import { bytes, rate } from '../format';

export interface Point {
  t: number;
  v: number;
}

export function areaChart(points: Point[], opts: { width?: number; height?: number; windowMs?: number; now?: number; label?: (v: number) => string } = {}): SVGSVGElement {
  const W = opts.width ?? 720;
  const H = opts.height ?? 160;
  const pad = { l: 64, r: 8, t: 10, b: 22 };
  const now = opts.now ?? Date.now();
  const windowMs = opts.windowMs ?? 10 * 60_000;
  const t0 = now - windowMs;
  const pts = points.filter((p) => p.t >= t0);
  const max = niceMax(Math.max(1, ...pts.map((p) => p.v)));
  const x = (t: number) => pad.l + ((t - t0) / windowMs) * (W - pad.l - pad.r);
  const y = (v: number) => H - pad.b - (v / max) * (H - pad.t - pad.b);
  const label = opts.label ?? rate;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': 'throughput over time' });
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    svg.appendChild(s('line', { x1: pad.l, x2: W - pad.r, y1: y(v), y2: y(v), class: 'grid' }));
    svg.appendChild(s('text', { x: pad.l - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'axis' }, label(v)));
  }
  for (let m = 0; m <= windowMs / 60_000; m += windowMs > 15 * 60_000 ? 5 : 2) {
    const t = now - m * 60_000;
    svg.appendChild(s('text', { x: x(t), y: H - 6, 'text-anchor': 'middle', class: 'axis' }, m === 0 ? 'now' : `-${m}m`));
  }
  if (pts.length > 1) {
    const line = pts.map((p, i) => `${i ? 'L' : 'M'}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join('');
    svg.appendChild(s('path', { d: `${line}L${x(pts[pts.length - 1]!.t).toFixed(1)},${y(0)}L${x(pts[0]!.t).toFixed(1)},${y(0)}Z`, class: 'area' }));
    svg.appendChild(s('path', { d: line, class: 'line' }));
  }
  return svg;
}

/** Tiny inline sparkline of a migration's wire rate. */
export function sparkline(values: number[], w = 120, hgt = 24): SVGSVGElement {
  const svg = s('svg', { viewBox: `0 0 ${w} ${hgt}`, class: 'spark', width: w, height: hgt });
  if (values.length < 2) return svg;
  const max = Math.max(1, ...values);
  const d = values.map((v, i) => `${i ? 'L' : 'M'}${((i / (values.length - 1)) * w).toFixed(1)},${(hgt - 1 - (v / max) * (hgt - 2)).toFixed(1)}`).join('');
  svg.appendChild(s('path', { d, class: 'line' }));
  svg.appendChild(s('title', {}, `peak ${bytes(max)}/s`));
  return svg;
}

function niceMax(v: number): number {
  return Math.pow(2, Math.ceil(Math.log2(Math.max(v, 1024 * 1024))));
}
