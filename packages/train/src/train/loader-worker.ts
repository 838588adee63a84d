/**
 * Worker thread of the training loader (loader.ts): decodes and augments one
 * sample per message and sends the network input back, transferring its
 * buffer (no copy). Errors go back as messages so one bad image names itself
 * instead of killing the pool.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { ExtdError } from '@extd/core/utils/errors';
import type { AugmentOptions } from './augment.js';
import { prepareSample, type WorkerReply } from './loader.js';

interface Task {
  id: number;
  path: string;
  boxes: Float32Array;
  key: number[];
}

const port = parentPort;
if (!port) throw new Error('loader-worker.ts must run as a worker thread');
const augmentOptions = (workerData as { augment: Partial<AugmentOptions> }).augment;

port.on('message', (task: Task) => {
  prepareSample(task.path, task.boxes, task.key, augmentOptions).then(
    (r) => {
      const reply: WorkerReply = { id: task.id, ok: true, input: r.input, boxes: r.boxes };
      port.postMessage(reply, [r.input.buffer as ArrayBuffer, r.boxes.buffer as ArrayBuffer]);
    },
    (err: unknown) => {
      const e = err as Error;
      const reply: WorkerReply = { id: task.id, ok: false, message: e.message ?? String(err), user: err instanceof ExtdError };
      port.postMessage(reply);
    },
  );
});
