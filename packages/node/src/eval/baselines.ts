/**
 * The published detectors' precision-recall curves distributed with the
 * official evaluation kit (`eval_tools/plot/baselines/Val/setting_int/METHOD/
 * wider_pr_info_METHOD_{easy,medium,hard}_val.mat`), for drawing beside ours.
 *
 * Each file holds `pr_cruve` (sic): N x 2, column 1 precision, column 2 recall,
 * and `legend_name`. About half are MATLAB v5 (our mat5 reader), the rest
 * MATLAB v7.3, an HDF5 container after a 512-byte header, read with jsfive.
 * jsfive cannot read datasets in HDF5 "compact" storage, which is how MATLAB
 * stores the short `legend_name` strings, so for v7.3 files the legend falls
 * back to the METHOD part of the file name.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as hdf5 from 'jsfive';
import { ExtdError } from '@extd/core/utils/errors';
import { vocAp, type WiderSetting } from '@extd/core/eval/evaluator';
import { matVersion, parseMat5 } from '@extd/core/eval/mat5';

export interface PrCurve {
  /** Legend label (the file's legend_name, or METHOD from the file name). */
  name: string;
  precision: Float64Array;
  recall: Float64Array;
  /** VOC all-point AP of the curve, as the official plot computes it. */
  ap: number;
}

/** Read one baseline curve file (v5 or v7.3). */
export function readBaselineCurve(path: string): PrCurve {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw new ExtdError(`cannot read baseline curve ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  const fallbackName = /wider_pr_info_(.+)_(easy|medium|hard)_val\.mat$/.exec(path)?.[1] ?? path;
  const version = matVersion(bytes);
  let pr: { rows: number; data: ArrayLike<number> };
  let name = fallbackName;
  if (version === 0x0100) {
    const m = parseMat5(bytes, path);
    const v = m.get('pr_cruve');
    if (!v || v.kind !== 'numeric' || v.dims.length !== 2 || v.dims[1] !== 2) {
      throw new ExtdError(`${path}: expected a numeric N x 2 variable 'pr_cruve', found ${v ? `${v.kind} ${v.dims.join('x')}` : 'none'}`);
    }
    pr = { rows: v.dims[0]!, data: v.data };
    const label = m.get('legend_name');
    if (label?.kind === 'char' && label.value.trim()) name = label.value.trim();
  } else if (version === 0x0200) {
    pr = readHdf5Curve(bytes, path);
  } else {
    throw new ExtdError(
      `${path}: byte 124: not a MATLAB v5 or v7.3 MAT-file (version field ${version === undefined ? 'unreadable' : `0x${version.toString(16)}`})`,
    );
  }
  // Column-major N x 2 (v5) and HDF5's transposed 2 x N row-major (v7.3) have the same flat layout.
  const n = pr.rows;
  const precision = new Float64Array(n);
  const recall = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    precision[i] = pr.data[i]!;
    recall[i] = pr.data[n + i]!;
  }
  return { name, precision, recall, ap: vocAp(recall, precision) };
}

function readHdf5Curve(bytes: Uint8Array, path: string): { rows: number; data: ArrayLike<number> } {
  // The HDF5 superblock sits at 0, 512, 1024, ... (after MATLAB's user block); jsfive only looks at 0.
  const sig = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a];
  let start = -1;
  for (let o = 0; o + 8 <= bytes.length; o = o === 0 ? 512 : o * 2) {
    if (sig.every((b, i) => bytes[o + i] === b)) {
      start = o;
      break;
    }
  }
  if (start < 0) throw new ExtdError(`${path}: MATLAB v7.3 file without an HDF5 signature at byte 0, 512, 1024, ...`);
  const buf = bytes.buffer.slice(bytes.byteOffset + start, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  try {
    const f = new hdf5.File(buf, path);
    const d = f.get('pr_cruve') as hdf5.Dataset | undefined;
    if (!d || !('shape' in d) || d.shape.length !== 2 || d.shape[0] !== 2) {
      throw new ExtdError(`${path}: expected an HDF5 dataset 'pr_cruve' of shape 2 x N, found ${d && 'shape' in d ? d.shape.join('x') : 'none'}`);
    }
    const data = d.value as ArrayLike<number>;
    return { rows: d.shape[1]!, data };
  } catch (err) {
    if (err instanceof ExtdError) throw err;
    // jsfive throws strings as well as Errors.
    throw new ExtdError(`${path}: HDF5 (MATLAB v7.3) read failed: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/**
 * Every baseline curve of one setting under `dir` (the kit's
 * `plot/baselines/Val/setting_int`), sorted by AP, highest first. A method
 * folder without a file for this setting is skipped.
 */
export function loadBaselines(dir: string, setting: WiderSetting): PrCurve[] {
  if (!existsSync(dir)) throw new ExtdError(`baseline folder ${dir} does not exist`);
  const out: PrCurve[] = [];
  for (const method of readdirSync(dir, { withFileTypes: true })) {
    if (!method.isDirectory()) continue;
    const folder = join(dir, method.name);
    const file = readdirSync(folder).find((f) => f.startsWith('wider_pr_info_') && f.endsWith(`_${setting}_val.mat`));
    if (file) out.push(readBaselineCurve(join(folder, file)));
  }
  return out.sort((a, b) => b.ap - a.ap);
}
