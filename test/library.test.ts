// The library as a user imports it: train, loadRun, evaluate, and what they return.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import sharp from 'sharp';
import {
  ConfigError,
  evaluate,
  loadRun,
  predict,
  train,
  TrainingInterrupted,
  type ClassifierModel,
  type Prediction,
  type RunConfigInput,
} from '../src/index.js';
import { tempFolder } from './helpers/cli.js';

const quick = (experimentsFolder: string, runName: string): RunConfigInput => ({
  experimentName: 'lib',
  runName,
  experimentsFolder,
  dataset: 'synthetic',
  model: 'net',
  epochs: 1,
  batchSize: 32,
  learningRate: 0.05,
});

describe('library', () => {
  const experiments = join(tempFolder(), 'experiments');

  it('train() returns the run, and loadRun/evaluate read it back', async () => {
    const lines: string[] = [];
    const result = await train(quick(experiments, 'a'), { log: (l) => lines.push(l) });
    expect(result.runPath).toBe(join(experiments, 'lib', 'a'));
    expect(result.metrics.history).toHaveLength(1);
    expect(result.manifest.config.momentum).toBe(0.9); // schema default filled in
    expect(lines.some((l) => l.startsWith('backend: '))).toBe(true);

    const run = await loadRun('lib/a', experiments);
    expect(run.manifest.results.testAccuracy).toBe(result.metrics.test.accuracy);
    const evaluation = await evaluate('lib/a', { experimentsFolder: experiments });
    // Same model, same test split: the same numbers as at the end of training.
    expect(evaluation.accuracy).toBe(result.metrics.test.accuracy);
    expect(evaluation.confusion.flat().reduce((a, b) => a + b, 0)).toBe(evaluation.count);
  });

  it('loadRun(...).loadModel() is the model predict() takes: train, loadRun, predict', async () => {
    // Typechecked as a user writes it: no cast between the two loaders' types.
    const run = await loadRun('lib/a', experiments);
    const model: ClassifierModel = await run.loadModel();
    try {
      const png = await sharp({
        create: { width: 32, height: 32, channels: 3, background: { r: 200, g: 40, b: 40 } },
      })
        .png()
        .toBuffer();
      const [prediction]: Prediction[] = await predict(model, [png], { topK: 2 });
      expect(run.manifest.dataset.classNames).toContain(prediction!.label);
      expect(prediction!.top).toHaveLength(2);
      expect(prediction!.probabilities.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
      expect(model.runId).toBe('lib/a');
      // The bare tfjs model is there too, for what predict does not do.
      expect(model.layersModel.outputs[0]!.shape).toEqual([null, 10]);
    } finally {
      model.dispose();
    }
  });

  it('rejects bad options with a ConfigError naming the option', async () => {
    await expect(train({ ...quick(experiments, 'b'), batchSize: 0 })).rejects.toThrow(ConfigError);
    await expect(train({ ...quick(experiments, 'b'), batchSize: 0 })).rejects.toThrow(
      /--batch-size must be >= 1/,
    );
    expect(existsSync(join(experiments, 'lib', 'b'))).toBe(false);
  });

  it('an aborted run keeps a checkpoint that resume: true continues', async () => {
    const controller = new AbortController();
    const promise = train(
      { ...quick(experiments, 'aborted'), epochs: 3 },
      {
        log: (line) => {
          if (line.startsWith('epoch 1/3')) controller.abort();
        },
        signal: controller.signal,
      },
    );
    await expect(promise).rejects.toThrow(TrainingInterrupted);
    const error = (await promise.catch((e: unknown) => e)) as TrainingInterrupted;
    expect(error.resumeCommand).toMatch(/--run-name aborted .*--resume$/);
    expect(readdirSync(join(experiments, 'lib')).filter((n) => n.includes('aborted'))).toEqual([
      '.aborted.partial',
    ]);

    const resumed = await train(
      { experimentName: 'lib', runName: 'aborted', experimentsFolder: experiments },
      { resume: true },
    );
    expect(resumed.metrics.history.map((h) => h.epoch)).toEqual([1, 2, 3]);
    expect(resumed.manifest.resumes).toHaveLength(1);
    expect(readdirSync(join(experiments, 'lib')).filter((n) => n.includes('aborted'))).toEqual(['aborted']);
  });

  it('an abort before training starts leaves nothing behind', async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(train(quick(experiments, 'early'), { signal: controller.signal })).rejects.toThrow(
      /before training started; no run was written/,
    );
    expect(readdirSync(join(experiments, 'lib')).filter((n) => n.includes('early'))).toEqual([]);
  });
});
