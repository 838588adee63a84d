import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ExtdError } from './utils/errors.js';
import { modelFromTensors, type LoadedModel } from './weights/checkpoint.js';
import { readWeightsBytes } from './weights/format.js';
import { readWeightsFile } from './weights/files-node.js';

/**
 * The model bundled with the package (trained by `extd train`, see README),
 * used when no model is given.
 */
export const BUNDLED_MODEL_PATH = fileURLToPath(new URL('../models/extd-default.safetensors', import.meta.url));

/** A model as users give it: a file path, the bytes of a .safetensors/.pth file, or an already loaded model. */
export type ModelSource = string | Uint8Array | ArrayBuffer | LoadedModel;

/** Load and check a checkpoint (Node). `variant` is needed only for ReLU/LeakyReLU files without metadata. */
export async function loadModel(model?: ModelSource, variant?: string): Promise<LoadedModel> {
  if (model === undefined) {
    if (!existsSync(BUNDLED_MODEL_PATH)) {
      throw new ExtdError(`no model given and no bundled model at ${BUNDLED_MODEL_PATH}; pass one (e.g. --model EXTD_64.pth)`);
    }
    model = BUNDLED_MODEL_PATH;
  }
  if (typeof model === 'string') {
    const { tensors, metadata } = await readWeightsFile(model);
    return modelFromTensors(tensors, metadata, model, variant);
  }
  if (model instanceof Uint8Array || model instanceof ArrayBuffer) {
    const bytes = model instanceof Uint8Array ? model : new Uint8Array(model);
    const { tensors, metadata } = readWeightsBytes(bytes, 'model bytes');
    return modelFromTensors(tensors, metadata, 'model bytes', variant);
  }
  return model;
}
