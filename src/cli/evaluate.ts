// `evaluate <run>`: a run's model on its test split or other data, as a text report or JSON.
import { basename, dirname } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { flagSpecs, parseOptions } from '../config.js';
import { evaluateOptionsSchema } from '../model-options.js';
import { percent } from '../reports/format.js';
import { terminalProgress } from '../reports/progress.js';
import { evaluate, type EvaluateResult } from '../training/evaluate-run.js';
import { addModelCommandFlags, EXIT_CODES, givenFlags, runPositional } from './flags.js';

function builder(y: Argv): Argv {
  return addModelCommandFlags(runPositional(y), evaluateOptionsSchema)
    .option('json', { type: 'boolean', describe: 'Print the evaluation as JSON' })
    .example('$0 evaluate baseline/run-1', "Accuracy on the run's test split: evaluation-test.json and .png")
    .epilogue(EXIT_CODES);
}

/** Accuracy, top-k, per class (precision, recall, F1) with their averages, and the confusion matrix as aligned text; `runPath` is where the files went. */
function evaluationText(result: EvaluateResult, runPath: string): string {
  const { classNames, confusion } = result;
  const width = Math.max(12, ...classNames.map((c) => c.length));
  const classRow = (name: string, accuracy: number, p: number, r: number, f: number, images: number) =>
    `${name.padEnd(width)}  ${percent(accuracy).padStart(8)}  ${percent(p).padStart(9)}  ${percent(r).padStart(7)}  ${percent(f).padStart(7)}  ${String(images).padStart(6)}`;
  const lines = [
    `${result.name}: ${result.count} images (${result.dataset.kind}, ${result.dataset.split === 'all' ? 'all images' : 'test split'} of ${result.dataset.source})`,
    `accuracy ${percent(result.accuracy)}, loss ${result.loss.toFixed(4)}`,
    `top-k accuracy: ${Object.entries(result.topK)
      .map(([k, v]) => `top-${k} ${percent(v)}`)
      .join(', ')}`,
    '',
    `${'class'.padEnd(width)}  accuracy  precision  recall      f1  images`,
    ...classNames.map((c, k) =>
      classRow(
        c,
        result.perClassAccuracy[k]!,
        result.precision[k]!,
        result.recall[k]!,
        result.f1[k]!,
        result.support[k]!,
      ),
    ),
    classRow('macro avg', NaN, result.macro.precision, result.macro.recall, result.macro.f1, result.count),
    classRow(
      'weighted avg',
      NaN,
      result.weighted.precision,
      result.weighted.recall,
      result.weighted.f1,
      result.count,
    ),
    '',
    'confusion matrix (rows: true class, columns: predicted class)',
    [''.padEnd(width), ...classNames.map((c) => c.padStart(Math.max(6, c.length)))].join(' '),
    ...confusion.map((row, k) =>
      [
        classNames[k]!.padEnd(width),
        ...row.map((n, j) => String(n).padStart(Math.max(6, classNames[j]!.length))),
      ].join(' '),
    ),
  ];
  if (result.files) {
    lines.push('', `wrote ${basename(result.files.json)} and ${basename(result.files.chart)} in ${runPath}`);
  }
  return lines.join('\n');
}

async function handler(argv: Record<string, unknown>): Promise<void> {
  const options = parseOptions(evaluateOptionsSchema, givenFlags(argv, flagSpecs(evaluateOptionsSchema)));
  const result = await evaluate(String(argv.run), {
    ...options,
    save: true,
    progress: terminalProgress(),
    // Progress and data-loading lines go to stderr: stdout holds the report (or the JSON).
    log: (line) => process.stderr.write(line + '\n'),
  });
  if (argv.json === true) {
    console.log(JSON.stringify(result, null, 2));
    return;
  }
  console.log(evaluationText(result, result.files ? dirname(result.files.json) : ''));
}

export const evaluateCommand: CommandModule = {
  command: 'evaluate <run>',
  describe:
    "Evaluate a run's model on its test split or another dataset: accuracy, per class, confusion matrix, written to evaluation-<name>.json/.png in the run folder",
  builder,
  handler,
};
