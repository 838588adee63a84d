import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { BUNDLED_MODEL_URLS, BUNDLED_MODELS, DEFAULT_MODEL_NAME, isBundledModelName, looksLikeModelName, unknownModelError } from '@extd/core/model/bundled';
import { ExtdError } from '@extd/core/utils/errors';
import { modelFromTensors, type LoadedModel } from '@extd/core/weights/checkpoint';
import { readWeightsBytes } from '@extd/core/weights/format';
import { readWeightsFile } from './weights/files-node.js';

/** Path of a bundled model's file inside the installed @extd/core (`models/`). */
export function bundledModelPath(name: keyof typeof BUNDLED_MODELS): string {
  return fileURLToPath(BUNDLED_MODEL_URLS[name]());
}

/** The file used when no model is given: the released EXTD-32 (`extd-32`). */
export const BUNDLED_MODEL_PATH = bundledModelPath(DEFAULT_MODEL_NAME);

/**
 * A model as users give it: a bundled model name (`extd-32`, `extd-48`,
 * `extd-64`, `extd-32-scratch`), a file path, the bytes of a
 * .safetensors/.pth file, or an already loaded model.
 */
export type ModelSource = string | Uint8Array | ArrayBuffer | LoadedModel;

/**
 * The file a model string names: a bundled model name resolves to the
 * package's own file, anything else is a path. undefined means the default
 * model (`extd-32`).
 * @throws ExtdError for a string that is neither a name nor an existing file, listing the names.
 */
export function resolveModelPath(model: string | undefined, what = 'model'): string {
  if (model === undefined) model = DEFAULT_MODEL_NAME;
  if (isBundledModelName(model)) {
    const path = bundledModelPath(model);
    if (!existsSync(path)) throw new ExtdError(`${what} '${model}': the bundled file ${path} is missing from this installation`);
    return path;
  }
  if (!existsSync(model) && looksLikeModelName(model)) throw unknownModelError(model, what);
  return model;
}

/**
 * Load and check a checkpoint (Node). Default: the bundled `extd-32`.
 * `variant` is needed only for ReLU/LeakyReLU files without metadata.
 * @throws ExtdError for an unknown name, a missing or unreadable file, or tensors that do not fit the model definition.
 */
export async function loadModel(model?: ModelSource, variant?: string): Promise<LoadedModel> {
  if (model === undefined || typeof model === 'string') {
    const path = resolveModelPath(model);
    const { tensors, metadata } = await readWeightsFile(path);
    return modelFromTensors(tensors, metadata, typeof model === 'string' ? model : DEFAULT_MODEL_NAME, variant);
  }
  if (model instanceof Uint8Array || model instanceof ArrayBuffer) {
    const bytes = model instanceof Uint8Array ? model : new Uint8Array(model);
    const { tensors, metadata } = readWeightsBytes(bytes, 'model bytes');
    return modelFromTensors(tensors, metadata, 'model bytes', variant);
  }
  return model;
}
