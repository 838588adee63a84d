import type { BackboneStage } from '../model/backbone.js';
import type { Float32Tensor, Tensor } from '../utils/tensor.js';

/**
 * What the detector needs from an inference engine. Implemented by
 * ort-node.ts (onnxruntime-node) and ort-web.ts (onnxruntime-web); those are
 * the only modules that import onnxruntime.
 */
export interface InferenceSession {
  /**
   * Run the network. input: N x 3 x H x W mean-subtracted RGB, or, for a
   * graph exported with `from`, its inputs by name.
   * Returns at least `loc` (N x P x 4) and `conf` (N x P x 2), plus any
   * feature maps the model was exported with.
   */
  run(input: Float32Tensor | Record<string, Float32Tensor>): Promise<Record<string, Float32Tensor>>;
  /** Free the engine's session and its memory; the session is not used afterwards. */
  release(): Promise<void>;
}

/** Options a CreateSession factory receives. */
export interface SessionOptions {
  /** Intra-op threads (Node: CPU threads; web: wasm threads, honoured only when the page is cross-origin isolated). */
  threads: number;
  /** Whether idle engine threads may spin waiting for work (default: the engine's own default). */
  spin?: boolean;
}

/**
 * A runtime's session factory: builds an InferenceSession from the bytes of an
 * ONNX model (exportOnnx's output). Each runtime package passes its own to createDetectorWith.
 */
export type CreateSession = (onnxModel: Uint8Array, options: SessionOptions) => Promise<InferenceSession>;

/**
 * A native runner of the model's backbone (model/backbone.ts), run before the
 * onnxruntime session of the rest of the graph. Implemented by the Node
 * package's kernels (src/runtime/native-backbone.ts).
 */
export interface BackboneRunner {
  /** Short name of the kernels, for `detector.engine` (e.g. 'extd-kernels'). */
  readonly name: string;
  /**
   * input: 1 x 3 x H x W mean-subtracted RGB. Returns the stage's outputs by
   * value name (BackboneStage.outputs), each 1 x C x h x w. The tensors are
   * the caller's until it passes them back to `recycle` (their buffers may
   * then be reused by a later run).
   */
  run(input: Float32Tensor): Promise<Record<string, Float32Tensor>>;
  /** Hand the outputs of a `run` back for reuse, once nothing reads them any more. */
  recycle(outputs: Record<string, Float32Tensor>): void;
  /** Free the runner's memory; it is not used afterwards. */
  release(): Promise<void>;
}

/**
 * A runtime's backbone factory: null when it cannot run this stage (no
 * native kernels built, or a layout they do not take); the detector then
 * runs the whole graph on its session.
 */
export type CreateBackbone = (stage: BackboneStage, weights: Map<string, Tensor>, options: SessionOptions) => BackboneRunner | null;

/**
 * One session out of a backbone runner and a session over the rest of the
 * graph (exportOnnx with `from`). Calls may overlap: each gets its own
 * backbone outputs.
 */
export function chainSessions(backbone: BackboneRunner, rest: InferenceSession): InferenceSession {
  return {
    async run(input: Float32Tensor | Record<string, Float32Tensor>) {
      if (!('data' in input) || !(input.data instanceof Float32Array)) throw new Error('chained session: expected the image tensor');
      const mid = await backbone.run(input as Float32Tensor);
      try {
        return await rest.run(mid);
      } finally {
        backbone.recycle(mid);
      }
    },
    async release() {
      await rest.release();
      await backbone.release();
    },
  };
}
