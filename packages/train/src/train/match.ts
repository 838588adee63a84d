/**
 * S3FD matching with scale compensation: which priors learn which face.
 *
 * For one image, given the ground-truth faces and the priors, produce the
 * classification target of every prior (0 background, 1 face) and the encoded
 * regression target of the positives. The steps, as in the authors' training
 * code (pinned by ../shared/reference/golden/train, reproduced exactly):
 *
 *  1. IoU of every face with every prior (priors turned into corners as
 *     cx -/+ w/2). Each prior remembers its best face and that IoU; each face
 *     remembers its best prior.
 *  2. Each face's best prior is forced to that face (its IoU set to 2, so it is
 *     positive whatever the thresholds), later faces winning a shared prior.
 *  3. Priors with best IoU >= `positive` (0.35) are positive.
 *  4. Scale compensation, for faces too small or oddly shaped to reach many
 *     anchors: N = floor((#faces with best IoU >= 0.35 + #faces with best IoU
 *     >= 0.5) / 2) more priors become positive, chosen among the priors whose
 *     own best IoU is in (low, positive) = (0.1, 0.35), highest IoU first.
 *     Exact ties go to the higher prior index (what the reference sort does).
 *  5. Positives get SSD-encoded offsets to their best face, variances (0.1, 0.2).
 *
 * Arithmetic is float32 step by step (Math.fround) like the reference, because
 * the ranking in step 4 depends on exact ties between symmetric priors.
 *
 * Pure functions on typed arrays; no node: imports.
 */

export interface MatchOptions {
  /** Lower bound (exclusive) of the IoU band from which step 4 recruits extra positives. */
  low: number;
  /** IoU at or above which a prior is positive (step 3), also the upper bound (exclusive) of step 4's band. */
  positive: number;
  /** Second face-quality threshold in the count N of step 4. */
  high: number;
  /** SSD encoding variances [center, size]. */
  variances: readonly [number, number];
}

/** The released training code's values. */
export const MATCH_DEFAULTS: Readonly<MatchOptions> = Object.freeze({
  low: 0.1,
  positive: 0.35,
  high: 0.5,
  variances: [0.1, 0.2] as const,
});

export interface MatchResult {
  /** Per prior: 0 background, 1 face. Length P. */
  confT: Uint8Array;
  /**
   * Per prior: encoded offsets `(cx, cy, w, h)` to the matched face, P x 4.
   * Only rows with confT = 1 are meaningful; the others are 0.
   */
  locT: Float32Array;
  numPositives: number;
}

const f32 = Math.fround;

/**
 * Match the faces of one image to the priors.
 *
 * @param truths  n x 4 faces as corners `x1, y1, x2, y2`, normalised 0..1 by
 *                the input width/height; n = 0 gives all-background targets.
 * @param priors  P x 4 priors `cx, cy, w, h` normalised 0..1 (makePriors()).
 */
export function matchPriors(truths: Float32Array, priors: Float32Array, options: Partial<MatchOptions> = {}): MatchResult {
  const opt = { ...MATCH_DEFAULTS, ...options };
  if (truths.length % 4 !== 0) throw new Error(`matchPriors: truths has ${truths.length} values, expected n x 4`);
  if (priors.length % 4 !== 0) throw new Error(`matchPriors: priors has ${priors.length} values, expected P x 4`);
  const n = truths.length / 4;
  const P = priors.length / 4;
  const confT = new Uint8Array(P);
  const locT = new Float32Array(P * 4);
  if (n === 0 || P === 0) return { confT, locT, numPositives: 0 };
  for (let t = 0; t < n; t++) {
    const x1 = truths[4 * t]!,
      y1 = truths[4 * t + 1]!,
      x2 = truths[4 * t + 2]!,
      y2 = truths[4 * t + 3]!;
    if (!(x2 > x1 && y2 > y1)) {
      throw new Error(`matchPriors: face ${t} has an empty box [${x1}, ${y1}, ${x2}, ${y2}] (need x2 > x1 and y2 > y1)`);
    }
  }

  // Step 1. Each prior's best face (first face wins ties, like argmax) and each face's best prior.
  const bestTruthOverlap = new Float32Array(P);
  const bestTruthIdx = new Int32Array(P);
  const bestPriorOverlap = new Float32Array(n).fill(-1);
  const bestPriorIdx = new Int32Array(n);
  for (let t = 0; t < n; t++) {
    const tx1 = truths[4 * t]!,
      ty1 = truths[4 * t + 1]!,
      tx2 = truths[4 * t + 2]!,
      ty2 = truths[4 * t + 3]!;
    const areaT = f32(f32(tx2 - tx1) * f32(ty2 - ty1));
    let best = -1;
    let bestIdx = 0;
    for (let p = 0; p < P; p++) {
      const cx = priors[4 * p]!,
        cy = priors[4 * p + 1]!,
        hw = f32(priors[4 * p + 2]! / 2),
        hh = f32(priors[4 * p + 3]! / 2);
      const px1 = f32(cx - hw),
        py1 = f32(cy - hh),
        px2 = f32(cx + hw),
        py2 = f32(cy + hh);
      const iw = f32(Math.min(tx2, px2) - Math.max(tx1, px1));
      const ih = f32(Math.min(ty2, py2) - Math.max(ty1, py1));
      let iou = 0;
      if (iw > 0 && ih > 0) {
        const inter = f32(iw * ih);
        const areaP = f32(f32(px2 - px1) * f32(py2 - py1));
        iou = f32(inter / f32(f32(areaT + areaP) - inter));
      }
      if (iou > best) {
        best = iou;
        bestIdx = p;
      }
      if (t === 0 || iou > bestTruthOverlap[p]!) {
        bestTruthOverlap[p] = iou;
        bestTruthIdx[p] = t;
      }
    }
    bestPriorOverlap[t] = best;
    bestPriorIdx[t] = bestIdx;
  }

  // Step 2. Force each face's best prior; a later face overrides an earlier one on a shared prior.
  for (let t = 0; t < n; t++) {
    bestTruthOverlap[bestPriorIdx[t]!] = 2;
    bestTruthIdx[bestPriorIdx[t]!] = t;
  }

  // Step 3.
  let numPositives = 0;
  for (let p = 0; p < P; p++) {
    if (bestTruthOverlap[p]! >= opt.positive) {
      confT[p] = 1;
      numPositives++;
    }
  }

  // Step 4. Scale compensation.
  let goodFaces = 0;
  for (let t = 0; t < n; t++) {
    if (bestPriorOverlap[t]! >= opt.positive) goodFaces++;
    if (bestPriorOverlap[t]! >= opt.high) goodFaces++;
  }
  const extra = Math.floor(goodFaces / 2);
  if (extra > 0) {
    const band: number[] = [];
    for (let p = 0; p < P; p++) {
      const o = bestTruthOverlap[p]!;
      if (o > opt.low && o < opt.positive) band.push(p);
    }
    band.sort((a, b) => bestTruthOverlap[b]! - bestTruthOverlap[a]! || b - a);
    const take = Math.min(extra, band.length);
    for (let k = 0; k < take; k++) {
      confT[band[k]!] = 1;
      numPositives++;
    }
  }

  // Step 5. Encode the positives.
  const v0 = f32(opt.variances[0]);
  const v1 = f32(opt.variances[1]);
  for (let p = 0; p < P; p++) {
    if (confT[p] !== 1) continue;
    const t = bestTruthIdx[p]!;
    const tx1 = truths[4 * t]!,
      ty1 = truths[4 * t + 1]!,
      tx2 = truths[4 * t + 2]!,
      ty2 = truths[4 * t + 3]!;
    const pcx = priors[4 * p]!,
      pcy = priors[4 * p + 1]!,
      pw = priors[4 * p + 2]!,
      ph = priors[4 * p + 3]!;
    locT[4 * p] = f32(f32(f32(f32(tx1 + tx2) / 2) - pcx) / f32(v0 * pw));
    locT[4 * p + 1] = f32(f32(f32(f32(ty1 + ty2) / 2) - pcy) / f32(v0 * ph));
    locT[4 * p + 2] = f32(Math.log(f32(f32(tx2 - tx1) / pw)) / v1);
    locT[4 * p + 3] = f32(Math.log(f32(f32(ty2 - ty1) / ph)) / v1);
  }
  return { confT, locT, numPositives };
}

/**
 * Match a batch: image b's targets land in rows b*P .. (b+1)*P-1 of one
 * confT (B*P) and locT (B*P x 4), the layout the loss takes.
 */
export function matchBatch(truthsPerImage: readonly Float32Array[], priors: Float32Array, options: Partial<MatchOptions> = {}): MatchResult {
  const P = priors.length / 4;
  const B = truthsPerImage.length;
  const confT = new Uint8Array(B * P);
  const locT = new Float32Array(B * P * 4);
  let numPositives = 0;
  for (let b = 0; b < B; b++) {
    const r = matchPriors(truthsPerImage[b]!, priors, options);
    confT.set(r.confT, b * P);
    locT.set(r.locT, b * P * 4);
    numPositives += r.numPositives;
  }
  return { confT, locT, numPositives };
}
