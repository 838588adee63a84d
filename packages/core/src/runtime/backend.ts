import type { RgbImage } from '../image/types.js';
import type { ModelGraph } from '../model/graph.js';
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
  /**
   * Optional: hand back the outputs of a run that nothing reads any more,
   * so that a later run may reuse their buffers (fresh memory costs page
   * faults). The detector does this after post-processing.
   */
  recycle?(outputs: Record<string, Float32Tensor>): void;
  /**
   * Optional: the network on an RGB image (H x W x 3 uint8) minus `mean` (3
   * values, RGB), the engine converting the pixels itself; the same outputs
   * as run() on the converted 1 x 3 x H x W input. The detector uses it in
   * place of run() where present. The engine must not read `image` after
   * this call returns (copy it if the run starts later).
   */
  runRgb?(image: RgbImage, mean: readonly number[]): Promise<Record<string, Float32Tensor>>;
  /** Free the engine's session and its memory; the session is not used afterwards. */
  release(): Promise<void>;
}

/** Options a CreateSession factory receives. */
export interface SessionOptions {
  /** Intra-op threads (Node: CPU threads; web: wasm threads, honoured only when the page is cross-origin isolated). */
  threads: number;
  /**
   * CreateNativeSession only: the arithmetic the session must run, 'float32'
   * (default) or 'int8'; a native engine without it returns null.
   */
  precision?: 'float32' | 'int8';
}

/**
 * A runtime's session factory: builds an InferenceSession from the bytes of an
 * ONNX model (exportOnnx's output). Each runtime package passes its own to createDetectorWith.
 */
export type CreateSession = (onnxModel: Uint8Array, options: SessionOptions) => Promise<InferenceSession>;

/**
 * A runtime's own engine for the whole network (the Node package's
 * native kernels, src/runtime/native-network.ts): a session named for
 * `detector.engine`, or null where it is unavailable (not built) or does not
 * take this graph; the detector then exports ONNX for `CreateSession`.
 */
export type CreateNativeSession = (
  graph: ModelGraph,
  weights: Map<string, Tensor>,
  options: SessionOptions,
) => (InferenceSession & { readonly name: string }) | null;
