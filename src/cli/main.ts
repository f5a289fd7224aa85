#!/usr/bin/env node
// image-classifier-trainer: parses flags (derived from the config schema) and calls the library.
import { readFileSync } from 'node:fs';
import yargs, { type Argv, type Options } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { parse as parseYaml } from 'yaml';
import { ConfigError, flagSpecs, keyName, parseRunConfig, type RunConfigInput } from '../config.js';
import { BackendError, probeBackends } from '../backends/select.js';
import { terminalProgress } from '../reports/progress.js';
import { train, TrainingInterrupted } from '../training/train.js';

/** The ancestor's snake_case flags keep working, so old commands and scripts run unchanged. */
const ANCESTOR_ALIASES: Record<string, string[]> = {
  experimentName: ['experiment_name'],
  runName: ['run_name'],
  learningRate: ['learning_rate'],
  epochs: ['num-epochs', 'num_epochs'],
  batchSize: ['batch_size'],
  pretrainedModel: ['pretrained_model'],
};

function trainOptions(y: Argv): Argv {
  for (const spec of flagSpecs()) {
    const option: Options = {
      type: spec.type,
      describe: spec.description,
      group: spec.required ? 'Required:' : groupOf(spec.key),
    };
    // Choices are listed in the help but checked by the schema, whose message fits on one line.
    if (spec.choices) option.describe += ` (${spec.choices.join(', ')})`;
    // Defaults live in the schema; yargs only shows them, so flags given explicitly can be told apart
    // from defaults when a --config file is merged underneath.
    if (spec.defaultValue !== undefined) option.defaultDescription = JSON.stringify(spec.defaultValue);
    const aliases = ANCESTOR_ALIASES[spec.key];
    if (aliases && aliases.length > 0) option.alias = aliases;
    y.option(spec.flag, option);
  }
  return y
    .option('config', {
      type: 'string',
      describe: 'YAML or JSON file of options (keys as flags, kebab- or camelCase); flags override it',
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
    .example('$0 --config runs/base.yaml --run-name run-2 --seed 1', 'Options from a file, some overridden');
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
  return 'Training:';
}

/** Reads a --config file into schema keys. */
function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
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

/** Config file underneath, explicit flags on top; the schema fills in the defaults and validates. */
function resolveConfig(argv: Record<string, unknown>): RunConfigInput {
  const fromFile = typeof argv.config === 'string' ? readConfigFile(argv.config) : {};
  const fromFlags: Record<string, unknown> = {};
  for (const spec of flagSpecs()) {
    const value = argv[spec.key];
    if (value === undefined) continue;
    if (typeof value === 'number' && Number.isNaN(value))
      throw new ConfigError(`--${spec.flag} must be a number`);
    fromFlags[spec.key] = value;
  }
  try {
    return parseRunConfig({ ...fromFile, ...fromFlags });
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
  const controller = new AbortController();
  let interrupts = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    interrupts++;
    if (interrupts > 1) process.exit(130);
    process.stderr.write(`\n${signal}: stopping after this step (again to quit at once)\n`);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const result = await train(config, {
      log: (line) => console.log(line),
      progress: terminalProgress(),
      signal: controller.signal,
    });
    const { testAccuracy } = result.manifest.results;
    console.log(`done: test accuracy ${(testAccuracy * 100).toFixed(2)}% -> ${result.runPath}`);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

async function runDoctor(): Promise<void> {
  console.log(`node ${process.version}, ${process.platform} ${process.arch}`);
  const reports = await probeBackends();
  for (const report of reports) {
    const state = report.works ? 'works' : `unavailable: ${report.reason}`;
    console.log(`${report.name.padEnd(15)} ${report.device}  ${state}`);
  }
  // Candidates are probed in auto's order of preference, so the first that works is auto's pick.
  console.log(`--device auto uses: ${reports.find((r) => r.works)?.name ?? 'nothing (no backend works)'}`);
}

function fail(message: string, code: number): never {
  process.stderr.write(`image-classifier-trainer: ${message}\n`);
  process.exit(code);
}

export async function main(args: string[]): Promise<void> {
  const parser = yargs(args)
    .scriptName('image-classifier-trainer')
    .usage('$0 [options]: train an image classifier and write experiments/<experiment>/<run>/')
    .command('$0', 'Train a model (the default command)', trainOptions, async (argv) => runTrain(argv))
    .command(
      'doctor',
      'List the compute backends: which load and work here, and why the others do not',
      {},
      () => runDoctor(),
    )
    .strict()
    .parserConfiguration({ 'strip-aliased': true, 'duplicate-arguments-array': false })
    .wrap(Math.min(120, process.stdout.columns ?? 100))
    .help()
    .alias('help', 'h')
    .version()
    .fail((message, error) => {
      if (error) throw error;
      fail(message, 2);
    });
  try {
    await parser.parseAsync();
  } catch (error) {
    if (error instanceof ConfigError || error instanceof BackendError) fail(error.message, 2);
    if (error instanceof TrainingInterrupted) fail(`${error.message}; no run was written`, 130);
    fail(error instanceof Error ? error.message.split('\n')[0]! : String(error), 1);
  }
}

await main(hideBin(process.argv));
