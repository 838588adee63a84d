import { existsSync } from 'node:fs';
import { isBundledModelName } from '@extd/core/model/bundled';
import { loadModel } from '../load-model.js';
import { buildGraph, countParams, type ModelGraph } from '@extd/core/model/graph';
import { countConvMacs } from '@extd/core/model/count';
import { parseVariant, variantName } from '@extd/core/model/variant';
import { formatShape } from '@extd/core/utils/tensor';
import { parseCli } from './args.js';
import type { Command } from './command.js';
import { float32EngineStatus, int8EngineStatus } from '../runtime/native-network.js';

const usage = `usage: extd info <model name | model file | variant name> [--variant NAME] [--size HxW] [--json]

Print the variant, learnable parameter count, conv multiply-accumulates, what runs float32
inference on this machine (extd's native kernels or onnxruntime, and why) and the tensor list.
A model name is one of the bundled models (extd-32, extd-48, extd-64, extd-32-scratch).
A variant name is e.g. extd-fpn-64-prelu, extd-ssd-32-relu, or 32/48/64 (released FPN PReLU).

MACs are the plain count over all convolutions (outputs x inputs-per-group x k x k) at --size
(default 640x640). The paper prints 4.52 / 6.67 / 11.2 G for FPN-32/48/64, about 17% less than
this count (5.40 / 7.89 / 13.41 G), with a convention it does not state.`;

export const command: Command = {
  name: 'info',
  usage,
  async run(argv) {
    const { values, positionals } = parseCli(argv, { variant: { type: 'string' }, size: { type: 'string' }, json: { type: 'boolean' } });
    const target = positionals[0];
    if (!target) {
      console.error(usage);
      return 2;
    }
    const [h, w] = (values.size ?? '640x640').split('x').map(Number);
    let graph: ModelGraph;
    let metadata: Record<string, string> = {};
    let source = 'variant';
    if (isBundledModelName(target) || existsSync(target)) {
      const model = await loadModel(target, values.variant);
      graph = model.graph;
      metadata = model.metadata;
      source = target;
    } else {
      graph = buildGraph(parseVariant(target));
    }
    const info = {
      source,
      variant: variantName(graph.variant),
      params: countParams(graph),
      macs: countConvMacs(graph, h!, w!),
      size: `${h}x${w}`,
      metadata,
      engine: float32EngineStatus(),
      int8Engine: int8EngineStatus(),
      tensors: graph.params.map((p) => ({ name: p.name, shape: p.shape, learnable: p.learnable })),
    };
    if (values.json) {
      console.log(JSON.stringify(info, null, 1));
      return 0;
    }
    console.log(`variant     ${info.variant}${source !== 'variant' ? `  (${source})` : ''}`);
    console.log(`parameters  ${info.params.toLocaleString('en-US')} learnable (BN running statistics excluded)`);
    console.log(`conv MACs   ${(info.macs / 1e9).toFixed(2)} G at ${info.size} (plain count; see --help)`);
    console.log(`engine      float32 on ${info.engine}`);
    console.log(`engine      int8 on ${info.int8Engine}`);
    for (const [k, v] of Object.entries(metadata)) console.log(`metadata    ${k}: ${v}`);
    console.log(`tensors     ${info.tensors.length}`);
    for (const t of info.tensors) console.log(`  ${t.name.padEnd(30)} ${formatShape(t.shape)}${t.learnable ? '' : '  (buffer)'}`);
    return 0;
  },
};
