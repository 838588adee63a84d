import { ExtdError } from '../utils/errors.js';
import type { Command } from './command.js';

// Each subcommand lives in its own module and is loaded only when called, so
// `extd detect` never pays for (or fails on) the training addon or plotting.
const COMMANDS: Record<string, { summary: string; load: () => Promise<Command> }> = {
  detect: { summary: 'detect faces in images (boxes, --json, --draw)', load: async () => (await import('./detect.js')).command },
  info: { summary: 'variant, parameters, MACs and tensors of a model or variant', load: async () => (await import('./info.js')).command },
  convert: { summary: 'convert a PyTorch .pth checkpoint to safetensors', load: async () => (await import('./convert.js')).command },
  quantize: { summary: 'calibrate a model for int8 inference (activation ranges from images)', load: async () => (await import('./quantize.js')).command },
  eval: { summary: 'evaluate a model on WIDER FACE (predictions, AP, PR plots)', load: async () => (await import('./eval.js')).command },
  'eval-preds': { summary: 'score a WIDER FACE prediction folder (easy/medium/hard AP)', load: async () => (await import('./eval-preds.js')).command },
  train: { summary: 'train a model from scratch on WIDER FACE (libtorch)', load: async () => (await import('./train.js')).command },
  'plot-log': { summary: 'draw the loss curves of a training log.jsonl to PNG', load: async () => (await import('./plot-log.js')).command },
};

function help(): string {
  const rows = Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(12)} ${c.summary}`);
  return ['usage: extd <command> [options]', '', 'commands:', ...rows, '', 'extd <command> --help for its options'].join('\n');
}

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
  try {
    const cmd = await entry.load();
    if (rest.includes('--help') || rest.includes('-h')) {
      console.log(cmd.usage);
      return 0;
    }
    return await cmd.run(rest);
  } catch (err) {
    if (err instanceof ExtdError) {
      console.error(`extd ${name}: ${err.message}`);
      return 1;
    }
    throw err;
  }
}
