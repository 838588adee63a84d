import type { FrontStage } from '../model/front.js';
import type { Float32Tensor, Tensor } from '../utils/tensor.js';

/**
 * What the detector needs from an inference engine. Implemented by
 * ort-node.ts (onnxruntime-node) and ort-web.ts (onnxruntime-web); those are
 * the only modules that import onnxruntime.
 */
export interface InferenceSession {
  /**
   * Run the network. input: N x 3 x H x W mean-subtracted RGB.
   * Returns at least `loc` (N x P x 4) and `conf` (N x P x 2), plus any
   * feature maps the model was exported with.
   */
  run(input: Float32Tensor): Promise<Record<string, Float32Tensor>>;
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
 * A native runner of the model's front stage (model/front.ts), run before the
 * onnxruntime session of the rest of the graph. Implemented by the Node
 * package's kernels (src/runtime/native-front.ts).
 */
export interface FrontRunner {
  /** Short name of the kernels, for `detector.engine` (e.g. 'extd-kernels'). */
  readonly name: string;
  /**
   * input: 1 x 3 x H x W mean-subtracted RGB. Returns 1 x C x ceil(H/2) x
   * ceil(W/2). The returned tensor is the caller's until it passes it back
   * to `recycle` (its buffer may then be reused by a later run).
   */
  run(input: Float32Tensor): Promise<Float32Tensor>;
  /** Hand a tensor returned by `run` back for reuse, once nothing reads it any more. */
  recycle(output: Float32Tensor): void;
  /** Free the runner's memory; it is not used afterwards. */
  release(): Promise<void>;
}

/**
 * A runtime's front-stage factory: null when it cannot run this stage (no
 * native kernels built, or a layout they do not take); the detector then
 * runs the whole graph on its session.
 */
export type CreateFront = (stage: FrontStage, weights: Map<string, Tensor>, options: SessionOptions) => FrontRunner | null;

/**
 * One session out of a front runner and a session over the rest of the graph
 * (exportOnnx with `from`). Calls may overlap: each gets its own front output.
 */
export function chainSessions(front: FrontRunner, rest: InferenceSession): InferenceSession {
  return {
    async run(input: Float32Tensor) {
      const mid = await front.run(input);
      try {
        return await rest.run(mid);
      } finally {
        front.recycle(mid);
      }
    },
    async release() {
      await rest.release();
      await front.release();
    },
  };
}
