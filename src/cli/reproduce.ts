// `reproduce <run>`: retrain a run from its run.json and compare the two.
import type { Argv, CommandModule } from 'yargs';
import { EXIT } from '../errors.js';
import { terminalProgress } from '../reports/progress.js';
import { reproduce, type ReproductionReport } from '../training/reproduce.js';
import { experimentsFolderOption, EXIT_CODES, jsonOption, logTo, runPositional } from './flags.js';
import { TRAIN_INTERRUPT_MESSAGES, trainingSignals } from './signals.js';

function builder(y: Argv): Argv {
  return jsonOption(runPositional(experimentsFolderOption(y)))
    .option('run-name', { type: 'string', describe: 'Name of the new run (default <run>-repro-N)' })
    .option('allow-data-change', {
      type: 'boolean',
      describe: "Go on when the data or the parent run's weights no longer match the recorded checksums",
    })
    .epilogue(EXIT_CODES);
}

function print(report: ReproductionReport): void {
  console.log(`\nreproduction of ${report.original}: ${report.reproduction}`);
  if (report.lineage.length > 0) console.log(`lineage: ${[report.original, ...report.lineage].join(' <- ')}`);
  const same = report.weights.original === report.weights.reproduction;
  console.log(
    `weights sha256: ${report.weights.original.slice(0, 16)} -> ${report.weights.reproduction.slice(0, 16)} (${same ? 'same' : 'different'})`,
  );
  console.log(
    report.metricDifferences.length === 0
      ? 'metrics: all equal'
      : `metrics: ${report.metricDifferences.length} differ\n  ${report.metricDifferences.slice(0, 10).join('\n  ')}`,
  );
  console.log(
    report.environmentDifferences.length === 0
      ? 'environment: the same'
      : `environment differs:\n  ${report.environmentDifferences.join('\n  ')}`,
  );
  for (const change of report.inputChanges) console.log(`input changed: ${change}`);
  console.log(report.verdict);
}

async function handler(argv: Record<string, unknown>): Promise<void> {
  const { signal, stopNow, done } = trainingSignals(TRAIN_INTERRUPT_MESSAGES);
  try {
    const report = await reproduce(String(argv.run), {
      experimentsFolder: argv.experimentsFolder as string,
      runName: argv.runName as string | undefined,
      allowDataChange: argv.allowDataChange === true,
      log: logTo(argv),
      progress: terminalProgress(),
      signal,
      stopNow,
    });
    if (!report.identical) process.exitCode = EXIT.differs;
    if (argv.json === true) console.log(JSON.stringify(report, null, 2));
    else print(report);
  } finally {
    done();
  }
}

export const reproduceCommand: CommandModule = {
  command: 'reproduce <run>',
  describe: `Retrain <experiment>/<run> from its run.json into a new run and compare: exit 0 when bit-identical, ${EXIT.differs} when not`,
  builder,
  handler,
};
