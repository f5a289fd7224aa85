// Issue 16's options end to end through the CLI: the recipe (AdamW, cutout, colour jitter), early
// stopping with the best model, the metrics people report, a model.json that travels, and a sweep file
// that names its metric as --wandb logs it.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCli, tempFolder, type CliResult } from './helpers/cli.js';

const cwd = tempFolder('ic-cli-recipe-');
const run = join(cwd, 'experiments', 'e', 'r');

describe('issue 16 through the CLI', () => {
  let trained: CliResult;
  beforeAll(async () => {
    trained = await runCli(
      [
        '--experiment-name',
        'e',
        '--run-name',
        'r',
        '--dataset',
        'synthetic',
        '--model',
        'net',
        '--epochs',
        '4',
        '--batch-size',
        '64',
        '--optimizer',
        'adamw',
        '--learning-rate',
        '0.002',
        '--cutout',
        '8',
        '--color-jitter',
        '0.2',
        '--early-stopping-patience',
        '1',
        '--save-best',
        '--backend',
        'wasm',
      ],
      { cwd },
    );
  }, 180_000);

  it('trains with the options and records them, the epochs and the metrics', () => {
    expect(trained.code, trained.stderr).toBe(0);
    const manifest = JSON.parse(readFileSync(join(run, 'run.json'), 'utf8')) as {
      config: Record<string, unknown>;
      results: { epochs: { best: number; model: number; last: number; stoppedEarly: boolean } };
    };
    expect(manifest.config).toMatchObject({
      optimizer: 'adamw',
      cutout: 8,
      colorJitter: 0.2,
      earlyStoppingPatience: 1,
      saveBest: true,
    });
    const { best, model, last } = manifest.results.epochs;
    expect(model).toBe(best);
    expect(existsSync(join(run, 'model-last'))).toBe(best !== last);
    const metrics = JSON.parse(readFileSync(join(run, 'metrics.json'), 'utf8')) as {
      test: { f1: number[]; macro: object; weighted: object; topK: Record<string, number> };
    };
    expect(metrics.test.f1).toHaveLength(10);
    expect(Object.keys(metrics.test.topK)).toEqual(['1', '2', '3', '4', '5']);
    expect(readFileSync(join(run, 'confusion.png')).subarray(1, 4).toString()).toBe('PNG');
    const modelJson = JSON.parse(readFileSync(join(run, 'model/model.json'), 'utf8')) as {
      userDefinedMetadata: { imageClassifier: { classNames: string[] } };
    };
    expect(modelJson.userDefinedMetadata.imageClassifier.classNames).toHaveLength(10);
  });

  it('evaluate prints precision, recall, F1, their averages and top-k accuracy', async () => {
    const r = await runCli(['evaluate', 'e/r'], { cwd });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^top-k accuracy: top-1 [\d.]+%, top-2 [\d.]+%/m);
    expect(r.stdout).toMatch(/^class\s+accuracy\s+precision\s+recall\s+f1\s+images$/m);
    expect(r.stdout).toMatch(/^macro avg\s+-\s+[\d.]+%/m);
    expect(r.stdout).toMatch(/^weighted avg\s+-\s+[\d.]+%/m);
  });

  it('a sweep file may name its metric as --wandb logs it', async () => {
    const file = join(cwd, 'sweep.yaml');
    writeFileSync(
      file,
      'method: grid\nmetric: {name: validation/loss, goal: minimize}\nparameters:\n  seed: {values: [1, 2]}\n',
    );
    const r = await runCli(['sweep', file, '--dataset', 'synthetic', '--matrix'], { cwd });
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { include: unknown[] }).include).toHaveLength(2);
  });
});
