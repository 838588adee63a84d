/**
 * Hard negative mining and a pure-TypeScript reference of the multibox loss.
 *
 * Almost every prior is background, so the classification loss only looks at
 * the positives plus the `negPosRatio` (3) x positives background priors the
 * network currently gets most wrong (highest background loss), per image.
 * The training engine computes the real loss on libtorch; it takes the
 * selection from `hardNegativeMask` (fed with the network's conf output), and
 * `multiboxLossRef` is the slow, obviously-correct version used to check it
 * against ../shared/reference/golden/train.
 *
 * Layouts: confData B*P x C raw logits (class 0 = background), confT B*P
 * (0/1), locData and locT B*P x 4. Pure functions on typed arrays.
 */

export interface MiningOptions {
  /** Negatives kept per positive. */
  negPosRatio: number;
  /** Classes per prior in confData (background + face). */
  numClasses: number;
}

export const MINING_DEFAULTS: Readonly<MiningOptions> = Object.freeze({
  negPosRatio: 3,
  numClasses: 2,
});

/**
 * Per-prior background loss -log softmax(conf)[0] = logsumexp(conf) - conf[0],
 * with the positives' entries set to 0 so they never rank as negatives.
 * Length B*P (the number of rows of confData).
 */
export function backgroundLoss(confData: Float32Array, confT: Uint8Array, numClasses: number = MINING_DEFAULTS.numClasses): Float32Array {
  const rows = confT.length;
  if (confData.length !== rows * numClasses) {
    throw new Error(`backgroundLoss: confData has ${confData.length} values, expected ${rows} priors x ${numClasses} classes`);
  }
  const out = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    if (confT[r] !== 0) continue;
    out[r] = logSumExp(confData, r * numClasses, numClasses) - confData[r * numClasses]!;
  }
  return out;
}

/**
 * Selection mask (1 = contributes to the classification loss): every positive
 * and, per image, the min(ratio x positives, P - 1) priors of highest
 * background loss (SSD's cap; positives, zeroed, can only fill the tail).
 * Images without positives contribute nothing.
 *
 * @param bgLoss     B*P, from backgroundLoss() (positives zeroed).
 * @param confT      B*P targets.
 * @param numPriors  P, to split the batch into images.
 */
export function hardNegativeMask(bgLoss: Float32Array, confT: Uint8Array, numPriors: number, negPosRatio: number = MINING_DEFAULTS.negPosRatio): Uint8Array {
  if (bgLoss.length !== confT.length) {
    throw new Error(`hardNegativeMask: bgLoss has ${bgLoss.length} values, confT ${confT.length}`);
  }
  if (!Number.isInteger(numPriors) || numPriors <= 0 || confT.length % numPriors !== 0) {
    throw new Error(`hardNegativeMask: numPriors ${numPriors} does not divide the ${confT.length} targets`);
  }
  const mask = new Uint8Array(confT.length);
  const scratch = new Float32Array(numPriors);
  for (let start = 0; start < confT.length; start += numPriors) {
    let pos = 0;
    for (let p = start; p < start + numPriors; p++) {
      if (confT[p] !== 0) {
        mask[p] = 1;
        pos++;
      }
    }
    const numNeg = Math.min(negPosRatio * pos, numPriors - 1);
    if (numNeg <= 0) continue;
    // Positives were zeroed and every negative's loss is > 0, so taking the
    // numNeg largest among the negatives only is the same set SSD's full sort gives.
    let negCount = 0;
    for (let p = start; p < start + numPriors; p++) if (confT[p] === 0) scratch[negCount++] = bgLoss[p]!;
    const k = Math.min(numNeg, negCount);
    if (k === 0) continue;
    const threshold = kthLargest(scratch, negCount, k);
    // Everything above the threshold, then ties at it until k are taken (any tie
    // order gives the same loss: tied negatives contribute the same value).
    let taken = 0;
    for (let p = start; p < start + numPriors; p++) {
      if (confT[p] === 0 && bgLoss[p]! > threshold) {
        mask[p] = 1;
        taken++;
      }
    }
    for (let p = start; p < start + numPriors && taken < k; p++) {
      if (confT[p] === 0 && bgLoss[p]! === threshold) {
        mask[p] = 1;
        taken++;
      }
    }
  }
  return mask;
}

export interface MultiboxLoss {
  /** Smooth-L1 over the positives' 4 offsets, summed, / number of positives. */
  lossL: number;
  /** Softmax cross-entropy over positives + hard negatives, summed, / number of positives. */
  lossC: number;
  numPositives: number;
  /** Priors in the classification loss (positives + mined negatives). */
  numSelected: number;
}

/**
 * Reference multibox loss in float64. With no positives in the whole batch
 * both terms are 0 (nothing is selected), as in SSD.
 *
 * @param numPriors P; defaults to all rows being one image.
 */
export function multiboxLossRef(
  locData: Float32Array,
  confData: Float32Array,
  locT: Float32Array,
  confT: Uint8Array,
  options: Partial<MiningOptions> & { numPriors?: number } = {},
): MultiboxLoss {
  const { negPosRatio, numClasses } = { ...MINING_DEFAULTS, ...options };
  const rows = confT.length;
  const numPriors = options.numPriors ?? rows;
  if (locData.length !== rows * 4 || locT.length !== rows * 4) {
    throw new Error(`multiboxLossRef: locData (${locData.length}) and locT (${locT.length}) must both have ${rows} x 4 values`);
  }
  const mask = hardNegativeMask(backgroundLoss(confData, confT, numClasses), confT, numPriors, negPosRatio);

  let lossL = 0;
  let lossC = 0;
  let numPositives = 0;
  let numSelected = 0;
  for (let r = 0; r < rows; r++) {
    if (confT[r] !== 0) {
      numPositives++;
      for (let k = 0; k < 4; k++) {
        const d = Math.abs(locData[4 * r + k]! - locT[4 * r + k]!);
        lossL += d < 1 ? 0.5 * d * d : d - 0.5;
      }
    }
    if (mask[r]) {
      numSelected++;
      const label = confT[r]!;
      if (label >= numClasses) throw new Error(`multiboxLossRef: target class ${label} at prior ${r} but only ${numClasses} classes`);
      lossC += logSumExp(confData, r * numClasses, numClasses) - confData[r * numClasses + label]!;
    }
  }
  const n = Math.max(numPositives, 1);
  return { lossL: lossL / n, lossC: lossC / n, numPositives, numSelected };
}

function logSumExp(x: Float32Array, offset: number, n: number): number {
  let m = -Infinity;
  for (let c = 0; c < n; c++) m = Math.max(m, x[offset + c]!);
  let s = 0;
  for (let c = 0; c < n; c++) s += Math.exp(x[offset + c]! - m);
  return m + Math.log(s);
}

/** The k-th largest (1-based) of a[0..n-1]; reorders a. Hoare quickselect, O(n) expected. */
function kthLargest(a: Float32Array, n: number, k: number): number {
  let lo = 0;
  let hi = n - 1;
  const target = k - 1; // index in descending order
  while (lo < hi) {
    const pivot = a[(lo + hi) >>> 1]!;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i]! > pivot) i++;
      while (a[j]! < pivot) j--;
      if (i <= j) {
        const t = a[i]!;
        a[i] = a[j]!;
        a[j] = t;
        i++;
        j--;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else return a[target]!;
  }
  return a[target]!;
}
