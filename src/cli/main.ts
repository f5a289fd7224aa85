#!/usr/bin/env node
// image-classifier-trainer: parses flags (derived from the config schema) and calls the library.
import yargs, { type Argv, type Options } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { parse as parseYaml } from 'yaml';
import { flagSpecs, keyName, parseRunConfig, type RunConfigInput } from '../config.js';

import { doctor } from '../training/doctor.js';
import { numberOption, PARSER_CONFIGURATION } from './number-flags.js';
import { terminalProgress } from '../reports/progress.js';
import { readBoundedFileSync } from '../util/bounded-read.js';
import { handleInterrupts, SWEEP_INTERRUPT_MESSAGES, TRAIN_INTERRUPT_MESSAGES } from './interrupts.js';
import { compareRuns, comparisonTable } from '../runs/compare.js';
import { reproduce } from '../training/reproduce.js';
import { runSweep, sweepMatrix } from '../sweeps/run-sweep.js';
import { describeParams } from '../sweeps/sweep-file.js';
import { verifyRun } from '../runs/verify.js';
import {
  evaluateOptions,
  predictOptions,
  runEvaluate,
  runPredict,
  runServe,
  serveOptions,
} from '../serving/commands.js';
import { train } from '../training/train.js';
import { ConfigError, EXIT, firstLine, PROGRAM, UserError } from '../errors.js';

/** The ancestor's snake_case flags keep working, so old commands and scripts run unchanged. */
const ANCESTOR_ALIASES: Record<string, string[]> = {
  experimentName: ['experiment_name'],
  runName: ['run_name'],
  learningRate: ['learning_rate'],
  epochs: ['num-epochs', 'num_epochs'],
  batchSize: ['batch_size'],
  pretrainedModel: ['pretrained_model'],
};

/** The run configuration's flags (from the schema); `omit` leaves some out, `optional` requires none. */
function addRunFlags(
  y: Argv,
  { omit = [], optional = false }: { omit?: string[]; optional?: boolean } = {},
): Argv {
  for (const spec of flagSpecs()) {
    if (omit.includes(spec.key)) continue;
    const described = {
      describe: spec.description,
      group: spec.required && !optional ? 'Required:' : groupOf(spec.key),
    };
    // Numbers are converted from the text as typed; their bounds are the schema's.
    const option: Options =
      spec.type === 'number' ? numberOption(spec.flag, described) : { type: spec.type, ...described };
    // Choices are listed in the help but checked by the schema, whose message fits on one line.
    if (spec.choices) option.describe += ` (${spec.choices.join(', ')})`;
    // Defaults live in the schema; yargs only shows them, so flags given explicitly can be told apart
    // from defaults when a --config file is merged underneath.
    if (spec.defaultValue !== undefined) option.defaultDescription = JSON.stringify(spec.defaultValue);
    const aliases = ANCESTOR_ALIASES[spec.key];
    if (aliases && aliases.length > 0) option.alias = aliases;
    y.option(spec.flag, option);
  }
  return y;
}

function trainOptions(y: Argv): Argv {
  return addRunFlags(y)
    .option('config', {
      type: 'string',
      describe: 'YAML or JSON file of options (keys as flags, kebab- or camelCase); flags override it',
      group: 'Options:',
    })
    .option('resume', {
      type: 'boolean',
      describe:
        'Continue the interrupted run --experiment-name/--run-name from its checkpoint (its configuration comes from the checkpoint)',
      group: 'Options:',
    })
    .example(
      '$0 --experiment-name baseline --run-name run-1',
      'Train the default model on CIFAR-10 (downloaded once)',
    )
    .example(
      '$0 --experiment-name smoke --run-name s1 --dataset synthetic --epochs 2',
      'Train on generated data: no download',
    )
    .example(
      '$0 --experiment-name ancestor --run-name seed --model net --batch-size 4 --learning-rate 0.001 --epochs 2 --lr-schedule constant --no-nesterov --weight-decay 0 --label-smoothing 0 --no-random-flip --random-crop 0',
      "The ancestor's recipe",
    )
    .example(
      '$0 --experiment-name pets --run-name r1 --dataset image-folder --dataset-folder ./pets',
      'Train on <folder>/<class>/*.jpg',
    )
    .example(
      '$0 --experiment-name baseline --run-name ft --pretrained-model baseline/run-1 --epochs 2',
      'Fine-tune from an earlier run',
    )
    .example('$0 --config runs/base.yaml --run-name run-2 --seed 1', 'Options from a file, some overridden')
    .example('$0 --experiment-name baseline --run-name run-1 --resume', 'Continue a run stopped by Ctrl-C')
    .epilogue(EXIT_CODES);
}

const EXIT_CODES =
  'Exit codes: 0 done; 1 failed; 2 bad input or refused (nothing written); 3 reproduce/verify found differences; 130 interrupted (Ctrl-C once: stops after the step and keeps a checkpoint, --resume continues; twice: stops at once, keeping the last checkpoint written).';

/** The --experiments-folder option of the subcommands, as the schema describes it. */
function experimentsFolderOption(y: Argv): Argv {
  const spec = flagSpecs().find((f) => f.key === 'experimentsFolder')!;
  return y.option(spec.flag, {
    type: 'string',
    describe: spec.description,
    default: spec.defaultValue as string,
  });
}

function groupOf(key: string): string {
  if (
    [
      'dataset',
      'datasetFolder',
      'dataFolder',
      'downloadUrl',
      'validationSplit',
      'testSplit',
      'numWorkers',
    ].includes(key)
  )
    return 'Data:';
  if (['model', 'pretrainedModel'].includes(key)) return 'Model:';
  if (['device', 'backend', 'threads', 'experimentsFolder'].includes(key)) return 'Compute and output:';
  if (['wandb', 'wandbProject', 'wandbEntity'].includes(key)) return 'Tracking:';
  return 'Training:';
}

/** Reads a --config file into schema keys. */
function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    // Bounded, regular files only: `--config /dev/zero` must not read forever.
    text = readBoundedFileSync(path, 2 ** 20).toString('utf8');
  } catch (error) {
    throw new ConfigError(
      `--config ${path}: cannot read it (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
    );
  }
  let data: unknown;
  try {
    data = parseYaml(text);
  } catch (error) {
    throw new ConfigError(
      `--config ${path}: not valid YAML or JSON (${(error as Error).message.split('\n')[0]})`,
    );
  }
  if (data === null || data === undefined) return {};
  if (typeof data !== 'object' || Array.isArray(data))
    throw new ConfigError(`--config ${path}: must hold a mapping of options`);
  return Object.fromEntries(Object.entries(data as Record<string, unknown>).map(([k, v]) => [keyName(k), v]));
}

/** The run flags given explicitly on the command line (yargs sets no defaults), by schema key. */
function givenFlags(argv: Record<string, unknown>, omit: string[] = []): Record<string, unknown> {
  const given: Record<string, unknown> = {};
  for (const spec of flagSpecs()) {
    const value = argv[spec.key];
    if (value === undefined || omit.includes(spec.key)) continue;
    given[spec.key] = value;
  }
  return given;
}

/**
 * Config file underneath, explicit flags on top; the schema fills in the defaults and validates.
 * With --resume only what was given is passed on: the rest comes from the checkpoint.
 */
function resolveConfig(argv: Record<string, unknown>): RunConfigInput {
  const fromFile = typeof argv.config === 'string' ? readConfigFile(argv.config) : {};
  const fromFlags = givenFlags(argv);
  try {
    const merged = { ...fromFile, ...fromFlags };
    // Validated (and defaulted) by train() against the checkpoint's configuration.
    if (argv.resume === true) return merged as RunConfigInput;
    return parseRunConfig(merged);
  } catch (error) {
    if (
      error instanceof ConfigError &&
      typeof argv.config === 'string' &&
      /unknown option/.test(error.message)
    ) {
      throw new ConfigError(`--config ${argv.config}: ${error.message}`);
    }
    throw error;
  }
}

async function runTrain(argv: Record<string, unknown>): Promise<void> {
  const config = resolveConfig(argv);
  const interrupts = handleInterrupts(TRAIN_INTERRUPT_MESSAGES);
  try {
    const result = await train(config, {
      log: (line) => console.log(line),
      progress: terminalProgress(),
      signal: interrupts.signal,
      stopNow: interrupts.stopNow,
      resume: argv.resume === true,
    });
    const { testAccuracy, validationAccuracy } = result.manifest.results;
    // Without test images there is no test accuracy (NaN, null in run.json): never print it as 0%.
    console.log(
      testAccuracy !== null && Number.isFinite(testAccuracy)
        ? `done: test accuracy ${(testAccuracy * 100).toFixed(2)}% -> ${result.runPath}`
        : `done: no test split, so no test accuracy; validation accuracy ${(validationAccuracy * 100).toFixed(2)}% -> ${result.runPath}`,
    );
  } finally {
    interrupts.done();
  }
}

async function runReproduce(argv: Record<string, unknown>): Promise<void> {
  const { signal, stopNow, done } = handleInterrupts(TRAIN_INTERRUPT_MESSAGES);
  try {
    const report = await reproduce(String(argv.run), {
      experimentsFolder: argv.experimentsFolder as string,
      runName: argv.runName as string | undefined,
      allowDataChange: argv.allowDataChange === true,
      log: (line) => console.log(line),
      progress: terminalProgress(),
      signal,
      stopNow,
    });
    console.log(`\nreproduction of ${report.original}: ${report.reproduction}`);
    if (report.lineage.length > 0)
      console.log(`lineage: ${[report.original, ...report.lineage].join(' <- ')}`);
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
    if (!report.identical) process.exitCode = EXIT.differs;
  } finally {
    done();
  }
}

async function runVerify(argv: Record<string, unknown>): Promise<void> {
  const report = await verifyRun(String(argv.run), argv.experimentsFolder as string);
  for (const f of report.files) console.log(`${f.status.padEnd(8)} ${f.file}`);
  const bad = report.files.filter((f) => f.status !== 'ok');
  console.log(
    bad.length === 0
      ? `${report.path}: all ${report.files.length} files match run.json`
      : `${report.path}: ${bad.length} of ${report.files.length} files changed or missing since the run was written`,
  );
  if (!report.ok) process.exitCode = EXIT.differs;
}

async function runSweepCommand(argv: Record<string, unknown>): Promise<void> {
  const file = String(argv.file);
  const base = {
    ...(typeof argv.config === 'string' ? readConfigFile(argv.config) : {}),
    ...givenFlags(argv, ['experimentName']),
  };
  if (argv.matrix === true) {
    console.log(
      JSON.stringify(sweepMatrix(file, { experimentName: argv.experimentName as string | undefined, base })),
    );
    return;
  }
  const { signal, stopNow, done } = handleInterrupts(SWEEP_INTERRUPT_MESSAGES);
  try {
    const result = await runSweep(file, {
      experimentName: argv.experimentName as string | undefined,
      experimentsFolder: base.experimentsFolder as string | undefined,
      base,
      parallel: argv.parallel as number | undefined,
      only: argv.trial as string[] | undefined,
      train: argv.train !== false,
      log: (line) => console.log(line),
      signal,
      stopNow,
    });
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
    const failed = result.trials.filter((t) => t.status === 'failed');
    const interrupted = result.trials.filter((t) => t.status === 'interrupted');
    const missing = result.trials.filter((t) => t.status === 'missing');
    if (missing.length > 0) console.log(`missing: ${missing.map((t) => t.name).join(', ')}`);
    if (failed.length > 0) console.log(`failed: ${failed.map((t) => `${t.name} (${t.error})`).join('; ')}`);
    if (interrupted.length > 0) {
      console.log(
        `interrupted: ${interrupted.map((t) => t.name).join(', ')} (rerun the same command to resume)`,
      );
      process.exitCode = EXIT.interrupted;
    } else if (failed.length > 0) process.exitCode = 1;
  } finally {
    done();
  }
}

async function runRunsCommand(argv: Record<string, unknown>): Promise<void> {
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

async function runDoctor(): Promise<void> {
  const report = await doctor();
  console.log(`node ${report.node}, ${report.platform}`);
  const { model, batchSize } = report.measured;
  for (const b of report.backends) {
    const step = b.stepMs === undefined ? '' : `; ${model}@${batchSize} step ${b.stepMs.toFixed(1)} ms`;
    const state = b.works ? `works (${b.detail}${step})` : `unavailable: ${b.reason}`;
    console.log(`${b.name.padEnd(15)} ${b.device}  ${state}`);
  }
  console.log(`--device auto uses: ${report.auto ?? 'nothing (no backend works)'}`);
}

function fail(message: string, code: number): never {
  process.stderr.write(`${PROGRAM}: ${message}\n`);
  process.exit(code);
}

export async function main(args: string[]): Promise<void> {
  const parser = yargs(args)
    .scriptName(PROGRAM)
    .usage('$0 [options]: train an image classifier and write experiments/<experiment>/<run>/')
    .command('$0', 'Train a model (the default command)', trainOptions, async (argv) => runTrain(argv))
    .command(
      'reproduce <run>',
      'Retrain <experiment>/<run> from its run.json into a new run and compare: exit 0 when bit-identical, 3 when not',
      (y) =>
        experimentsFolderOption(y)
          .positional('run', { type: 'string', describe: '<experiment>/<run>, or the path of a run folder' })
          .option('run-name', { type: 'string', describe: 'Name of the new run (default <run>-repro-N)' })
          .option('allow-data-change', {
            type: 'boolean',
            describe:
              "Go on when the data or the parent run's weights no longer match the recorded checksums",
          })
          .epilogue(EXIT_CODES),
      async (argv) => runReproduce(argv),
    )
    .command(
      'verify <run>',
      "Check a run's files against the sha256 hashes in its run.json: exit 0 when unchanged, 3 when not",
      (y) =>
        experimentsFolderOption(y)
          .positional('run', { type: 'string', describe: '<experiment>/<run>, or the path of a run folder' })
          .epilogue(EXIT_CODES),
      async (argv) => runVerify(argv),
    )
    .command(
      'sweep <file>',
      'Run the trials of a W&B-style sweep file (grid or random) as runs of one experiment, then compare them',
      (y) =>
        addRunFlags(y, { omit: ['runName'], optional: true })
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
          .example(
            '$0 sweep sweep.yaml --dataset synthetic --epochs 2',
            'Every trial on generated data, 2 epochs',
          )
          .example('$0 sweep sweep.yaml --parallel 2', 'Two trials at a time')
          .epilogue(
            'Finished trials are skipped and interrupted ones resumed when the same sweep runs again. ' +
              EXIT_CODES,
          ),
      async (argv) => runSweepCommand(argv),
    )
    .command(
      'runs <experiment>',
      'Compare the runs of an experiment: a table (or --json) and <experiment>/comparison.png',
      (y) =>
        experimentsFolderOption(y)
          .positional('experiment', {
            type: 'string',
            describe: 'Experiment name (a folder under the experiments folder)',
          })
          .option('json', { type: 'boolean', describe: 'Print JSON instead of the table' })
          .option('chart', {
            type: 'boolean',
            default: true,
            describe: 'Write comparison.png (--no-chart: do not)',
          }),
      async (argv) => runRunsCommand(argv),
    )
    .command(
      'evaluate <run>',
      "Evaluate a run's model on its test split or another dataset: accuracy, per class, confusion matrix, written to evaluation-<name>.json/.png in the run folder",
      (y) => evaluateOptions(experimentsFolderOption(y)).epilogue(EXIT_CODES),
      async (argv) => runEvaluate(argv),
    )
    .command(
      'predict <run> <inputs..>',
      'Classify image files and folders: top-k labels as a table, --json or --csv',
      (y) => predictOptions(experimentsFolderOption(y)),
      async (argv) => runPredict(argv),
    )
    .command(
      'serve <run>',
      'Serve the model over HTTP: POST /predict, GET /healthz, /metrics, /model',
      (y) => serveOptions(experimentsFolderOption(y)).epilogue(EXIT_CODES),
      async (argv) => runServe(argv),
    )
    .command(
      'doctor',
      'List the compute backends: which load and work here, and why the others do not',
      {},
      () => runDoctor(),
    )
    .strict()
    .parserConfiguration(PARSER_CONFIGURATION)
    .wrap(Math.min(120, process.stdout.columns ?? 100))
    .help()
    .alias('help', 'h')
    .version()
    .fail((message, error) => {
      // yargs' own errors (YError: a flag's coerce refused its value) are bad input too.
      if (error && error.name !== 'YError') throw error;
      fail(message, EXIT.badInput);
    });
  await parser.parseAsync();
}

/** The one error handler: a UserError's message and exit code; anything else, its first line and 1. */
function handleError(error: unknown): never {
  // A UserError's message is written for the terminal; anything else may carry a stack-like tail.
  if (error instanceof UserError) fail(error.message, error.exitCode);
  fail(firstLine(error), EXIT.failed);
}

await main(hideBin(process.argv)).catch(handleError);
