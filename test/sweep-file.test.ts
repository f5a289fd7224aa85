// A sweep file names its metric the way its author knows it: ours (camelCase or snake_case) or as
// `--wandb` logs it (W&B's panel names), so the same file serves a W&B sweep and `sweep`.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, readSweepFile } from '../src/index.js';
import { tempFolder } from './helpers/cli.js';

const folder = tempFolder('ic-sweep-file-');

function sweepWithMetric(name: string, goal = 'maximize'): string {
  const file = join(folder, `${name.replace(/\W/g, '_')}.yaml`);
  writeFileSync(
    file,
    [
      'method: grid',
      `metric: {name: ${name}, goal: ${goal}}`,
      'parameters:',
      '  seed: {values: [1, 2]}',
    ].join('\n'),
  );
  return file;
}

describe('sweep files', () => {
  it.each([
    ['validation/accuracy', 'validationAccuracy'],
    ['validation/loss', 'validationLoss'],
    ['test/accuracy', 'testAccuracy'],
    ['test/loss', 'testLoss'],
    ['validation_accuracy', 'validationAccuracy'],
    ['testLoss', 'testLoss'],
  ])('take the metric %s as %s', (given, ours) => {
    const sweep = readSweepFile(sweepWithMetric(given), { dataset: 'synthetic' });
    expect(sweep.metric.name).toBe(ours);
    expect(sweep.trials).toHaveLength(2);
  });

  it('refuse a metric nobody logs, in one line naming the file', () => {
    const file = sweepWithMetric('train/throughput');
    expect(() => readSweepFile(file, { dataset: 'synthetic' })).toThrow(ConfigError);
    expect(() => readSweepFile(file, { dataset: 'synthetic' })).toThrow(
      new RegExp(`^sweep file ${file}: [^\\n]*metric`),
    );
  });
});
