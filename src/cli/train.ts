// The default command: train one run. Options from a --config file underneath, explicit flags on top.
import type { Argv, CommandModule } from 'yargs';
import { stringify } from 'yaml';
import {
  configFromEnv,
  flagName,
  loadConfigFile,
  mergeConfig,
  parseRunConfig,
  type RunConfig,
  type RunConfigInput,
} from '../config.js';
import { redactConfig } from '../util/redact.js';
import { ConfigError } from '../errors.js';
import { percent } from '../reports/format.js';
import { terminalProgress } from '../reports/progress.js';
import { train } from '../training/train.js';
import { addRunFlags, EXIT_CODES, givenRunFlags } from './flags.js';
import { TRAIN_INTERRUPT_MESSAGES, trainingSignals } from './signals.js';

function builder(y: Argv): Argv {
  return addRunFlags(y)
    .option('config', {
      type: 'string',
      describe: 'YAML or JSON file of options (keys as flags, kebab- or camelCase); flags override it',
      group: 'Options:',
    })
    .option('print-config', {
      type: 'boolean',
      describe:
        'Print the resolved configuration (file, $IMAGE_CLASSIFIER_*, flags, defaults) as YAML that --config loads, and exit',
      group: 'Options:',
      conflicts: 'resume',
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

/**
 * The schema fills in the defaults and validates. With --resume only what was given is passed on:
 * the rest comes from the checkpoint, and train() checks it against the checkpoint's configuration.
 */
function resolveConfig(argv: Record<string, unknown>): RunConfigInput {
  const file = typeof argv.config === 'string' ? argv.config : undefined;
  const merged = mergeConfig(
    file === undefined ? {} : loadConfigFile(file),
    configFromEnv(),
    givenRunFlags(argv),
  );
  if (argv.resume === true) return merged as RunConfigInput;
  try {
    return parseRunConfig(merged);
  } catch (error) {
    // Only the file can hold an unknown option (the flags are the schema's): say which file.
    if (error instanceof ConfigError && file !== undefined && /unknown option/.test(error.message))
      throw new ConfigError(`--config ${file}: ${error.message}`);
    throw error;
  }
}

/** The configuration as a --config file: flag names as keys, secrets in URLs redacted. */
function configYaml(config: RunConfig): string {
  const redacted = redactConfig(config) as Record<string, unknown>;
  return stringify(
    Object.fromEntries(Object.entries(redacted).map(([key, value]) => [flagName(key), value])),
  );
}

async function handler(argv: Record<string, unknown>): Promise<void> {
  const config = resolveConfig(argv);
  if (argv.printConfig === true) {
    process.stdout.write(configYaml(config as RunConfig));
    return;
  }
  const interrupts = trainingSignals(TRAIN_INTERRUPT_MESSAGES);
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
        ? `done: test accuracy ${percent(testAccuracy)} -> ${result.runPath}`
        : `done: no test split, so no test accuracy; validation accuracy ${percent(validationAccuracy)} -> ${result.runPath}`,
    );
  } finally {
    interrupts.done();
  }
}

export const trainCommand: CommandModule = {
  command: '$0',
  describe: 'Train a model (the default command)',
  builder,
  handler,
};
