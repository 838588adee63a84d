/**
 * One full EXTD training step on a fixed synthetic batch (noise images with
 * two boxes each), shared by the training benchmarks: forward in training
 * mode, multibox loss with mining, backward, SGD. The loader and JPEG
 * decoding are not part of it (they run in worker threads beside the engine;
 * see bench/loader.ts).
 */
import { makePriors } from '@extd/core/anchors/priors';
import { buildGraph, type ModelGraph } from '@extd/core/model/graph';
import { parseVariant } from '@extd/core/model/variant';
import { initialWeights } from '../src/train/init.js';
import { multiboxLoss } from '../src/train/loss.js';
import { matchBatch, type MatchResult } from '../src/train/match.js';
import { createTorchModel } from '../src/train/torch-model.js';
import type { Torch } from '../src/train/torch.js';
import { Rng } from '@extd/core/utils/rng';
import type { Float32Tensor } from '@extd/core/utils/tensor';

export interface SyntheticBatch {
  graph: ModelGraph;
  batch: number;
  size: number;
  /** He-initialised weights (seed 0), every tensor of graph.params. */
  weights: Map<string, Float32Tensor>;
  /** batch x 3 x size x size noise in the range of mean-subtracted pixels. */
  input: Float32Array;
  /** Matched targets of two fixed boxes per image. */
  targets: MatchResult;
}

/** A He-initialised `variant` and a batch of `batch` synthetic `size` x `size` images with their targets. */
export function syntheticBatch(variant: string, batch: number, size: number): SyntheticBatch {
  const graph = buildGraph(parseVariant(variant));
  const rng = Rng.fromSeed(1);
  const input = Float32Array.from({ length: batch * 3 * size * size }, () => rng.uniform(-100, 130));
  const boxes = Array.from({ length: batch }, () => Float32Array.of(0.1, 0.15, 0.2, 0.3, 0.5, 0.4, 0.7, 0.75));
  return { graph, batch, size, weights: initialWeights(graph, 0), input, targets: matchBatch(boxes, makePriors(size, size)) };
}

export interface SyntheticStep {
  graph: ModelGraph;
  /** Runs one training step (forward, loss, backward, SGD). */
  step(): void;
  dispose(): void;
}

/** The training step of `data` (default: syntheticBatch of variant, batch, size). */
export function syntheticStep(torch: Torch, variant: string, batch: number, size: number, data?: SyntheticBatch): SyntheticStep {
  const d = data ?? syntheticBatch(variant, batch, size);
  const model = createTorchModel(torch, d.graph, d.weights);
  const sgd = torch.sgd(model.parameters());
  return {
    graph: d.graph,
    step() {
      torch.tidy(() => {
        const out = model.forward(torch.fromFloat32Array(d.input, [d.batch, 3, d.size, d.size]), { training: true });
        const l = multiboxLoss(torch, out.loc, out.conf, d.targets.confT, d.targets.locT);
        torch.add(l.lossL, l.lossC).backward();
        sgd.step();
        sgd.zeroGrad();
      });
    },
    dispose: () => model.dispose(),
  };
}
