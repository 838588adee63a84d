import * as ort from 'onnxruntime-node';
import type { Float32Tensor } from '@extd/core/utils/tensor';
import type { CreateSession, InferenceSession, SessionOptions } from '@extd/core/runtime/backend';

/** onnxruntime-node session over our tensor type. The only Node module that imports onnxruntime. */
export const createOrtNodeSession: CreateSession = async (onnxModel: Uint8Array, options: SessionOptions): Promise<InferenceSession> => {
  const session = await ort.InferenceSession.create(onnxModel, {
    intraOpNumThreads: options.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    // The arena keeps memory between runs (fresh pages are slow to touch); the memory pattern is off: it
    // allocates one more block per input size on the second run, which raised peak memory by about 60%
    // (EXTD-64, 1280x720, float32: 1.46 GB -> 0.87 GB without it; int8: 532 -> 368 MB) and made the second call as slow as the first.
    enableCpuMemArena: true,
    enableMemPattern: false,
    // Quiet: onnxruntime's warnings (e.g. about unused initializers) are not actionable for users.
    logSeverityLevel: 3,
  });
  return {
    async run(input: Float32Tensor) {
      const feeds = { [session.inputNames[0]!]: new ort.Tensor('float32', input.data, input.shape) };
      const out = await session.run(feeds);
      const result: Record<string, Float32Tensor> = {};
      for (const [name, t] of Object.entries(out)) {
        result[name] = { dtype: 'float32', shape: [...t.dims], data: t.data as Float32Array };
      }
      return result;
    },
    release: () => session.release(),
  };
};
