/**
 * Precision-recall figures in the style of the official WIDER FACE plots:
 * recall on x, precision on y, one curve per detector, legend "0.921 Name"
 * sorted by AP. Our curve(s) are drawn thick on top of the baselines.
 *
 * The figure is built once as a list of drawing primitives and then rendered
 * as SVG, and to PNG by rendering that SVG with sharp, so both outputs always
 * show the same thing.
 */
import { SVG_FONT, SvgContext, svgToPng } from '../image/svg.js';
import type { PrCurve } from './baselines.js';

export interface PlotOptions {
  /** Figure size in pixels. */
  width: number;
  height: number;
  /** Title above the axes, e.g. 'Hard set'. */
  title: string;
  /** Legend rows shown at most (ours always included); the rest are dropped lowest AP first. */
  maxLegend: number;
}

export const PLOT_DEFAULTS: PlotOptions = { width: 900, height: 720, title: '', maxLegend: 30 };

/** A curve to draw; `highlight` draws it thick (ours). */
export interface PlotCurve extends PrCurve {
  highlight?: boolean;
}

type Prim =
  | { kind: 'line'; points: number[]; color: string; width: number; dash?: number[] }
  | { kind: 'rect'; x: number; y: number; w: number; h: number; fill: string; stroke?: string }
  | { kind: 'text'; x: number; y: number; text: string; size: number; color: string; align: 'left' | 'center' | 'right'; rotate?: boolean; bold?: boolean };

// Distinct colours for up to ~24 baselines; ours is always red.
const PALETTE = [
  '#1f77b4',
  '#ff7f0e',
  '#2ca02c',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#7f7f7f',
  '#bcbd22',
  '#17becf',
  '#393b79',
  '#637939',
  '#8c6d31',
  '#843c39',
  '#7b4173',
  '#3182bd',
  '#e6550d',
  '#31a354',
  '#756bb1',
  '#636363',
  '#6baed6',
  '#fd8d3c',
  '#74c476',
  '#9e9ac8',
  '#969696',
];
const OURS = '#d62728';

function layout(curves: readonly PlotCurve[], options: Partial<PlotOptions>): { prims: Prim[]; opts: PlotOptions } {
  const opts = { ...PLOT_DEFAULTS, ...options };
  const { width: W, height: H } = opts;
  const left = 70,
    right = 20,
    top = opts.title ? 44 : 16,
    bottom = 56;
  const pw = W - left - right,
    ph = H - top - bottom;
  const X = (r: number) => left + r * pw;
  const Y = (p: number) => top + (1 - p) * ph;
  const prims: Prim[] = [{ kind: 'rect', x: 0, y: 0, w: W, h: H, fill: '#ffffff' }];

  for (let i = 0; i <= 10; i++) {
    const v = i / 10;
    prims.push({ kind: 'line', points: [X(v), Y(0), X(v), Y(1)], color: '#e0e0e0', width: 1 });
    prims.push({ kind: 'line', points: [X(0), Y(v), X(1), Y(v)], color: '#e0e0e0', width: 1 });
    prims.push({ kind: 'text', x: X(v), y: Y(0) + 18, text: v.toFixed(1), size: 12, color: '#333', align: 'center' });
    prims.push({ kind: 'text', x: X(0) - 8, y: Y(v) + 4, text: v.toFixed(1), size: 12, color: '#333', align: 'right' });
  }
  prims.push({ kind: 'rect', x: X(0), y: Y(1), w: pw, h: ph, fill: 'none', stroke: '#333' });
  prims.push({ kind: 'text', x: X(0.5), y: H - 14, text: 'Recall', size: 15, color: '#111', align: 'center' });
  prims.push({ kind: 'text', x: 20, y: Y(0.5), text: 'Precision', size: 15, color: '#111', align: 'center', rotate: true });
  if (opts.title) prims.push({ kind: 'text', x: X(0.5), y: 28, text: opts.title, size: 18, color: '#111', align: 'center', bold: true });

  // Legend order = AP order; colours follow it so the figure reads like the official one.
  const sorted = [...curves].sort((a, b) => b.ap - a.ap);
  let shown = sorted.slice(0, opts.maxLegend);
  for (const c of sorted) if (c.highlight && !shown.includes(c)) shown = [...shown.slice(0, -1), c].sort((a, b) => b.ap - a.ap);
  const color = new Map<PlotCurve, string>();
  let k = 0;
  for (const c of shown) color.set(c, c.highlight ? OURS : PALETTE[k++ % PALETTE.length]!);

  // Baselines first, ours last so they stay visible.
  for (const c of [...shown].reverse().sort((a, b) => Number(!!a.highlight) - Number(!!b.highlight))) {
    const pts: number[] = [];
    for (let i = 0; i < c.recall.length; i++) {
      const r = c.recall[i]!,
        p = c.precision[i]!;
      // Thresholds with no proposals have no defined precision: not part of the curve.
      if (!Number.isFinite(r) || !Number.isFinite(p) || (r === 0 && p === 0)) continue;
      pts.push(X(Math.min(1, Math.max(0, r))), Y(Math.min(1, Math.max(0, p))));
    }
    if (pts.length >= 2) prims.push({ kind: 'line', points: pts, color: color.get(c)!, width: c.highlight ? 3.5 : 1.6 });
  }

  // Legend box in the lower left, like the official plots.
  const rowH = Math.min(18, (ph - 20) / Math.max(1, shown.length));
  const size = Math.max(9, Math.min(13, rowH - 3));
  const boxW = Math.min(pw * 0.62, 44 + size * 0.62 * Math.max(...shown.map((c) => legendLabel(c).length), 10));
  const boxH = rowH * shown.length + 10;
  const bx = X(0) + 10,
    by = Y(0) - boxH - 10;
  prims.push({ kind: 'rect', x: bx, y: by, w: boxW, h: boxH, fill: 'rgba(255,255,255,0.9)', stroke: '#999' });
  shown.forEach((c, i) => {
    const y = by + 5 + rowH * (i + 0.5);
    prims.push({ kind: 'line', points: [bx + 8, y, bx + 34, y], color: color.get(c)!, width: c.highlight ? 3.5 : 2 });
    prims.push({ kind: 'text', x: bx + 40, y: y + size * 0.35, text: legendLabel(c), size, color: '#111', align: 'left', bold: c.highlight });
  });
  return { prims, opts };
}

function legendLabel(c: PlotCurve): string {
  return `${c.ap.toFixed(3)} ${c.name}`;
}

/** The figure as an SVG document (width x height pixels). */
export function prCurvesSvg(curves: readonly PlotCurve[], options: Partial<PlotOptions> = {}): string {
  const { prims, opts } = layout(curves, options);
  const g = new SvgContext(opts.width, opts.height);
  for (const p of prims) {
    if (p.kind === 'rect') {
      if (p.fill !== 'none') {
        g.fillStyle = p.fill;
        g.fillRect(p.x, p.y, p.w, p.h);
      }
      if (p.stroke) {
        g.strokeStyle = p.stroke;
        g.lineWidth = 1;
        g.strokeRect(p.x, p.y, p.w, p.h);
      }
    } else if (p.kind === 'line') {
      g.strokeStyle = p.color;
      g.lineWidth = p.width;
      g.lineJoin = 'round';
      g.beginPath();
      for (let i = 0; i < p.points.length; i += 2) g.lineTo(p.points[i]!, p.points[i + 1]!);
      g.stroke();
    } else {
      g.fillStyle = p.color;
      g.font = `${p.bold ? 'bold ' : ''}${p.size}px ${SVG_FONT}`;
      g.textAlign = p.align;
      g.fillText(p.text, p.x, p.y, p.rotate);
    }
  }
  return g.toSvg();
}

/** The figure as PNG bytes (the SVG rendered by sharp). */
export async function prCurvesPng(curves: readonly PlotCurve[], options: Partial<PlotOptions> = {}): Promise<Uint8Array> {
  return svgToPng(prCurvesSvg(curves, options));
}
