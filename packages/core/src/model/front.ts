import type { ConvUnit, ModelGraph } from './graph.js';

/**
 * One stride-1 inverted-residual block of the front stage: optional 1x1
 * expand, 3x3 depthwise, 1x1 project, optional residual add of the block's input.
 */
export interface FrontBlock {
  /** The 1x1 expand conv; absent in the block right after the stem (expansion 1). */
  expand?: ConvUnit;
  /** The 3x3 depthwise conv (stride 1). */
  dw: ConvUnit;
  /** The 1x1 projection. */
  project: ConvUnit;
  /** Whether the block's input is added to the projection (same channels, stride 1). */
  residual: boolean;
}

/**
 * EXTD's first stage, at 1/2 of the input resolution: the stem conv (3x3,
 * stride 2) and every stride-1 inverted-residual block after it, up to (not
 * including) the first block with a stride-2 depthwise conv. At 640x480 it
 * holds about 70% of EXTD-32's multiply-adds. The Node package runs it with
 * its own fused kernels and the rest of the graph on onnxruntime
 * (exportOnnx's `from`).
 */
export interface FrontStage {
  /** The stem: 3 -> C0 channels, 3x3, stride 2. */
  stem: ConvUnit;
  /** The blocks in order; blocks[0] has no expand conv. */
  blocks: FrontBlock[];
  /** The graph value the stage ends with: its output, C x ceil(H/2) x ceil(W/2). */
  output: string;
  /** Channels of `output`. */
  channels: number;
}

/**
 * The front stage of a model graph (see FrontStage), or null when the graph
 * does not start with a stem and at least one block of that shape.
 */
export function frontStage(graph: ModelGraph): FrontStage | null {
  const nodes = graph.nodes;
  const stem = nodes[0];
  if (!stem || stem.op !== 'conv' || stem.input !== graph.input || stem.kernel !== 3 || stem.stride !== 2 || stem.groups !== 1) return null;
  const isConv = (i: number, input: string, kernel: 1 | 3): ConvUnit | null => {
    const n = nodes[i];
    return n && n.op === 'conv' && n.input === input && n.kernel === kernel ? n : null;
  };
  const blocks: FrontBlock[] = [];
  let x = stem.output;
  let channels = stem.outChannels;
  let i = 1;
  for (;;) {
    let j = i;
    const expand = isConv(j, x, 1);
    if (expand && expand.groups === 1 && expand.stride === 1) j++;
    const hidden = expand && expand.groups === 1 ? expand.output : x;
    const hiddenChannels = expand && expand.groups === 1 ? expand.outChannels : channels;
    const dw = isConv(j, hidden, 3);
    if (!dw || dw.stride !== 1 || dw.groups !== hiddenChannels || dw.outChannels !== hiddenChannels) break;
    const project = isConv(j + 1, dw.output, 1);
    if (!project || project.groups !== 1 || project.stride !== 1) break;
    // The kernels take the stem's output as the first block's hidden map, and an expand conv in every later block.
    if (blocks.length > 0 !== Boolean(expand && expand.groups === 1)) break;
    const add = nodes[j + 2];
    const residual = add?.op === 'add' && ((add.a === x && add.b === project.output) || (add.b === x && add.a === project.output));
    blocks.push({ ...(expand && expand.groups === 1 ? { expand } : {}), dw, project, residual });
    x = residual ? (add as { output: string }).output : project.output;
    channels = project.outChannels;
    i = j + (residual ? 3 : 2);
  }
  if (blocks.length === 0) return null;
  return { stem, blocks, output: x, channels };
}
