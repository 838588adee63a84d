import { ExtdError } from '@extd/core/utils/errors';
import { UsageError } from './args.js';
import type { Command } from './command.js';

// Each subcommand lives in its own module and is loaded only when called, so
// `extd detect` never pays for (or fails on) the training addon or plotting.
const COMMANDS: Record<string, { summary: string; load: () => Promise<Command> }> = {
  detect: { summary: 'detect faces in images (boxes, --json, --draw)', load: async () => (await import('./detect.js')).command },
  info: { summary: 'variant, parameters, MACs and tensors of a model or variant', load: async () => (await import('./info.js')).command },
  convert: { summary: 'convert a PyTorch .pth checkpoint to safetensors', load: async () => (await import('./convert.js')).command },
  quantize: { summary: 'calibrate a model for int8 inference (activation ranges from images)', load: async () => (await import('./quantize.js')).command },
  eval: {
    summary: 'evaluate a model on WIDER FACE or your own annotated set (predictions, AP, PR plots)',
    load: async () => (await import('./eval.js')).command,
  },
  'eval-preds': { summary: 'score a WIDER FACE prediction folder (easy/medium/hard AP)', load: async () => (await import('./eval-preds.js')).command },
  train: { summary: 'train or fine-tune a model (WIDER, COCO, Pascal VOC, YOLO annotations; libtorch)', load: async () => loadTrainingCommand('train') },
  split: { summary: 'split an annotated set into train.txt / val.txt image lists (seeded)', load: async () => (await import('./split.js')).command },
  'plot-log': { summary: 'draw the loss and validation curves of a training log.jsonl to PNG', load: async () => loadTrainingCommand('plot-log') },
};

/** The package that provides `extd train` and `extd plot-log` (it compiles the libtorch addon, so it is installed apart). */
export const TRAINING_PACKAGE = '@extd/train';

/**
 * Loads a command of the training package, or says in one line how to get it.
 * The specifier is not a literal: `extd` does not depend on the training
 * package (that would make every install compile the addon), it finds it when
 * it is installed next to it.
 */
export async function loadTrainingCommand(name: 'train' | 'plot-log', packageName = TRAINING_PACKAGE): Promise<Command> {
  let mod: { command: Command };
  try {
    mod = (await import(`${packageName}/cli/${name}`)) as { command: Command };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if ((e.code === 'ERR_MODULE_NOT_FOUND' || e.code === 'MODULE_NOT_FOUND') && e.message.includes(packageName)) {
      throw new ExtdError(`the training package is not installed: npm install ${packageName} (it compiles a libtorch addon; see its README)`);
    }
    throw err;
  }
  return mod.command;
}

function help(): string {
  const rows = Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(12)} ${c.summary}`);
  return ['usage: extd <command> [options]', '', 'commands:', ...rows, '', 'extd <command> --help for its options'].join('\n');
}

/** Exit status for an internal error (a bug in extd), as sysexits' EX_SOFTWARE. */
export const EXIT_BUG = 70;

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(help());
    return name ? 0 : 2;
  }
  const entry = COMMANDS[name];
  if (!entry) {
    console.error(`extd: unknown command '${name}' (commands: ${Object.keys(COMMANDS).join(', ')})`);
    return 2;
  }
  return runCommand(name, async () => {
    const cmd = await entry.load();
    if (rest.includes('--help') || rest.includes('-h')) {
      console.log(cmd.usage);
      return 0;
    }
    return cmd.run(rest);
  });
}

/**
 * Run a command and turn what it throws into output and an exit status:
 * a UsageError prints one line and returns 2, another ExtdError (bad input)
 * one line and 1; anything else is a bug in extd: its stack trace is printed
 * with a request to report it, and the status is EXIT_BUG.
 */
export async function runCommand(name: string, run: () => Promise<number>): Promise<number> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`extd ${name}: ${err.message} (extd ${name} --help for usage)`);
      return 2;
    }
    if (err instanceof ExtdError) {
      console.error(`extd ${name}: ${err.message}`);
      return 1;
    }
    console.error(`extd ${name}: internal error: this is a bug in extd, please report it with the command line and the trace below`);
    console.error(err instanceof Error ? (err.stack ?? `${err.name}: ${err.message}`) : String(err));
    return EXIT_BUG;
  }
}
