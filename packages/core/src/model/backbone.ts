import type { ConvUnit, ModelGraph } from './graph.js';

/**
 * One inverted-residual block of the backbone: optional 1x1 expand, 3x3
 * depthwise (stride 1 or 2), 1x1 project, optional residual add of the
 * block's input.
 */
export interface BackboneBlock {
  /** The 1x1 expand conv; absent in the block right after the stem (expansion 1). */
  expand?: ConvUnit;
  /** The 3x3 depthwise conv. */
  dw: ConvUnit;
  /** The 1x1 projection. */
  project: ConvUnit;
  /** Whether the block's input is added to the projection (same channels, stride 1). */
  residual: boolean;
}

/** A value the backbone hands to the rest of the graph. */
export interface BackboneOutput {
  /** The graph value (a block's output; f1..f6 for EXTD). */
  value: string;
  /** Index into `blocks` of the block that produces it. */
  block: number;
}

/**
 * EXTD's backbone as one unit: the stem conv (3x3, stride 2) and every
 * inverted-residual block after it (block 1, then F's blocks in each of its
 * six applications), up to the first node that is not part of such a block
 * (the FPN's first upsampling, or the SSD heads). It holds about 95% of the
 * network's multiply-adds. The Node package's native kernels run it as fused
 * blocks (src/runtime/native-network.ts).
 */
export interface BackboneStage {
  /** The stem: 3 -> C0 channels, 3x3, stride 2. */
  stem: ConvUnit;
  /** The blocks in order; blocks[0] has no expand conv, every later one has. */
  blocks: BackboneBlock[];
  /** The values the rest of the graph reads from the backbone, in block order. */
  outputs: BackboneOutput[];
  /** How many of the graph's nodes, from the first, the stage covers. */
  nodeCount: number;
}

/**
 * The backbone of a model graph (see BackboneStage), or null when the graph
 * does not start with a stem and blocks of that shape, or when the rest of
 * the graph reads a value inside a block.
 */
export function backboneStage(graph: ModelGraph): BackboneStage | null {
  const nodes = graph.nodes;
  const stem = nodes[0];
  if (!stem || stem.op !== 'conv' || stem.input !== graph.input || stem.kernel !== 3 || stem.stride !== 2 || stem.groups !== 1) return null;
  const convAt = (i: number, input: string, kernel: 1 | 3): ConvUnit | null => {
    const n = nodes[i];
    return n && n.op === 'conv' && n.input === input && n.kernel === kernel ? n : null;
  };
  const blocks: BackboneBlock[] = [];
  const blockOutputs: string[] = [];
  let x = stem.output;
  let channels = stem.outChannels;
  let i = 1;
  for (;;) {
    const e = convAt(i, x, 1);
    const expand = e && e.groups === 1 && e.stride === 1 ? e : null;
    // The kernels take the stem's output as the first block's hidden map, and an expand conv in every later block.
    if (Boolean(expand) !== blocks.length > 0) break;
    const j = expand ? i + 1 : i;
    const hiddenChannels = expand ? expand.outChannels : channels;
    const dw = convAt(j, expand ? expand.output : x, 3);
    if (!dw || dw.groups !== hiddenChannels || dw.outChannels !== hiddenChannels) break;
    const project = convAt(j + 1, dw.output, 1);
    if (!project || project.groups !== 1 || project.stride !== 1) break;
    const add = nodes[j + 2];
    const residual = dw.stride === 1 && add?.op === 'add' && ((add.a === x && add.b === project.output) || (add.b === x && add.a === project.output));
    blocks.push({ ...(expand ? { expand } : {}), dw, project, residual });
    x = residual ? (add as { output: string }).output : project.output;
    blockOutputs.push(x);
    channels = project.outChannels;
    i = j + (residual ? 3 : 2);
  }
  if (blocks.length === 0) return null;
  // What the rest of the graph reads from the stage must be block outputs.
  const inside = new Set(nodes.slice(0, i).map((n) => n.output));
  const read = new Set<string>();
  for (const n of nodes.slice(i)) {
    for (const r of n.op === 'add' ? [n.a, n.b] : n.op === 'upsample' ? [n.input, n.like] : [n.input]) if (inside.has(r)) read.add(r);
  }
  const outputs: BackboneOutput[] = [];
  for (const value of read) {
    const block = blockOutputs.indexOf(value);
    if (block < 0) return null;
    outputs.push({ value, block });
  }
  outputs.sort((a, b) => a.block - b.block);
  return { stem, blocks, outputs, nodeCount: i };
}
