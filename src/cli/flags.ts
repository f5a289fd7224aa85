// yargs options derived from the schemas in src/config.ts (names, help, defaults, choices), the number
// flags' parsing, and the help text the commands share.
//
// Number flags: yargs' own number type turns `--momentum ''` into 0, a missing value into NaN and
// `-0.5e-3` or `-x` into other flags; these options take the text as typed (the next word whatever it
// looks like) and convert it with parseNumberFlag, which names the flag. Their bounds are the schema's.
import type { Argv, Options } from 'yargs';
import { flagSpecs, type FlagSpec } from '../config.js';
import { computeOptionsSchema } from '../model-options.js';
import { ConfigError, EXIT } from '../errors.js';

/**
 * Parser settings the commands share: numbers stay text until a flag's coerce converts them, and a
 * number flag's value is the next word even when it starts with '-' (`--learning-rate -0.1`).
 */
export const PARSER_CONFIGURATION = {
  'strip-aliased': true,
  'duplicate-arguments-array': false,
  'parse-numbers': false,
  'nargs-eats-options': true,
} as const;

export const EXIT_CODES =
  `Exit codes: 0 done; ${EXIT.failed} failed; ${EXIT.badInput} bad input or refused (nothing written); ` +
  `${EXIT.differs} reproduce/verify found differences; ${EXIT.interrupted} interrupted (Ctrl-C once: stops ` +
  'after the step and keeps a checkpoint, --resume continues; twice: stops at once, keeping the last checkpoint written).';

/** Decimal notation: what Number() takes besides ('', ' ', '0x10', 'Infinity') is refused. */
const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?$/i;

/**
 * The number a flag was given on the command line (text, or a number from a default), or a
 * ConfigError that names the flag: an empty or missing value, a word, Infinity or NaN never
 * become a number (yargs' own conversion made '' 0). Repeated, the last one counts.
 */
export function parseNumberFlag(value: unknown, flag: string): number {
  const given = Array.isArray(value) ? (value as unknown[])[value.length - 1] : value;
  if (typeof given === 'number') {
    if (Number.isFinite(given)) return given;
    throw new ConfigError(`--${flag} must be a finite number (got ${given})`);
  }
  if (typeof given !== 'string' || given.trim() === '')
    throw new ConfigError(`--${flag} needs a number (got ${given === '' ? 'an empty value' : 'nothing'})`);
  const text = given.trim();
  // The next word is the value whatever it looks like, so `--momentum --seed 1` lands here.
  if (/^--[a-z]/i.test(text)) throw new ConfigError(`--${flag} needs a number (got the flag ${text})`);
  if (/^[+-]?(inf|infinity|nan)$/i.test(text))
    throw new ConfigError(`--${flag} must be a finite number (got ${text})`);
  if (!DECIMAL.test(text)) throw new ConfigError(`--${flag} must be a number (got ${JSON.stringify(text)})`);
  const number = Number(text);
  if (!Number.isFinite(number)) throw new ConfigError(`--${flag} must be a finite number (got ${text})`);
  return number;
}

/** Bounds of a number flag that is in no schema (a command's own, such as sweep --parallel). */
export interface NumberBounds {
  integer?: boolean;
  min?: number;
  max?: number;
}

/** Checks a number flag against its bounds, in the words the schema's messages use. */
function checkNumberFlag(value: number, flag: string, bounds: NumberBounds): number {
  if (bounds.integer && !Number.isInteger(value))
    throw new ConfigError(`--${flag} must be an integer (got ${value})`);
  if (bounds.min !== undefined && value < bounds.min)
    throw new ConfigError(`--${flag} must be >= ${bounds.min} (got ${value})`);
  if (bounds.max !== undefined && value > bounds.max)
    throw new ConfigError(`--${flag} must be <= ${bounds.max} (got ${value})`);
  return value;
}

/**
 * A yargs option for a number flag: no yargs type (its conversion is what loses the text), one word
 * of value, converted and checked against `bounds` (a schema checks its own flags' bounds).
 */
export function numberOption(
  flag: string,
  options: Omit<Options, 'type' | 'coerce' | 'nargs'> & { bounds?: NumberBounds } = {},
): Options {
  const { bounds, ...rest } = options;
  return {
    ...rest,
    nargs: 1,
    coerce: (value: unknown) => checkNumberFlag(parseNumberFlag(value, flag), flag, bounds ?? {}),
  };
}

export interface SchemaFlagOptions {
  /** Keys left out. */
  omit?: string[];
  /** Help group of a key; undefined: yargs' own 'Options:'. */
  group?: (spec: FlagSpec) => string | undefined;
  /** Other names of a key's flag. */
  aliases?: Record<string, string[]>;
}

/**
 * The flags of a schema's options. yargs sets no defaults (it only shows the schema's), so the flags
 * given explicitly can be told apart from defaults (givenFlags) and the schema fills in the rest.
 */
export function addSchemaFlags(y: Argv, specs: FlagSpec[], options: SchemaFlagOptions = {}): Argv {
  for (const spec of specs) {
    if (options.omit?.includes(spec.key)) continue;
    const described: Options = { describe: spec.description };
    const group = options.group?.(spec);
    if (group) described.group = group;
    const option: Options =
      spec.type === 'number' ? numberOption(spec.flag, described) : { type: spec.type, ...described };
    // Choices are listed in the help but checked by the schema, whose message fits on one line.
    if (spec.choices) option.describe += ` (${spec.choices.join(', ')})`;
    if (spec.defaultValue !== undefined) {
      // A text flag's default reads as text even where the schema holds its parsed value (a byte size).
      option.defaultDescription = JSON.stringify(
        spec.type === 'string' ? String(spec.defaultValue) : spec.defaultValue,
      );
    }
    const aliases = options.aliases?.[spec.key];
    if (aliases && aliases.length > 0) option.alias = aliases;
    y.option(spec.flag, option);
  }
  return y;
}

/** The schema's options given explicitly on the command line (yargs sets no defaults), by schema key. */
export function givenFlags(
  argv: Record<string, unknown>,
  specs: FlagSpec[],
  omit: string[] = [],
): Record<string, unknown> {
  const given: Record<string, unknown> = {};
  for (const spec of specs) {
    const value = argv[spec.key];
    if (value === undefined || omit.includes(spec.key)) continue;
    given[spec.key] = value;
  }
  return given;
}

/** The ancestor's snake_case flags keep working, so old commands and scripts run unchanged. */
const ANCESTOR_ALIASES: Record<string, string[]> = {
  experimentName: ['experiment_name'],
  runName: ['run_name'],
  learningRate: ['learning_rate'],
  epochs: ['num-epochs', 'num_epochs'],
  batchSize: ['batch_size'],
  pretrainedModel: ['pretrained_model'],
};

const RUN_GROUPS: Record<string, string[]> = {
  'Data:': [
    'dataset',
    'datasetFolder',
    'dataFolder',
    'downloadUrl',
    'validationSplit',
    'testSplit',
    'numWorkers',
  ],
  'Model:': ['model', 'pretrainedModel'],
  'Compute and output:': ['device', 'backend', 'threads', 'experimentsFolder'],
  'Tracking:': ['wandb', 'wandbProject', 'wandbEntity'],
};

function runGroup(key: string): string {
  return Object.entries(RUN_GROUPS).find(([, keys]) => keys.includes(key))?.[0] ?? 'Training:';
}

/** The run configuration's flags (from the schema); `omit` leaves some out, `optional` requires none. */
export function addRunFlags(
  y: Argv,
  { omit = [], optional = false }: { omit?: string[]; optional?: boolean } = {},
): Argv {
  return addSchemaFlags(y, flagSpecs(), {
    omit,
    aliases: ANCESTOR_ALIASES,
    group: (spec) => (spec.required && !optional ? 'Required:' : runGroup(spec.key)),
  });
}

/** The run configuration's flags given explicitly, by schema key. */
export function givenRunFlags(argv: Record<string, unknown>, omit: string[] = []): Record<string, unknown> {
  return givenFlags(argv, flagSpecs(), omit);
}

/** The --experiments-folder option of the subcommands that read runs, as the schema describes it. */
export function experimentsFolderOption(y: Argv): Argv {
  const spec = flagSpecs().find((f) => f.key === 'experimentsFolder')!;
  return y.option(spec.flag, {
    type: 'string',
    describe: spec.description,
    default: spec.defaultValue as string,
  });
}

const COMPUTE_KEYS = Object.keys(computeOptionsSchema.shape);

/** The flags of a command that uses a trained model (evaluate, predict, serve), from its schema. */
export function addModelCommandFlags(y: Argv, schema: Parameters<typeof flagSpecs>[0]): Argv {
  return addSchemaFlags(y, flagSpecs(schema), {
    group: (spec) => (COMPUTE_KEYS.includes(spec.key) ? 'Compute:' : undefined),
  });
}

/** The run positional of the commands that read one run. */
export function runPositional(y: Argv): Argv {
  return y.positional('run', { type: 'string', describe: '<experiment>/<run>, or the path of a run folder' });
}

/** `--json`: the command's result as JSON on stdout (its progress and log lines go to stderr). */
export function jsonOption(
  y: Argv,
  describe = 'Print the result as JSON (progress and log lines on stderr)',
): Argv {
  return y.option('json', { type: 'boolean', describe });
}

/** Where a command's log lines go: stderr when stdout holds JSON. */
export function logTo(argv: Record<string, unknown>): (line: string) => void {
  return argv.json === true ? (line) => process.stderr.write(`${line}\n`) : (line) => console.log(line);
}
