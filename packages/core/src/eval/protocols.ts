/**
 * Test-time protocols for WIDER FACE evaluation, built on one primitive: a
 * detector pass at a given scale (`PassDetector.detectPass`).
 *
 * - `single`: one pass at shrink = min(1, max_shrink), where
 *   max_shrink = sqrt(1700*1200 / (h*w)) keeps big images within the area the
 *   released models were evaluated at (image/shrink.ts, the same rule as the
 *   detector's `scale: 'auto'`).
 * - `paper`: the multi-scale + flip test of the S3FD / EXTD evaluation scripts,
 *   which the paper's WIDER table used:
 *   (a) the base pass at shrink; (b) the same on the mirrored image;
 *   (c) a pass at st = 0.5 (0.5 * max_shrink when max_shrink < 0.75), keeping
 *       boxes whose longer side > 30 px (small scale only finds big faces well);
 *   (d) a pass at bt = min(2, max_shrink) (or (st + max_shrink) / 2 when
 *       max_shrink <= 1), and when max_shrink > 2 further passes at bt*2,
 *       bt*4, ... below max_shrink plus one at max_shrink, keeping boxes whose
 *       shorter side < 100 px when bt > 1 (enlarged passes are for small faces),
 *       else longer side > 30 px;
 *   then box voting over the union, keeping 750.
 * Box sides follow the scripts' pixel convention: side = x2 - x1 + 1.
 *
 * Pure TypeScript (no node: imports).
 */
import type { RgbImage } from '../image/types.js';
import { flipHorizontal } from '../image/resize.js';
import { AUTO_MAX_AREA, autoScale, maxShrink } from '../image/shrink.js';
import { ExtdError } from '../utils/errors.js';
import { argsortDescending } from '../postprocess/boxes.js';
import { selectDetections, type Detections } from '../postprocess/detections.js';

/** The evaluation protocols (see the module comment): 'single' pass or the 'paper' multi-scale + flip test. */
export const PROTOCOLS = ['single', 'paper'] as const;
/** One of PROTOCOLS. */
export type ProtocolName = (typeof PROTOCOLS)[number];

/** What a protocol needs from a detector (src/detector.ts `Detector` satisfies it). */
export interface PassDetector {
  /**
   * One network pass on `image` resized by `scale` (bilinear), then score
   * threshold, NMS and the best `maxFaces`. Boxes: N x 4, x1 y1 x2 y2 in the ORIGINAL
   * image's pixels.
   */
  detectPass(image: RgbImage, options: { scale: number; scoreThreshold: number; nmsThreshold: number; maxFaces: number }): Promise<Detections>;
}

/** Options of runProtocol; defaults (the released evaluation settings) in PROTOCOL_DEFAULTS. */
export interface ProtocolOptions {
  /** Per pass: keep detections whose score is above this. */
  scoreThreshold: number;
  /** Per pass: NMS IoU. */
  nmsThreshold: number;
  /**
   * Per pass: detections kept after NMS (PostprocessOptions.maxFaces). For
   * the single protocol this is also the output's limit; the paper protocol's
   * output is limited by `voteKeep` instead.
   */
  maxFaces: number;
  /** Image area (pixels) above which images are shrunk: max_shrink = sqrt(maxArea / (h*w)). */
  maxArea: number;
  /**
   * Single protocol only: a factor on top of the shrink, to evaluate at a
   * reduced (or enlarged) resolution; boxes are still reported in the
   * image's own pixels. The paper protocol plans its scales itself (1 only).
   */
  scale: number;
  /** Box voting (paper protocol): IoU (+1 pixel convention) that groups boxes. */
  voteIou: number;
  /**
   * Box voting: boxes kept, best first. A different limit from `maxFaces`:
   * it applies once, to the voted union of all the paper protocol's passes
   * (each already cut to `maxFaces`), so it is the paper protocol's output
   * limit (S3FD's scripts keep 750 after bbox_vote).
   */
  voteKeep: number;
}

/** The released EXTD / S3FD evaluation settings. */
export const PROTOCOL_DEFAULTS: ProtocolOptions = {
  scoreThreshold: 0.05,
  nmsThreshold: 0.3,
  maxFaces: 750,
  maxArea: AUTO_MAX_AREA,
  scale: 1,
  voteIou: 0.3,
  voteKeep: 750,
};

/** One planned pass: scale, mirrored or not, and which boxes it keeps. */
export interface PlannedPass {
  scale: number;
  flip: boolean;
  /** 'all', 'longer>30' (longer side > 30 px) or 'shorter<100' (shorter side < 100 px). */
  keep: 'all' | 'longer>30' | 'shorter<100';
}

/** The passes a protocol runs on a width x height image, in order. */
export function planPasses(
  protocol: ProtocolName,
  width: number,
  height: number,
  maxArea = PROTOCOL_DEFAULTS.maxArea,
  scale = PROTOCOL_DEFAULTS.scale,
): PlannedPass[] {
  if (!(scale > 0) || !Number.isFinite(scale)) throw new ExtdError(`evaluation scale ${scale}: expected a positive number`);
  const ms = maxShrink(width, height, maxArea);
  const shrink = autoScale(width, height, maxArea);
  if (protocol === 'single') return [{ scale: shrink * scale, flip: false, keep: 'all' }];
  if (protocol !== 'paper') throw new ExtdError(`protocol '${protocol as string}': expected one of ${PROTOCOLS.join(', ')}`);
  if (scale !== 1) throw new ExtdError(`evaluation scale ${scale}: the paper protocol chooses its own scales; a scale applies to the single protocol only`);
  const passes: PlannedPass[] = [
    { scale: shrink, flip: false, keep: 'all' },
    { scale: shrink, flip: true, keep: 'all' },
  ];
  const st = ms >= 0.75 ? 0.5 : 0.5 * ms;
  passes.push({ scale: st, flip: false, keep: 'longer>30' });
  let bt = ms > 1 ? Math.min(2, ms) : (st + ms) / 2;
  const big: number[] = [bt];
  if (ms > 2) {
    bt *= 2;
    while (bt < ms) {
      big.push(bt);
      bt *= 2;
    }
    big.push(ms);
  }
  // The scripts test the final (doubled) bt; it is > 1 exactly when max_shrink > 1.
  const keep: PlannedPass['keep'] = bt > 1 ? 'shorter<100' : 'longer>30';
  for (const s of big) passes.push({ scale: s, flip: false, keep });
  return passes;
}

/** Run a protocol on one image; boxes in the image's pixels, sorted by score. */
export async function runProtocol(
  detector: PassDetector,
  image: RgbImage,
  protocol: ProtocolName,
  options: Partial<ProtocolOptions> = {},
): Promise<Detections> {
  const opts = { ...PROTOCOL_DEFAULTS, ...options };
  const passes = planPasses(protocol, image.width, image.height, opts.maxArea, opts.scale);
  const passOpts = { scoreThreshold: opts.scoreThreshold, nmsThreshold: opts.nmsThreshold, maxFaces: opts.maxFaces };
  if (protocol === 'single') {
    const d = await detector.detectPass(image, { ...passOpts, scale: passes[0]!.scale });
    return selectDetections(d, argsortDescending(d.scores));
  }
  let flipped: RgbImage | undefined;
  const boxes: number[] = [];
  const scores: number[] = [];
  for (const p of passes) {
    if (p.flip && !flipped) flipped = flipHorizontal(image);
    const src = p.flip && flipped ? flipped : image;
    const d = await detector.detectPass(src, { ...passOpts, scale: p.scale });
    const W = image.width;
    for (let i = 0; i < d.scores.length; i++) {
      let x1 = d.boxes[i * 4]!,
        x2 = d.boxes[i * 4 + 2]!;
      const y1 = d.boxes[i * 4 + 1]!,
        y2 = d.boxes[i * 4 + 3]!;
      // Mirror back as the scripts do: x1' = W - x2, x2' = W - x1.
      if (p.flip) [x1, x2] = [W - x2, W - x1];
      const w = x2 - x1 + 1,
        h = y2 - y1 + 1;
      if (p.keep === 'longer>30' && !(Math.max(w, h) > 30)) continue;
      if (p.keep === 'shorter<100' && !(Math.min(w, h) < 100)) continue;
      boxes.push(x1, y1, x2, y2);
      scores.push(d.scores[i]!);
    }
  }
  return boxVote(Float32Array.from(boxes), Float32Array.from(scores), opts.voteIou, opts.voteKeep);
}

/**
 * Box voting (S3FD's bbox_vote) on x1 y1 x2 y2 boxes in pixels: repeatedly
 * take the highest-scoring remaining box, gather every remaining box with
 * IoU >= `iou` to it (+1 pixel convention, the box itself included) and remove
 * them; a group of one is dropped, otherwise it becomes the score-weighted
 * mean box with the group's highest score. At most `keep` boxes, highest first.
 */
export function boxVote(boxes: Float32Array, scores: Float32Array, iou = PROTOCOL_DEFAULTS.voteIou, keep = PROTOCOL_DEFAULTS.voteKeep): Detections {
  const n = scores.length;
  const order = argsortDescending(scores, n);
  const alive = new Uint8Array(n).fill(1);
  const outBoxes: number[] = [];
  const outScores: number[] = [];
  for (let oi = 0; oi < n && outScores.length < keep; oi++) {
    const i = order[oi]!;
    if (!alive[i]) continue;
    const ax1 = boxes[i * 4]!,
      ay1 = boxes[i * 4 + 1]!,
      ax2 = boxes[i * 4 + 2]!,
      ay2 = boxes[i * 4 + 3]!;
    const areaA = (ax2 - ax1 + 1) * (ay2 - ay1 + 1);
    let members = 0;
    let sx1 = 0,
      sy1 = 0,
      sx2 = 0,
      sy2 = 0,
      sw = 0,
      best = -Infinity;
    for (let oj = oi; oj < n; oj++) {
      const j = order[oj]!;
      if (!alive[j]) continue;
      const bx1 = boxes[j * 4]!,
        by1 = boxes[j * 4 + 1]!,
        bx2 = boxes[j * 4 + 2]!,
        by2 = boxes[j * 4 + 3]!;
      const w = Math.max(0, Math.min(ax2, bx2) - Math.max(ax1, bx1) + 1);
      const h = Math.max(0, Math.min(ay2, by2) - Math.max(ay1, by1) + 1);
      const inter = w * h;
      const o = inter / (areaA + (bx2 - bx1 + 1) * (by2 - by1 + 1) - inter);
      if (!(o >= iou)) continue;
      alive[j] = 0;
      members++;
      const s = scores[j]!;
      (sx1 += bx1 * s), (sy1 += by1 * s), (sx2 += bx2 * s), (sy2 += by2 * s), (sw += s);
      if (s > best) best = s;
    }
    if (members <= 1) continue;
    outBoxes.push(sx1 / sw, sy1 / sw, sx2 / sw, sy2 / sw);
    outScores.push(best);
  }
  return { boxes: Float32Array.from(outBoxes), scores: Float32Array.from(outScores) };
}
