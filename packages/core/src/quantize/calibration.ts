/**
 * int8 calibration: activation ranges for the static QDQ graph
 * (src/runtime/onnx-export.ts, `int8`), computed from images with the
 * float32 network, and the JSON file that stores them. Platform-independent:
 * the caller supplies the session factory and the images.
 */
import type { ModelGraph } from '../model/graph.js';
import { variantName } from '../model/variant.js';
import type { CreateSession } from '../runtime/backend.js';
import { exportOnnx, quantizedValues, type ActivationRange } from '../runtime/onnx-export.js';
import type { RgbImage } from '../image/types.js';
import { toNetworkInput } from '../image/types.js';
import type { LoadedModel } from '../weights/checkpoint.js';
import { ExtdError } from '../utils/errors.js';

/** The `format` field of every calibration file (`extd quantize`'s output). */
export const CALIBRATION_FORMAT = 'extd-int8-calibration';
/** The calibration file version this code writes and reads. */
export const CALIBRATION_VERSION = 1;

/** What a calibration file holds (JSON). */
export interface Calibration {
  /** Always CALIBRATION_FORMAT. */
  format: typeof CALIBRATION_FORMAT;
  /** Always CALIBRATION_VERSION (1). */
  version: typeof CALIBRATION_VERSION;
  /** Canonical variant name, e.g. `extd-fpn-32-prelu`. */
  variant: string;
  /** modelFingerprint() of the weights the ranges were measured with (hex SHA-256). */
  weights: string;
  /** Per image, the range of a value is [percentile 100 - p, percentile p] of its elements; the file keeps the widest over images. */
  percentile: number;
  /** The calibration images (as given, e.g. paths relative to the images folder). */
  images: string[];
  /** Per quantized graph value (quantizedValues()): [min, max]. */
  ranges: Record<string, [number, number]>;
}

/** Options of calibrate (and `extd quantize`); defaults in CALIBRATE_DEFAULTS. */
export interface CalibrateOptions {
  /** Upper percentile of each value's elements per image (the lower one is 100 - this). 100 = min/max. */
  percentile: number;
  /** Resize images by this factor before the network; 'auto' as in detect() (only images over about 2 megapixels shrink). */
  scale: number | 'auto';
  /** onnxruntime threads. */
  threads: number;
  /** At most this many float32 elements of intermediate maps per network run (the values are split over several runs beyond it). */
  maxElementsPerRun: number;
}

/**
 * 99.999: as measured on the released models, clipping the activation tails
 * harder costs AP (the faces are the rare large activations), and this keeps
 * single outliers of one image from setting a range.
 */
export const CALIBRATE_DEFAULTS: CalibrateOptions = { percentile: 99.999, scale: 'auto', threads: 2, maxElementsPerRun: 150_000_000 };

/** Number of calibration images `extd quantize` uses by default (evenly spread over the folder's sorted list). */
export const CALIBRATION_IMAGES_DEFAULT = 48;

/**
 * SHA-256 (hex) over the model's parameters in graph order (name, then the
 * float32 bytes), so a .pth and a .safetensors file with the same tensors
 * have the same fingerprint. Uses Web Crypto (Node 20+ and browsers).
 */
export async function modelFingerprint(model: LoadedModel): Promise<string> {
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [];
  for (const p of model.graph.params) {
    const t = model.weights.get(p.name);
    if (!t) continue;
    parts.push(enc.encode(`${p.name}\n`));
    const d = t.data as Float32Array;
    parts.push(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
  }
  const total = parts.reduce((n, b) => n + b.length, 0);
  const all = new Uint8Array(total);
  let o = 0;
  for (const b of parts) all.set(b, o), (o += b.length);
  const digest = await globalThis.crypto.subtle.digest('SHA-256', all);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * Values at ascending percentiles `low` and `high` (0..100) of `data`, with
 * linear interpolation between neighbouring ranks (numpy's default), exact,
 * in O(n) passes: a histogram finds the bins holding the wanted ranks and
 * only those bins' elements are sorted. NaNs are ignored; [0, 0] for no data.
 */
export function percentileRange(data: Float32Array, low: number, high: number): [number, number] {
  let min = Infinity,
    max = -Infinity,
    n = 0;
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (v < min) min = v;
    if (v > max) max = v;
    if (!Number.isNaN(v)) n++;
  }
  if (n === 0) return [0, 0];
  if (min === max) return [min, max];
  const bins = 4096;
  const inv = bins / (max - min);
  const counts = new Uint32Array(bins);
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (!Number.isNaN(v)) counts[Math.min(bins - 1, Math.floor((v - min) * inv))]!++;
  }
  const starts = new Float64Array(bins + 1);
  for (let b = 0; b < bins; b++) starts[b + 1] = starts[b]! + counts[b]!;
  const binOf = (r: number) => {
    let b = 0;
    while (starts[b + 1]! <= r) b++;
    return b;
  };
  // Ranks needed: floor and floor + 1 of each position.
  const pos = [low, high].map((p) => (Math.min(100, Math.max(0, p)) / 100) * (n - 1));
  const ranks = pos.flatMap((x) => [Math.floor(x), Math.min(n - 1, Math.floor(x) + 1)]);
  // slot[b]: index into `held` of bin b's elements, -1 for bins not needed.
  const slot = new Int32Array(bins).fill(-1);
  const held: Float32Array[] = [];
  for (const r of ranks) {
    const b = binOf(r);
    if (slot[b] === -1) slot[b] = held.push(new Float32Array(counts[b]!)) - 1;
  }
  const fill = new Uint32Array(held.length);
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (Number.isNaN(v)) continue;
    const k = slot[Math.min(bins - 1, Math.floor((v - min) * inv))]!;
    if (k >= 0) held[k]![fill[k]!++] = v;
  }
  for (const arr of held) arr.sort();
  const at = (r: number) => {
    const b = binOf(r);
    return held[slot[b]!]![r - starts[b]!]!;
  };
  const quantile = (x: number) => {
    const r = Math.floor(x),
      frac = x - r;
    const a = at(r);
    return frac > 0 && r + 1 < n ? a + (at(r + 1) - a) * frac : a;
  };
  return [quantile(pos[0]!), quantile(pos[1]!)];
}

/**
 * Element count of every graph value for an input of h x w (1 image),
 * following the convs' strides (ceil(n / 2)) and the upsamples' targets.
 */
export function valueElementCounts(graph: ModelGraph, height: number, width: number): Map<string, number> {
  const size = new Map<string, [number, number, number]>([[graph.input, [3, height, width]]]);
  for (const n of graph.nodes) {
    if (n.op === 'conv') {
      const [, h, w] = size.get(n.input)!;
      const s: [number, number, number] = n.stride === 2 ? [n.outChannels, Math.ceil(h / 2), Math.ceil(w / 2)] : [n.outChannels, h, w];
      size.set(n.output, s);
      if (n.act) size.set(`${n.output}:pre`, s);
    } else if (n.op === 'add') size.set(n.output, size.get(n.a)!);
    else if (n.op === 'upsample') {
      const [c] = size.get(n.input)!;
      const [, h, w] = size.get(n.like)!;
      size.set(n.output, [c, h, w]);
    } else size.set(n.output, [2, ...size.get(n.input)!.slice(1)] as [number, number, number]);
  }
  return new Map([...size].map(([k, [c, h, w]]) => [k, c * h * w]));
}

/** RGB HxWx3 uint8 -> 1x3xHxW float32 minus the training mean (as the detector feeds the network). */
export function toInputTensor(image: RgbImage): { dtype: 'float32'; shape: number[]; data: Float32Array } {
  return { dtype: 'float32', shape: [1, 3, image.height, image.width], data: toNetworkInput(image) };
}

/**
 * Measure activation ranges over `images` with the float32 network: for each
 * image and each quantized value, the [100 - p, p] percentiles of its
 * elements; the result keeps, per value, the smallest low and largest high
 * over the images. `images` yields decoded images (already at the scale to
 * calibrate at) with a name for the file.
 * @throws ExtdError when there are no images.
 */
export async function calibrate(
  model: LoadedModel,
  images: AsyncIterable<{ name: string; image: RgbImage }>,
  createSession: CreateSession,
  options: Partial<CalibrateOptions> = {},
  onImage?: (name: string) => void,
): Promise<Calibration> {
  const opts = { ...CALIBRATE_DEFAULTS, ...options };
  const values = quantizedValues(model.graph);
  const ranges: Record<string, [number, number]> = {};
  const names: string[] = [];
  // One session per group of values; groups are fixed by the first image's sizes (later images reuse them).
  let sessions: Array<{
    run: (x: ReturnType<typeof toInputTensor>) => Promise<Record<string, { data: Float32Array }>>;
    release: () => Promise<void>;
    values: string[];
  }> | null = null;
  try {
    for await (const { name, image } of images) {
      if (!sessions) {
        const counts = valueElementCounts(model.graph, image.height, image.width);
        const groups: string[][] = [[]];
        let used = 0;
        for (const v of values) {
          const c = counts.get(v) ?? 0;
          if (used + c > opts.maxElementsPerRun && groups[groups.length - 1]!.length > 0) groups.push([]), (used = 0);
          groups[groups.length - 1]!.push(v), (used += c);
        }
        sessions = [];
        for (const g of groups) {
          const s = await createSession(exportOnnx(model.graph, model.weights, { extraOutputs: g }), { threads: opts.threads });
          sessions.push({ run: (x) => s.run(x), release: () => s.release(), values: g });
        }
      }
      const input = toInputTensor(image);
      for (const s of sessions) {
        const out = await s.run(input);
        for (const v of s.values) {
          const [lo, hi] = percentileRange(out[v]!.data, 100 - opts.percentile, opts.percentile);
          const r = ranges[v];
          ranges[v] = r ? [Math.min(r[0], lo), Math.max(r[1], hi)] : [lo, hi];
        }
      }
      names.push(name);
      onImage?.(name);
    }
  } finally {
    for (const s of sessions ?? []) await s.release();
  }
  if (names.length === 0) throw new ExtdError('calibration needs at least one image');
  return {
    format: CALIBRATION_FORMAT,
    version: CALIBRATION_VERSION,
    variant: variantName(model.graph.variant),
    weights: await modelFingerprint(model),
    percentile: opts.percentile,
    images: names,
    ranges,
  };
}

/**
 * Check a parsed calibration file against the model it is to quantize:
 * format and version, variant, weights fingerprint, and a finite [min <= max]
 * range for every value the int8 graph quantizes (and no unknown ones).
 * @throws ExtdError naming `source` and the problem.
 */
export async function checkCalibration(value: unknown, model: LoadedModel, source: string): Promise<Calibration> {
  const fail = (what: string) => new ExtdError(`calibration ${source}: ${what}`);
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw fail('not a JSON object');
  const c = value as Partial<Calibration>;
  if (c.format !== CALIBRATION_FORMAT) throw fail(`format is ${JSON.stringify(c.format)}, expected "${CALIBRATION_FORMAT}"`);
  if (c.version !== CALIBRATION_VERSION) throw fail(`version ${JSON.stringify(c.version)} is not supported (expected ${CALIBRATION_VERSION})`);
  const variant = variantName(model.graph.variant);
  if (c.variant !== variant) throw fail(`made for variant ${c.variant}, the model is ${variant}`);
  if (typeof c.weights !== 'string' || c.weights !== (await modelFingerprint(model))) {
    throw fail('made for other weights of this variant (weights fingerprint differs); run extd quantize for this model');
  }
  if (!c.ranges || typeof c.ranges !== 'object') throw fail('has no "ranges" object');
  const wanted = quantizedValues(model.graph);
  const known = new Set(wanted);
  for (const k of Object.keys(c.ranges)) if (!known.has(k)) throw fail(`range for unknown value '${k}'`);
  for (const v of wanted) {
    const r = c.ranges[v];
    if (!Array.isArray(r) || r.length !== 2 || !r.every((x) => typeof x === 'number' && Number.isFinite(x)) || r[0]! > r[1]!) {
      throw fail(`range of '${v}' is ${r === undefined ? 'missing' : JSON.stringify(r)}; expected [min, max] of finite numbers`);
    }
  }
  return c as Calibration;
}

/** The ranges in the form exportOnnx's `int8` option takes. */
export function calibrationRanges(c: Calibration): Record<string, ActivationRange> {
  return c.ranges;
}

/** Compact JSON: ranges at float32 precision, one value per line. */
export function formatCalibration(c: Calibration): string {
  const r = (x: number) => Number(Math.fround(x).toPrecision(9));
  const lines = Object.entries(c.ranges).map(([k, [lo, hi]]) => `    ${JSON.stringify(k)}: [${r(lo)}, ${r(hi)}]`);
  const head = { format: c.format, version: c.version, variant: c.variant, weights: c.weights, percentile: c.percentile, images: c.images };
  const headJson = JSON.stringify(head, null, 2);
  return `${headJson.slice(0, -2)},\n  "ranges": {\n${lines.join(',\n')}\n  }\n}\n`;
}
