import { buildGraph, type ModelGraph } from '../model/graph.js';
import { parseVariant, variantName, type Variant, WIDTHS } from '../model/variant.js';
import { ExtdError } from '../utils/errors.js';
import { formatShape, shapeEquals, type Float32Tensor, type Tensor } from '../utils/tensor.js';

/** A checkpoint matched against the model definition: every tensor the graph needs, by name, with its shape checked. */
export interface LoadedModel {
  /** The variant the checkpoint holds (from its metadata, its tensors or the caller). */
  variant: Variant;
  /** The variant's graph (buildGraph). */
  graph: ModelGraph;
  /** Every parameter of `graph`, by checkpoint name, as float32 (float64 files converted), shapes checked (conv weights [out, in / groups, k, k]). */
  weights: Map<string, Float32Tensor>;
  /** The file's string metadata (safetensors `__metadata__`; {} when it has none). */
  metadata: Record<string, string>;
  /** Where it came from (a path, a URL, or a description), for messages. */
  source: string;
}

/**
 * Work out which variant a checkpoint holds. Our safetensors files say so in
 * their metadata (`variant`, or `arch` as in the reference files); a bare
 * state_dict is recognised by its tensors: upfeat.* means FPN, loc.0's input
 * channels give the width, PReLU slopes mean PReLU. LeakyReLU and ReLU models
 * have identical tensors, so those need the metadata or an explicit variant.
 */
export function inferVariant(tensors: Map<string, Tensor>, metadata: Record<string, string>, source: string): Variant {
  const named = metadata.variant ?? metadata.arch;
  if (named) return parseVariant(named);
  const loc0 = tensors.get('loc.0.weight');
  if (!loc0 || loc0.shape.length !== 4) {
    const names = [...tensors.keys()];
    const shown = names.length > 0 ? `: '${names.slice(0, 3).join("', '")}'${names.length > 3 ? ', ...' : ''}` : '';
    throw new ExtdError(`${source}: not an EXTD checkpoint (no 'loc.0.weight' tensor; found ${tensors.size} tensors${shown})`);
  }
  const width = loc0.shape[1]!;
  if (!(WIDTHS as readonly number[]).includes(width)) {
    throw new ExtdError(`${source}: 'loc.0.weight' has ${width} input channels (EXTD widths: ${WIDTHS.join(', ')})`);
  }
  const arch = tensors.has('upfeat.0.0.weight') ? 'fpn' : 'ssd';
  if (!tensors.has('base.0.2.weight')) {
    throw new ExtdError(`${source}: a ReLU or LeakyReLU checkpoint without metadata; name the variant (e.g. --variant extd-${arch}-${width}-relu)`);
  }
  return parseVariant(`${arch}-${width}-prelu`);
}

/**
 * Prefixes that model wrappers put before every key of a state_dict:
 * `module.` (torch.nn.DataParallel, DistributedDataParallel) and
 * `_orig_mod.` (torch.compile).
 */
export const WRAPPER_PREFIXES = ['module.', '_orig_mod.'] as const;

/** `tensors` with WRAPPER_PREFIXES removed, repeatedly, while EVERY key starts with one (e.g. `module._orig_mod.`). */
export function stripWrapperPrefixes(tensors: Map<string, Tensor>): Map<string, Tensor> {
  let out = tensors;
  for (;;) {
    const keys = [...out.keys()];
    const prefix = WRAPPER_PREFIXES.find((p) => keys.length > 0 && keys.every((k) => k.startsWith(p)));
    if (!prefix) return out;
    out = new Map([...out].map(([k, t]) => [k.slice(prefix.length), t]));
  }
}

/**
 * Refuse a checkpoint holding NaN or an infinity in any floating-point
 * tensor: such a model computes NaN everywhere (every score NaN, so no faces
 * and no error). Throws ExtdError naming the source, the tensor and the index.
 */
export function checkFinite(tensors: Iterable<[string, Tensor]>, source: string): void {
  for (const [name, t] of tensors) {
    if (t.dtype !== 'float32' && t.dtype !== 'float64') continue;
    const d = t.data as Float32Array | Float64Array;
    for (let i = 0; i < d.length; i++) {
      if (Number.isFinite(d[i]!)) continue;
      // Row-major multi-index of element i.
      const idx: number[] = [];
      for (let k = t.shape.length - 1, r = i; k >= 0; k--) idx.unshift(r % t.shape[k]!), (r = Math.floor(r / t.shape[k]!));
      throw new ExtdError(
        `${source}: tensor '${name}' holds ${d[i]} at [${idx.join(', ')}]; a model checkpoint must hold finite numbers (was it saved after training diverged?)`,
      );
    }
  }
}

/**
 * The state-dict name and shape check, the one used wherever a state dict
 * meets a model graph: loading a checkpoint here, and building or resuming a
 * libtorch model in @extd/train. Returns `tensors`' tensor for `param`;
 * throws ExtdError `SOURCE: missing tensor 'NAME'[ for MODEL] (shape S)` when
 * it is absent and `SOURCE: tensor 'NAME' has shape A, [MODEL ]needs B` when
 * its shape differs. `model` (e.g. the variant's name) is only for messages.
 * Named for what it checks (a state dict) rather than for a file format,
 * since the tensors may be parsed data, libtorch tensors or anything with a shape.
 */
export function stateDictTensor<T extends { readonly shape: readonly number[] }>(
  tensors: ReadonlyMap<string, T>,
  param: { readonly name: string; readonly shape: readonly number[] },
  source: string,
  model?: string,
): T {
  const t = tensors.get(param.name);
  if (!t) throw new ExtdError(`${source}: missing tensor '${param.name}'${model ? ` for ${model}` : ''} (shape ${formatShape(param.shape)})`);
  if (!shapeEquals(t.shape, param.shape)) {
    throw new ExtdError(`${source}: tensor '${param.name}' has shape ${formatShape(t.shape)}, ${model ? `${model} ` : ''}needs ${formatShape(param.shape)}`);
  }
  return t;
}

/**
 * Match a state_dict to the graph of `variant` (inferred when not given).
 * Wrapper prefixes (`module.`, `_orig_mod.`) are removed first. Missing
 * tensors, unexpected tensors, shape mismatches and non-finite values are
 * errors naming the tensor; BN's `num_batches_tracked` counters are ignored.
 * @throws ExtdError for an unknown or unrecognisable variant and for any of those errors.
 */
export function modelFromTensors(
  tensorsIn: Map<string, Tensor>,
  metadata: Record<string, string>,
  source: string,
  variantHint?: string | Variant,
): LoadedModel {
  const tensors = stripWrapperPrefixes(tensorsIn);
  const variant = typeof variantHint === 'string' ? parseVariant(variantHint) : (variantHint ?? inferVariant(tensors, metadata, source));
  const graph = buildGraph(variant);
  const weights = new Map<string, Float32Tensor>();
  const expected = new Set<string>();
  for (const p of graph.params) {
    expected.add(p.name);
    const t = stateDictTensor(tensors, p, source, variantName(variant));
    if (t.dtype === 'float32') weights.set(p.name, t as Float32Tensor);
    else if (t.dtype === 'float64') weights.set(p.name, { dtype: 'float32', shape: t.shape, data: Float32Array.from(t.data as Float64Array) });
    else throw new ExtdError(`${source}: tensor '${p.name}' has dtype ${t.dtype}, expected float32`);
  }
  const unexpected = [...tensors.keys()].filter((k) => !expected.has(k) && !k.endsWith('num_batches_tracked'));
  if (unexpected.length > 0) {
    const more = unexpected.length > 3 ? ` and ${unexpected.length - 3} more` : '';
    throw new ExtdError(`${source}: unexpected tensor '${unexpected.slice(0, 3).join("', '")}'${more} for ${variantName(variant)}`);
  }
  checkFinite(weights, source);
  return { variant, graph, weights, metadata, source };
}

/** Metadata we write into our safetensors files, so they load without guessing. */
export function checkpointMetadata(variant: Variant, extra: Record<string, string> = {}): Record<string, string> {
  return { format: 'pt', variant: variantName(variant), width: String(variant.width), ...extra };
}
