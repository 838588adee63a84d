#!/usr/bin/env node
import { fileURLToPath } from 'node:url';
import { main, TRAINING_PACKAGE } from '../dist/cli/main.js';

const argv = process.argv.slice(2);
let relaunched = null;
if (argv[0] === 'train') {
  // Training runs faster with tcmalloc (see @extd/train's train/allocator): start again with it preloaded.
  // Without the training package, main() says which package to install.
  const allocator = await import(`${TRAINING_PACKAGE}/train/allocator`).catch(() => null);
  if (allocator) {
    try {
      relaunched = allocator.relaunchWithTcmalloc(fileURLToPath(import.meta.url), argv);
    } catch (err) {
      console.error(`extd train: ${err.message}`);
      process.exit(2);
    }
  }
}
(relaunched ?? main(argv)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    // main() reports the commands' own errors; whatever arrives here is a bug.
    console.error('extd: internal error: this is a bug in extd, please report it with the command line and the trace below');
    console.error(err?.stack ?? String(err));
    process.exitCode = 70;
  },
);
