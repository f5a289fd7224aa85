// Early stopping and the best model, as a user meets them: training stops when the watched metric has
// not improved for --early-stopping-patience epochs; with --save-best the run's model is the best
// epoch's and the last epoch's is kept as model-last/; run.json says which epoch is which; and an
// interrupted run resumes to the same bytes.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { train, TrainingInterrupted, verifyRun, type RunConfigInput } from '../src/index.js';
import { tempFolder } from './helpers/cli.js';

const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

// The tutorial net (no batch norm) at a learning rate too small to move its predictions: validation
// accuracy stays where epoch 1 left it, so "no improvement" is certain. A constant schedule makes
// epoch 1 the same whatever the number of epochs.
const base = (experimentsFolder: string, runName: string): RunConfigInput => ({
  experimentName: 'es',
  runName,
  experimentsFolder,
  dataset: 'synthetic',
  model: 'net',
  batchSize: 64,
  learningRate: 1e-7,
  lrSchedule: 'constant',
  backend: 'wasm',
  threads: 1,
});

describe('early stopping and --save-best', () => {
  const folder = tempFolder('ic-early-');

  it('stops after `patience` epochs without improvement and keeps the best epoch as the model', async () => {
    const one = await train({ ...base(folder, 'one'), epochs: 1 });
    const { runPath, manifest, metrics } = await train({
      ...base(folder, 'best'),
      epochs: 6,
      earlyStoppingPatience: 2,
      saveBest: true,
    });
    expect(metrics.history).toHaveLength(3);
    expect(manifest.results.epochs).toEqual({ best: 1, model: 1, last: 3, stoppedEarly: true });
    // The model is epoch 1's weights (the one-epoch run's bytes); the last epoch's are beside it.
    expect(sha(join(runPath, 'model/weights.bin'))).toBe(sha(join(one.runPath, 'model/weights.bin')));
    expect(existsSync(join(runPath, 'model-last/weights.bin'))).toBe(true);
    expect(sha(join(runPath, 'model-last/weights.bin'))).not.toBe(sha(join(runPath, 'model/weights.bin')));
    expect(manifest.files['model-last/weights.bin']).toBe(sha(join(runPath, 'model-last/weights.bin')));
    expect(readFileSync(join(runPath, 'train.log'), 'utf8')).toMatch(
      /early stopping after epoch 3: validation-accuracy has not improved for 2 epochs \(best: epoch 1/,
    );
    expect((await verifyRun(runPath)).ok).toBe(true);
  }, 120_000);

  it('without --save-best the model is the last epoch, and no model-last/ is written', async () => {
    const { runPath, manifest } = await train({
      ...base(folder, 'last'),
      epochs: 6,
      earlyStoppingPatience: 2,
    });
    expect(manifest.results.epochs).toEqual({ best: 1, model: 3, last: 3, stoppedEarly: true });
    expect(existsSync(join(runPath, 'model-last'))).toBe(false);
  }, 120_000);

  it('an interrupted run resumes to the same model, model-last and epochs', async () => {
    const whole = await train({
      ...base(folder, 'whole'),
      epochs: 6,
      earlyStoppingPatience: 2,
      saveBest: true,
    });
    const controller = new AbortController();
    const input = { ...base(folder, 'cut'), epochs: 6, earlyStoppingPatience: 2, saveBest: true };
    await expect(
      train(input, { signal: controller.signal, onEpoch: (m) => void (m.epoch === 2 && controller.abort()) }),
    ).rejects.toThrow(TrainingInterrupted);
    const resumed = await train(input, { resume: true });
    expect(resumed.manifest.results.epochs).toEqual(whole.manifest.results.epochs);
    for (const file of ['model/weights.bin', 'model-last/weights.bin'])
      expect(sha(join(resumed.runPath, file)), file).toBe(sha(join(whole.runPath, file)));
  }, 180_000);
});
