/**
 * @extd/train: training and fine-tuning of EXTD on libtorch. `train()` is
 * what `extd train` runs; `plotTrainingLog` what `extd plot-log` draws.
 * Needs the native addon, built at install time when libtorch-dev is
 * present: `torchUnavailableReason()` says why it is not.
 *
 * @packageDocumentation
 * @module @extd/train
 */
export {
  train,
  TRAIN_DEFAULTS,
  RUN_DEFAULTS,
  LOG_FILE,
  BEST_MODEL_FILE,
  BEST_FILE,
  type TrainConfig,
  type RunOptions,
  type TrainResult,
  type LogRecord,
  type ValRecord,
  type BestRecord,
} from './train/trainer.js';
export { torchAvailable, torchUnavailableReason } from './train/torch.js';
export { readTrainingLog, readValidationLog, plotTrainingLog, type ValPoint } from './cli/plot-log.js';
