/**
 * One full EXTD training step on a fixed synthetic batch (noise images with
 * two boxes each), shared by the training benchmarks: matching, forward in
 * training mode, multibox loss with mining, backward, SGD. The loader and
 * JPEG decoding are not part of it (they run in worker threads beside the
 * engine; see bench/loader.ts).
 */
import { makePriors } from '../src/anchors/priors.js';
import { buildGraph, type ModelGraph } from '../src/model/graph.js';
import { parseVariant } from '../src/model/variant.js';
import { initialWeights } from '../src/train/init.js';
import { multiboxLoss } from '../src/train/loss.js';
import { matchBatch } from '../src/train/match.js';
import { createTorchModel } from '../src/train/torch-model.js';
import type { Torch } from '../src/train/torch.js';
import { Rng } from '../src/utils/rng.js';

export interface SyntheticStep {
  graph: ModelGraph;
  /** Runs one training step (matching included, as the trainer does every iteration). */
  step(): void;
  dispose(): void;
}

/** A He-initialised `variant` and a batch of `batch` synthetic `size` x `size` images. */
export function syntheticStep(torch: Torch, variant: string, batch: number, size: number): SyntheticStep {
  const graph = buildGraph(parseVariant(variant));
  const model = createTorchModel(torch, graph, initialWeights(graph, 0));
  const sgd = torch.sgd(model.parameters());
  const rng = Rng.fromSeed(1);
  const input = Float32Array.from({ length: batch * 3 * size * size }, () => rng.uniform(-100, 130));
  const boxes = Array.from({ length: batch }, () => Float32Array.of(0.1, 0.15, 0.2, 0.3, 0.5, 0.4, 0.7, 0.75));
  const priors = makePriors(size, size);
  return {
    graph,
    step() {
      const t = matchBatch(boxes, priors);
      torch.tidy(() => {
        const out = model.forward(torch.fromFloat32Array(input, [batch, 3, size, size]), { training: true });
        const l = multiboxLoss(torch, out.loc, out.conf, t.confT, t.locT);
        torch.add(l.lossL, l.lossC).backward();
        sgd.step();
        sgd.zeroGrad();
      });
    },
    dispose: () => model.dispose(),
  };
}
