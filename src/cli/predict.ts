// `predict <run> <inputs..>`: classify image files and folders, as a table, JSON Lines or CSV.
import type { Argv, CommandModule } from 'yargs';
import { flagSpecs, parseOptions } from '../config.js';
import { predictOptionsSchema } from '../model-options.js';
import { EXIT, PROGRAM } from '../errors.js';
import { plural } from '../reports/format.js';
import { silentProgress, terminalProgress } from '../reports/progress.js';
import { predictRun } from '../serving/predict-files.js';
import { addModelCommandFlags, givenFlags, PARSER_CONFIGURATION, runPositional } from './flags.js';

function builder(y: Argv): Argv {
  return addModelCommandFlags(
    runPositional(
      // The CLI keeps only the last of repeated arguments, which would also keep only the last input.
      y.parserConfiguration({ ...PARSER_CONFIGURATION, 'duplicate-arguments-array': true }),
    ).positional('inputs', {
      type: 'string',
      array: true,
      describe: 'Image files (any format sharp reads), or folders searched recursively for images',
    }),
    predictOptionsSchema,
  )
    .option('json', {
      type: 'boolean',
      describe: 'JSON Lines: one object per image, with every class probability',
    })
    .option('csv', { type: 'boolean', describe: 'CSV: file, then label_i, probability_i for the top k' })
    .conflicts('json', 'csv')
    .example('$0 predict baseline/run-1 cat.jpg dog.png', 'Top 3 labels of two images')
    .example(
      '$0 predict baseline/run-1 ./photos --csv > predictions.csv',
      'Every image under ./photos, as CSV',
    )
    .epilogue(
      `Files that cannot be read are named on stderr and skipped. Exit codes: 0 every image predicted; ${EXIT.failed} some could not be read; ${EXIT.badInput} bad input.`,
    );
}

async function handler(argv: Record<string, unknown>): Promise<void> {
  const inputs = (argv.inputs as string[] | undefined) ?? [];
  const { topK, batchSize, ...modelOptions } = parseOptions(
    predictOptionsSchema,
    givenFlags(argv, flagSpecs(predictOptionsSchema)),
  );
  const format = argv.json === true ? 'json' : argv.csv === true ? 'csv' : 'table';
  // A live bar beside a table on the same terminal would garble it; JSON and CSV go to files or pipes.
  const showProgress = format !== 'table' || !process.stdout.isTTY;
  const result = await predictRun(String(argv.run), inputs, {
    ...modelOptions,
    topK,
    format,
    batchSize,
    progress: showProgress ? terminalProgress() : silentProgress,
    onError: ({ file, reason }) => process.stderr.write(`${PROGRAM}: skipped ${file}: ${reason}\n`),
  });
  if (result.note) process.stderr.write(`${result.note}\n`);
  if (result.failed.length > 0) {
    process.stderr.write(
      `${PROGRAM}: ${plural(result.predicted, 'image')} predicted, ${result.failed.length} could not be read\n`,
    );
    process.exitCode = EXIT.failed;
  }
}

export const predictCommand: CommandModule = {
  command: 'predict <run> <inputs..>',
  describe: 'Classify image files and folders: top-k labels as a table, --json or --csv',
  builder,
  handler,
};
