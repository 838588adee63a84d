/**
 * The speed / accuracy trade-off figure of the README (bench/tradeoff.ts):
 * AP on WIDER val (easy and hard, one panel each) against milliseconds per
 * 640x480 frame, one line per model and precision through its scales.
 * Time on a log axis (scales change the cost quadratically). Drawn with the
 * SvgContext of the PR figures; PNG by rendering the SVG with sharp.
 */
import { SVG_FONT, SvgContext } from '../src/image/svg.js';

/** One measured configuration: a bundled model at a precision and scale. */
export interface TradeoffPoint {
  /** Bundled model name, e.g. 'extd-32'. */
  model: string;
  precision: 'float32' | 'int8';
  /** What ran it (detector.engine: 'extd-kernels' or 'onnxruntime'); absent in older results. */
  engine?: string;
  /** Resize factor of the frame (and, for AP, on top of the single protocol's shrink). */
  scale: number;
  /** Median detect() milliseconds for a 640x480 frame at this scale. */
  ms: number;
  /** AP (single protocol) on the WIDER val images of the run. */
  ap: { easy: number; medium: number; hard: number };
}

/** Figure options; defaults in TRADEOFF_FIGURE_DEFAULTS. */
export interface TradeoffFigureOptions {
  /** Whole figure in pixels (two panels side by side). */
  width: number;
  height: number;
  /** Line above the panels, e.g. the machine and image count. */
  title: string;
}

/** Defaults: 1200 x 560 pixels, no title. */
export const TRADEOFF_FIGURE_DEFAULTS: TradeoffFigureOptions = { width: 1200, height: 560, title: '' };

const MODEL_COLORS = ['#d62728', '#1f77b4', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];

/** Log-axis ticks (1, 2, 5 x 10^k) covering [lo, hi]. */
export function logTicks(lo: number, hi: number): number[] {
  const ticks: number[] = [];
  for (let e = Math.floor(Math.log10(lo)) - 1; e <= Math.ceil(Math.log10(hi)) + 1; e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (v >= lo && v <= hi) ticks.push(v);
    }
  }
  return ticks;
}

/**
 * The figure as SVG. Points of one model and precision are joined in scale
 * order and labelled with their scale; float32 thick, int8 thin and
 * lighter; one colour per model.
 * @throws Error when `points` is empty or a point's ms is not positive.
 */
export function tradeoffSvg(points: readonly TradeoffPoint[], options: Partial<TradeoffFigureOptions> = {}): string {
  const o = { ...TRADEOFF_FIGURE_DEFAULTS, ...options };
  if (points.length === 0) throw new Error('tradeoff figure: no points');
  for (const p of points) if (!(p.ms > 0)) throw new Error(`tradeoff figure: ${p.model} ${p.precision} scale ${p.scale}: ms must be positive, got ${p.ms}`);
  const ctx = new SvgContext(o.width, o.height);
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, o.width, o.height);
  const models = [...new Set(points.map((p) => p.model))];
  const series = new Map<string, TradeoffPoint[]>();
  for (const p of points) {
    const key = `${p.model} ${p.precision}`;
    series.set(key, [...(series.get(key) ?? []), p]);
  }
  for (const s of series.values()) s.sort((a, b) => a.scale - b.scale);

  const msLo = Math.min(...points.map((p) => p.ms)) / 1.25;
  const msHi = Math.max(...points.map((p) => p.ms)) * 1.25;
  const top = o.title ? 56 : 24;
  const panelW = o.width / 2;
  const legendH = 22 * Math.ceil(series.size / 3) + 10;
  for (const [panel, setting] of (['easy', 'hard'] as const).entries()) {
    const aps = points.map((p) => p.ap[setting]);
    const apLo = Math.max(0, Math.floor(Math.min(...aps) * 10 - 0.5) / 10);
    const apHi = Math.min(1, Math.ceil(Math.max(...aps) * 10 + 0.2) / 10);
    const x0 = panel * panelW + 70,
      x1 = (panel + 1) * panelW - 20,
      y0 = top + 10,
      y1 = o.height - 60 - legendH;
    const px = (ms: number) => x0 + ((Math.log(ms) - Math.log(msLo)) / (Math.log(msHi) - Math.log(msLo))) * (x1 - x0);
    const py = (ap: number) => y1 - ((ap - apLo) / (apHi - apLo)) * (y1 - y0);
    ctx.font = `11px ${SVG_FONT}`;
    ctx.lineWidth = 1;
    ctx.strokeStyle = '#ddd';
    ctx.fillStyle = '#444';
    ctx.textAlign = 'center';
    for (const t of logTicks(msLo, msHi)) {
      ctx.beginPath();
      ctx.moveTo(px(t), y0);
      ctx.lineTo(px(t), y1);
      ctx.stroke();
      ctx.fillText(String(t), px(t), y1 + 16);
    }
    ctx.textAlign = 'right';
    for (let v = apLo; v <= apHi + 1e-9; v += 0.05) {
      ctx.beginPath();
      ctx.moveTo(x0, py(v));
      ctx.lineTo(x1, py(v));
      ctx.stroke();
      ctx.fillText(v.toFixed(2), x0 - 6, py(v) + 4);
    }
    ctx.strokeStyle = '#000';
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    ctx.textAlign = 'center';
    ctx.font = `13px ${SVG_FONT}`;
    ctx.fillStyle = '#000';
    ctx.fillText('ms per 640x480 frame (log scale)', (x0 + x1) / 2, y1 + 36);
    ctx.fillText(`AP, ${setting}`, x0 - 48, (y0 + y1) / 2, true);
    for (const s of series.values()) {
      const color = MODEL_COLORS[models.indexOf(s[0]!.model) % MODEL_COLORS.length]!;
      ctx.strokeStyle = color;
      ctx.lineWidth = s[0]!.precision === 'int8' ? 1.5 : 2.5;
      ctx.globalAlpha = s[0]!.precision === 'int8' ? 0.7 : 1;
      ctx.beginPath();
      for (const p of s) ctx.lineTo(px(p.ms), py(p.ap[setting]));
      ctx.stroke();
      ctx.fillStyle = color;
      ctx.font = `10px ${SVG_FONT}`;
      ctx.textAlign = 'left';
      for (const p of s) {
        ctx.fillCircle(px(p.ms), py(p.ap[setting]), s[0]!.precision === 'int8' ? 3 : 4.5);
        ctx.fillText(`x${p.scale}`, px(p.ms) + 6, py(p.ap[setting]) - 5);
      }
      ctx.globalAlpha = 1;
    }
  }
  if (o.title) {
    ctx.font = `bold 15px ${SVG_FONT}`;
    ctx.fillStyle = '#000';
    ctx.textAlign = 'center';
    ctx.fillText(o.title, o.width / 2, 30);
  }
  // Legend: one entry per series, three per row, across the bottom.
  ctx.font = `12px ${SVG_FONT}`;
  ctx.textAlign = 'left';
  [...series.values()].forEach((s, i) => {
    const x = 80 + (i % 3) * 360,
      y = o.height - legendH + 14 + 22 * Math.floor(i / 3);
    const color = MODEL_COLORS[models.indexOf(s[0]!.model) % MODEL_COLORS.length]!;
    ctx.strokeStyle = color;
    ctx.lineWidth = s[0]!.precision === 'int8' ? 1.5 : 2.5;
    ctx.globalAlpha = s[0]!.precision === 'int8' ? 0.7 : 1;
    ctx.beginPath();
    ctx.moveTo(x, y - 4);
    ctx.lineTo(x + 30, y - 4);
    ctx.stroke();
    ctx.globalAlpha = 1;
    ctx.fillStyle = '#000';
    ctx.fillText(`${s[0]!.model} ${s[0]!.precision} (scales ${s.map((p) => p.scale).join(', ')})`, x + 38, y);
  });
  return ctx.toSvg(o.title || 'AP against detect() time per model, precision and scale');
}
