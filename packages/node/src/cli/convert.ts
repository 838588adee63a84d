import { resolve } from 'node:path';
import { loadModel, resolveModelPath } from '../load-model.js';
import { checkpointMetadata } from '@extd/core/weights/checkpoint';
import { writeSafetensorsFile } from '../weights/files-node.js';
import { countParams } from '@extd/core/model/graph';
import { variantName } from '@extd/core/model/variant';
import { ExtdError } from '@extd/core/utils/errors';
import { UsageError, parseCli } from './args.js';
import type { Command } from './command.js';

const usage = `usage: extd convert <checkpoint.pth|.safetensors|model name> -o <out.safetensors> [--variant NAME]

Check a checkpoint against the model definition (every tensor name and shape) and write it as
safetensors with the variant in its metadata. BN num_batches_tracked counters are dropped.`;

export const command: Command = {
  name: 'convert',
  usage,
  async run(argv) {
    const { values, positionals } = parseCli(argv, { output: { type: 'string', short: 'o' }, variant: { type: 'string' } });
    const input = positionals[0];
    if (!input || !values.output) throw new UsageError('need an input checkpoint and -o OUTPUT (usage: extd convert in.pth -o out.safetensors)');
    if (resolve(resolveModelPath(input)) === resolve(values.output)) throw new ExtdError(`-o ${values.output}: refusing to overwrite the input`);
    const model = await loadModel(input, values.variant);
    const tensors = new Map(model.graph.params.map((p) => [p.name, model.weights.get(p.name)!]));
    writeSafetensorsFile(
      values.output,
      tensors,
      checkpointMetadata(model.variant, { params: String(countParams(model.graph)), source: input.split('/').pop()! }),
    );
    console.log(`${values.output}: ${variantName(model.variant)}, ${tensors.size} tensors, ${countParams(model.graph).toLocaleString('en-US')} parameters`);
    return 0;
  },
};
