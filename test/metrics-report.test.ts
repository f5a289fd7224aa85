// The metrics people report, as a user reads them in metrics.json and from `evaluate`: precision,
// recall and F1 per class with macro and weighted means (checked against values worked by hand, as
// scikit-learn's classification_report gives them), top-k accuracy, and the confusion matrix picture.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { evaluate, train } from '../src/index.js';
import { classificationReport } from '../src/training/evaluate.js';
import { tempFolder } from './helpers/cli.js';

describe('classification report', () => {
  it('matches the hand-worked values (zero division gives 0)', () => {
    // rows: true class, columns: predicted; class 2 is never predicted.
    const r = classificationReport([
      [3, 1, 0],
      [1, 2, 0],
      [2, 0, 0],
    ]);
    expect(r.support).toEqual([4, 3, 2]);
    expect(r.precision).toEqual([3 / 6, 2 / 3, 0]);
    expect(r.recall).toEqual([3 / 4, 2 / 3, 0]);
    expect(r.f1[0]).toBeCloseTo(0.6, 12);
    expect(r.f1[1]).toBeCloseTo(2 / 3, 12);
    expect(r.f1[2]).toBe(0);
    expect(r.macro.precision).toBeCloseTo((0.5 + 2 / 3) / 3, 12);
    expect(r.macro.recall).toBeCloseTo((0.75 + 2 / 3) / 3, 12);
    expect(r.weighted.recall).toBeCloseTo(5 / 9, 12); // weighted recall = accuracy
    expect(r.weighted.f1).toBeCloseTo((0.6 * 4 + (2 / 3) * 3) / 9, 12);
  });
});

describe('a run reports them', () => {
  it('in metrics.json and from evaluate(), with top-k and confusion.png', async () => {
    const experimentsFolder = tempFolder('ic-metrics-');
    const { runPath, metrics } = await train({
      experimentName: 'm',
      runName: 'r',
      experimentsFolder,
      dataset: 'synthetic',
      model: 'net',
      epochs: 1,
      batchSize: 64,
      device: 'cpu',
    });
    const test = metrics.test;
    expect(test.recall).toEqual(test.perClassAccuracy);
    expect(test.support.reduce((a, b) => a + b, 0)).toBe(test.count);
    expect(test.topK['1']).toBeCloseTo(test.accuracy, 12);
    expect(Object.keys(test.topK)).toEqual(['1', '2', '3', '4', '5']);
    for (let k = 2; k <= 5; k++)
      expect(test.topK[String(k)]).toBeGreaterThanOrEqual(test.topK[String(k - 1)]!);
    expect(test.weighted.recall).toBeCloseTo(test.accuracy, 12);

    const saved = JSON.parse(readFileSync(join(runPath, 'metrics.json'), 'utf8')) as { test: typeof test };
    expect(saved.test.macro.f1).toBeCloseTo(test.macro.f1, 12);
    expect(saved.test.topK).toEqual(test.topK);
    const png = join(runPath, 'confusion.png');
    expect(existsSync(png)).toBe(true);
    expect(readFileSync(png).subarray(1, 4).toString()).toBe('PNG');

    const again = await evaluate('m/r', { experimentsFolder, device: 'cpu' });
    expect(again.f1).toEqual(test.f1);
    expect(again.topK).toEqual(test.topK);
  }, 120_000);
});

describe('the validation split', () => {
  it('is stratified: each class gives its share (largest remainder), seeded', async () => {
    const { splitValidation } = await import('../src/data/dataset.js');
    const labels = Uint8Array.from([
      ...Array<number>(100).fill(0),
      ...Array<number>(10).fill(1),
      ...Array<number>(30).fill(2),
    ]);
    const set = {
      images: new Uint8Array(labels.length * 3),
      labels,
      count: labels.length,
      height: 1,
      width: 1,
      channels: 3,
    };
    const { train: kept, validation } = splitValidation(set, 0.1, 4);
    const perClass = (l: Uint8Array) => [0, 1, 2].map((c) => l.filter((x) => x === c).length);
    expect(perClass(validation!.labels)).toEqual([10, 1, 3]);
    expect(perClass(kept.labels)).toEqual([90, 9, 27]);
    expect(splitValidation(set, 0.1, 4).validation!.labels).toEqual(validation!.labels);
    // 14 of 140 at 0.1; at 0.05, 7: 5 + 0.5 + 1.5 -> 5, 0 or 1, 1 or 2 by remainder (ties: lower class).
    expect(perClass(splitValidation(set, 0.05, 4).validation!.labels)).toEqual([5, 1, 1]);
  });
});
