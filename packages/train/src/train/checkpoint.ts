/**
 * Training checkpoints: three files per save in the run folder, each written
 * atomically (temp file + rename), in this order:
 *
 *  1. `ckpt-<iter>.safetensors`: the model alone, every tensor under the
 *     released names plus each BN's `num_batches_tracked`, with our variant
 *     metadata. `extd detect`, `extd eval`, `extd convert` and PyTorch's
 *     `load_state_dict` (strict) accept it as is.
 *  2. `ckpt-<iter>.state.safetensors`: what resuming needs beyond the model:
 *     the SGD momentum buffers as tensors `momentum.<parameter name>`, and in
 *     the metadata (`state`, JSON) the iteration, the loader position, the
 *     training configuration and the format version.
 *     With an exponential moving average of the weights (`extd train
 *     --ema`), its tensors too, as `ema.<tensor name>`.
 *  3. With --ema only: `ckpt-<iter>.ema.safetensors`, the averaged weights
 *     as a model file like 1. (what to evaluate or ship).
 *  4. `latest.json`: names the model and state files. Written last, so it only ever
 *     points at complete files; a run killed mid-save resumes from the
 *     previous checkpoint and at worst leaves a `.tmp-*` file behind.
 *
 * Node only.
 */
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { ModelGraph } from '@extd/core/model/graph';
import { writeFileAtomic } from 'extd/utils/atomic';
import { ExtdError } from '@extd/core/utils/errors';
import type { Float32Tensor, Tensor } from '@extd/core/utils/tensor';
import { checkFinite, checkpointMetadata } from '@extd/core/weights/checkpoint';
import { readWeightsFile, writeSafetensorsFile } from 'extd/weights/files-node';

export const LATEST_FILE = 'latest.json';
const STATE_VERSION = 1;
const MOMENTUM_PREFIX = 'momentum.';
const EMA_PREFIX = 'ema.';

/** The JSON part of a training state (in the state file's metadata). */
export interface TrainState<C = unknown> {
  version: number;
  /** Completed optimiser steps; the next iteration to run. */
  iteration: number;
  /** Index of the next batch the loader must produce. */
  loaderPosition: number;
  /** The run's configuration, to continue with the same one. */
  config: C;
}

export interface LatestPointer {
  iteration: number;
  model: string;
  state: string;
}

export interface SavedCheckpoint {
  modelPath: string;
  statePath: string;
  /** The averaged weights' model file (--ema), else null. */
  emaPath: string | null;
}

export function checkpointNames(iteration: number): { model: string; state: string; ema: string } {
  return { model: `ckpt-${iteration}.safetensors`, state: `ckpt-${iteration}.state.safetensors`, ema: `ckpt-${iteration}.ema.safetensors` };
}

/**
 * Save a checkpoint (see the module comment for the files and their order).
 * @param model    every tensor of the graph, float32 (TorchModel.stateDict()).
 * @param momentum per learnable parameter, in graph order, its momentum buffer (null before its first step).
 * @param ema      the moving average of every tensor of `model` (same names), or null without --ema.
 */
export function saveCheckpoint<C>(
  dir: string,
  graph: ModelGraph,
  model: Map<string, Float32Tensor>,
  momentum: (Float32Tensor | null)[],
  state: Omit<TrainState<C>, 'version'>,
  extraMetadata: Record<string, string> = {},
  ema: Map<string, Float32Tensor> | null = null,
): SavedCheckpoint {
  const names = checkpointNames(state.iteration);
  const modelPath = join(dir, names.model);
  writeModelFile(modelPath, graph, model, state.iteration, extraMetadata);

  const learnable = graph.params.filter((p) => p.learnable);
  if (momentum.length !== learnable.length) {
    throw new Error(`saveCheckpoint: ${momentum.length} momentum buffers for ${learnable.length} learnable tensors`);
  }
  const stateTensors = new Map<string, Tensor>();
  learnable.forEach((p, i) => {
    const m = momentum[i];
    if (m) stateTensors.set(MOMENTUM_PREFIX + p.name, m);
  });
  if (ema) for (const [name, t] of ema) stateTensors.set(EMA_PREFIX + name, t);
  const full: TrainState<C> = { version: STATE_VERSION, ...state };
  const statePath = join(dir, names.state);
  writeSafetensorsFile(statePath, stateTensors, { state: JSON.stringify(full) });
  let emaPath: string | null = null;
  if (ema) {
    emaPath = join(dir, names.ema);
    writeModelFile(emaPath, graph, ema, state.iteration, { ...extraMetadata, weights: 'ema' });
  }

  const pointer: LatestPointer = { iteration: state.iteration, model: names.model, state: names.state };
  writeFileAtomic(join(dir, LATEST_FILE), JSON.stringify(pointer, null, 1) + '\n');
  return { modelPath, statePath, emaPath };
}

/**
 * Write a model file (atomically): every tensor under the released names,
 * each BN's `num_batches_tracked` (= iteration), our variant metadata plus
 * `iteration` and `extraMetadata`. What ckpt-N.safetensors and
 * best.safetensors hold.
 */
export function writeModelFile(
  path: string,
  graph: ModelGraph,
  model: Map<string, Float32Tensor>,
  iteration: number,
  extraMetadata: Record<string, string> = {},
): void {
  const modelTensors = new Map<string, Tensor>(model);
  // PyTorch's BatchNorm2d has this buffer; providing it keeps strict load_state_dict quiet. Our loaders ignore it.
  for (const p of graph.params) {
    if (p.kind === 'running_mean') {
      const bn = p.name.slice(0, -'.running_mean'.length);
      modelTensors.set(`${bn}.num_batches_tracked`, { dtype: 'int64', shape: [], data: BigInt64Array.of(BigInt(iteration)) });
    }
  }
  writeSafetensorsFile(path, modelTensors, checkpointMetadata(graph.variant, { iteration: String(iteration), ...extraMetadata }));
}

/** The latest complete checkpoint of a run folder, or null when it has none. */
export function readLatest(dir: string): LatestPointer | null {
  const path = join(dir, LATEST_FILE);
  if (!existsSync(path)) return null;
  let p: LatestPointer;
  try {
    p = JSON.parse(readFileSync(path, 'utf8')) as LatestPointer;
  } catch (err) {
    throw new ExtdError(`${path}: not valid JSON (${(err as Error).message})`);
  }
  if (!Number.isInteger(p.iteration) || typeof p.model !== 'string' || typeof p.state !== 'string') {
    throw new ExtdError(`${path}: expected {"iteration": N, "model": FILE, "state": FILE}, got ${JSON.stringify(p)}`);
  }
  return p;
}

export interface LoadedTrainingCheckpoint<C> {
  pointer: LatestPointer;
  model: Map<string, Tensor>;
  /** Momentum buffers by parameter name (absent: the parameter had not been stepped). */
  momentum: Map<string, Tensor>;
  /** The moving average of the weights by tensor name (empty: the run had no --ema). */
  ema: Map<string, Tensor>;
  state: TrainState<C>;
}

/** Load what readLatest() points at, checking the two files belong together. */
export async function loadCheckpoint<C>(dir: string): Promise<LoadedTrainingCheckpoint<C> | null> {
  const pointer = readLatest(dir);
  if (!pointer) return null;
  const modelFile = await readWeightsFile(join(dir, pointer.model));
  const stateFile = await readWeightsFile(join(dir, pointer.state));
  const raw = stateFile.metadata.state;
  if (!raw) throw new ExtdError(`${join(dir, pointer.state)}: no 'state' metadata (not a training state file)`);
  const state = JSON.parse(raw) as TrainState<C>;
  if (state.version !== STATE_VERSION) {
    throw new ExtdError(`${join(dir, pointer.state)}: state version ${state.version}, this extd reads version ${STATE_VERSION}`);
  }
  if (state.iteration !== pointer.iteration) {
    throw new ExtdError(`${join(dir, pointer.state)}: iteration ${state.iteration} but ${LATEST_FILE} says ${pointer.iteration}`);
  }
  checkFinite(modelFile.tensors, join(dir, pointer.model));
  checkFinite(stateFile.tensors, join(dir, pointer.state));
  const momentum = new Map<string, Tensor>();
  const ema = new Map<string, Tensor>();
  for (const [name, t] of stateFile.tensors) {
    if (name.startsWith(MOMENTUM_PREFIX)) momentum.set(name.slice(MOMENTUM_PREFIX.length), t);
    else if (name.startsWith(EMA_PREFIX)) ema.set(name.slice(EMA_PREFIX.length), t);
  }
  return { pointer, model: modelFile.tensors, momentum, ema, state };
}

/**
 * Delete checkpoints (model, state and EMA files) other than the newest `keep` ones and those whose
 * iteration is a multiple of `keepEvery` (0: none kept that way); latest.json's
 * pair is never deleted. Returns the deleted iterations.
 */
export function pruneCheckpoints(dir: string, keep: number, keepEvery: number): number[] {
  const latest = readLatest(dir);
  const iters = readdirSync(dir)
    .map((f) => /^ckpt-(\d+)\.safetensors$/.exec(f))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => b - a);
  const deleted: number[] = [];
  iters.forEach((it, rank) => {
    if (rank < keep || it === latest?.iteration || (keepEvery > 0 && it % keepEvery === 0)) return;
    const n = checkpointNames(it);
    rmSync(join(dir, n.model), { force: true });
    rmSync(join(dir, n.state), { force: true });
    rmSync(join(dir, n.ema), { force: true });
    deleted.push(it);
  });
  return deleted;
}
