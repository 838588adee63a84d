import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadTrainingCommand, TRAINING_PACKAGE } from '../src/cli/main.js';
import { ExtdError } from '@extd/core/utils/errors';

test('extd train and plot-log come from @extd/train when it is installed', async () => {
  assert.equal(TRAINING_PACKAGE, '@extd/train');
  assert.equal((await loadTrainingCommand('train')).name, 'train');
  assert.equal((await loadTrainingCommand('plot-log')).name, 'plot-log');
});

test('without the training package, extd train says in one line which package to install', async () => {
  await assert.rejects(loadTrainingCommand('train', '@extd/not-installed'), (err: unknown) => {
    assert.ok(err instanceof ExtdError);
    assert.equal(err.message, 'the training package is not installed: npm install @extd/not-installed (it compiles a libtorch addon; see its README)');
    return true;
  });
});
