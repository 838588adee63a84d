import { buildGraph, type ModelGraph } from '../model/graph.js';
import { parseVariant, variantName, type Variant, WIDTHS } from '../model/variant.js';
import { ExtdError } from '../utils/errors.js';
import { formatShape, shapeEquals, type Float32Tensor, type Tensor } from '../utils/tensor.js';

/** A checkpoint matched against the model definition: every tensor the graph needs, by name, with its shape checked. */
export interface LoadedModel {
  variant: Variant;
  graph: ModelGraph;
  weights: Map<string, Float32Tensor>;
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
    throw new ExtdError(`${source}: not an EXTD checkpoint (no 'loc.0.weight' tensor; found ${tensors.size} tensors)`);
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
 * Match a state_dict to the graph of `variant` (inferred when not given).
 * Missing tensors, unexpected tensors and shape mismatches are errors naming
 * the tensor; BN's `num_batches_tracked` counters are ignored.
 */
export function modelFromTensors(
  tensors: Map<string, Tensor>,
  metadata: Record<string, string>,
  source: string,
  variantHint?: string | Variant,
): LoadedModel {
  const variant = typeof variantHint === 'string' ? parseVariant(variantHint) : variantHint ?? inferVariant(tensors, metadata, source);
  const graph = buildGraph(variant);
  const weights = new Map<string, Float32Tensor>();
  const expected = new Set<string>();
  for (const p of graph.params) {
    expected.add(p.name);
    const t = tensors.get(p.name);
    if (!t) throw new ExtdError(`${source}: missing tensor '${p.name}' for ${variantName(variant)} (shape ${formatShape(p.shape)})`);
    if (!shapeEquals(t.shape, p.shape)) {
      throw new ExtdError(`${source}: tensor '${p.name}' has shape ${formatShape(t.shape)}, ${variantName(variant)} needs ${formatShape(p.shape)}`);
    }
    if (t.dtype === 'float32') weights.set(p.name, t as Float32Tensor);
    else if (t.dtype === 'float64') weights.set(p.name, { dtype: 'float32', shape: t.shape, data: Float32Array.from(t.data as Float64Array) });
    else throw new ExtdError(`${source}: tensor '${p.name}' has dtype ${t.dtype}, expected float32`);
  }
  const unexpected = [...tensors.keys()].filter((k) => !expected.has(k) && !k.endsWith('num_batches_tracked'));
  if (unexpected.length > 0) {
    const more = unexpected.length > 3 ? ` and ${unexpected.length - 3} more` : '';
    throw new ExtdError(`${source}: unexpected tensor '${unexpected.slice(0, 3).join("', '")}'${more} for ${variantName(variant)}`);
  }
  return { variant, graph, weights, metadata, source };
}

/** Metadata we write into our safetensors files, so they load without guessing. */
export function checkpointMetadata(variant: Variant, extra: Record<string, string> = {}): Record<string, string> {
  return { format: 'pt', variant: variantName(variant), width: String(variant.width), ...extra };
}
