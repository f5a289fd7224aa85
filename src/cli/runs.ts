// `runs <experiment>`: compare the runs of an experiment.
import type { Argv, CommandModule } from 'yargs';
import { compareRuns, comparisonTable } from '../runs/compare.js';
import { experimentsFolderOption } from './flags.js';

function builder(y: Argv): Argv {
  return experimentsFolderOption(y)
    .positional('experiment', {
      type: 'string',
      describe: 'Experiment name (a folder under the experiments folder)',
    })
    .option('json', { type: 'boolean', describe: 'Print JSON instead of the table' })
    .option('chart', {
      type: 'boolean',
      default: true,
      describe: 'Write comparison.png (--no-chart: do not)',
    });
}

async function handler(argv: Record<string, unknown>): Promise<void> {
  const comparison = await compareRuns(String(argv.experiment), {
    experimentsFolder: argv.experimentsFolder as string,
    writeChart: argv.chart !== false,
  });
  if (argv.json === true) {
    const { rows, ...rest } = comparison;
    // Per-epoch histories make the JSON long; the table's fields are what machines compare.
    console.log(
      JSON.stringify(
        { ...rest, rows: rows.map(({ history, ...row }) => ({ ...row, epochs: history.length })) },
        null,
        2,
      ),
    );
    return;
  }
  if (comparison.rows.length === 0) {
    console.log(`no runs in ${comparison.path}`);
    return;
  }
  console.log(comparisonTable(comparison));
  if (comparison.best) console.log(`\n* best validation accuracy: ${comparison.best}`);
  if (comparison.chart) console.log(`chart: ${comparison.chart}`);
}

export const runsCommand: CommandModule = {
  command: 'runs <experiment>',
  describe: 'Compare the runs of an experiment: a table (or --json) and <experiment>/comparison.png',
  builder,
  handler,
};
