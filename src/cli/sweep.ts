// `sweep <file>`: the trials of a sweep file as runs of one experiment, then their comparison.
import type { Argv, CommandModule } from 'yargs';
import { configFromEnv, loadConfigFile, mergeConfig } from '../config.js';
import { EXIT } from '../errors.js';
import { comparisonTable } from '../runs/compare.js';
import { runSweep, sweepMatrix, type SweepResult } from '../sweeps/run-sweep.js';
import { describeParams } from '../sweeps/sweep-file.js';
import { addRunFlags, EXIT_CODES, givenRunFlags, numberOption } from './flags.js';
import { SWEEP_INTERRUPT_MESSAGES, trainingSignals } from './signals.js';

function builder(y: Argv): Argv {
  return addRunFlags(y, { omit: ['runName'], optional: true })
    .positional('file', {
      type: 'string',
      describe: 'Sweep file (YAML or JSON): method, metric, parameters, run_cap',
    })
    .option('config', {
      type: 'string',
      describe: 'YAML or JSON file of options for every trial',
      group: 'Options:',
    })
    .option(
      'parallel',
      numberOption('parallel', {
        describe: 'Trials trained at the same time (each gets cores / N threads)',
        default: 1,
        group: 'Sweep:',
        bounds: { integer: true, min: 1, max: 256 },
      }),
    )
    .option('trial', {
      type: 'string',
      array: true,
      describe: 'Run only these trials (e.g. trial-02): one CI job each',
      group: 'Sweep:',
    })
    .option('train', {
      type: 'boolean',
      default: true,
      describe: 'Train missing trials (--no-train: only summarise the trials already there)',
      group: 'Sweep:',
    })
    .option('matrix', {
      type: 'boolean',
      describe: 'Print the trials as a GitHub Actions matrix (JSON) and exit',
      group: 'Sweep:',
    })
    .example('$0 sweep sweep.yaml --dataset synthetic --epochs 2', 'Every trial on generated data, 2 epochs')
    .example('$0 sweep sweep.yaml --parallel 2', 'Two trials at a time')
    .epilogue(
      'Finished trials are skipped and interrupted ones resumed when the same sweep runs again. ' +
        EXIT_CODES,
    );
}

/** Prints the comparison and the trials' fates; the exit code says whether all finished. */
function print(result: SweepResult): void {
  console.log(`\n${comparisonTable(result.comparison)}\n`);
  const best = result.trials.find((t) => t.name === result.best);
  console.log(
    best
      ? `best trial: ${best.name} (${describeParams({ name: best.name, params: best.params })}): ${result.sweep.metric.name} ${best.metric!.toFixed(4)}`
      : 'no trial finished',
  );
  console.log(
    `summary: ${result.summaryFile}${result.comparison.chart ? `, ${result.comparison.chart}` : ''}`,
  );
  const named = (status: string) => result.trials.filter((t) => t.status === status);
  const [failed, interrupted, missing] = [named('failed'), named('interrupted'), named('missing')];
  if (missing.length > 0) console.log(`missing: ${missing.map((t) => t.name).join(', ')}`);
  if (failed.length > 0) console.log(`failed: ${failed.map((t) => `${t.name} (${t.error})`).join('; ')}`);
  if (interrupted.length > 0) {
    console.log(
      `interrupted: ${interrupted.map((t) => t.name).join(', ')} (rerun the same command to resume)`,
    );
    process.exitCode = EXIT.interrupted;
  } else if (failed.length > 0) process.exitCode = EXIT.failed;
}

async function handler(argv: Record<string, unknown>): Promise<void> {
  const file = String(argv.file);
  const experimentName = argv.experimentName as string | undefined;
  // The experiment's name is the sweep's option (default: the sweep's name), not a trial's.
  const { experimentName: _e, runName: _r, ...fromEnv } = configFromEnv();
  const base = mergeConfig(
    typeof argv.config === 'string' ? loadConfigFile(argv.config) : {},
    fromEnv,
    givenRunFlags(argv, ['experimentName']),
  );
  if (argv.matrix === true) {
    console.log(JSON.stringify(sweepMatrix(file, { experimentName, base })));
    return;
  }
  const { signal, stopNow, done } = trainingSignals(SWEEP_INTERRUPT_MESSAGES);
  try {
    const result = await runSweep(file, {
      experimentName,
      experimentsFolder: base.experimentsFolder as string | undefined,
      base,
      parallel: argv.parallel as number | undefined,
      only: argv.trial as string[] | undefined,
      train: argv.train !== false,
      log: (line) => console.log(line),
      signal,
      stopNow,
    });
    print(result);
  } finally {
    done();
  }
}

export const sweepCommand: CommandModule = {
  command: 'sweep <file>',
  describe:
    'Run the trials of a W&B-style sweep file (grid or random) as runs of one experiment, then compare them',
  builder,
  handler,
};
