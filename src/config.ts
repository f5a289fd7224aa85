// The single source of truth for a run's configuration, and for the options of the commands that use a
// trained model (evaluate, predict, serve). The CLI's flags (names, help, defaults, choices), config
// files and the library's option types are all derived from these schemas.
import { z } from 'zod';
import { parse as parseYaml } from 'yaml';
import { ConfigError } from './errors.js';
import { readBoundedFileSync } from './util/bounded-read.js';

/** Run and experiment names become folder names: one safe path segment each. */
const folderName = z
  .string()
  .min(1, 'must not be empty')
  .max(128, 'must be at most 128 characters')
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'must be letters, digits, ".", "_" or "-" (no "/", no "..")')
  .refine((s) => !s.includes('..'), 'must not contain ".."');

/** W&B project and entity names: W&B refuses these characters (they are path and URL separators). */
const wandbName = z
  .string()
  .min(1, 'must not be empty')
  .max(128, 'must be at most 128 characters')
  .regex(/^[^/\\#?%:]+$/, 'must not contain / \\ # ? % or :');

function isHttpUrl(text: string): boolean {
  try {
    const { protocol } = new URL(text);
    return protocol === 'http:' || protocol === 'https:';
  } catch {
    return false;
  }
}

export const MODEL_NAMES = ['vgg', 'net', 'resnet'] as const;
export const DATASETS = ['cifar10', 'image-folder', 'synthetic'] as const;
export const DEVICES = ['auto', 'cpu', 'gpu'] as const;
export const BACKENDS = ['auto', 'tensorflow', 'tensorflow-gpu', 'webgpu', 'native', 'wasm', 'cpu'] as const;
/** What picks the best epoch: validation accuracy (higher is better) or loss (lower is better). */
export const EARLY_STOPPING_METRICS = ['validation-accuracy', 'validation-loss'] as const;
export const OPTIMIZERS = ['sgd', 'adamw'] as const;
export const LR_SCHEDULES = ['onecycle', 'cosine', 'constant'] as const;

/**
 * The largest batch every backend trains. The wasm and native backends keep tensors on a WebAssembly
 * heap, which cannot grow past 4 GiB: a vgg training step needs about 3 MiB per image (1024: 3.0 GiB,
 * 1280: 3.7 GiB, 1536: more than 4 GiB). Beyond that tfjs-backend-wasm's malloc fails, and the backend,
 * which does not check it, wrote the batch over the heap's own bookkeeping: a hang at 100% CPU that
 * ignored Ctrl-C (native), or a "divide by zero" trap (wasm).
 */
/** Where runs go unless --experiments-folder says otherwise. */
export const DEFAULT_EXPERIMENTS_FOLDER = './experiments';

export const MAX_BATCH_SIZE = 1024;

export const runConfigSchema = z
  .object({
    // --- where the run goes
    experimentName: folderName.describe(
      'Experiment the run belongs to (a folder under the experiments folder)',
    ),
    runName: folderName.describe('Name of the run, unique within its experiment'),
    experimentsFolder: z
      .string()
      .min(1)
      .default(DEFAULT_EXPERIMENTS_FOLDER)
      .describe('Folder that holds all experiments'),

    // --- data
    dataset: z.enum(DATASETS).default('cifar10').describe('Training data'),
    datasetFolder: z
      .string()
      .min(1)
      .optional()
      .describe('Folder with the dataset (CIFAR-10 batches, or an image folder); default: the data cache'),
    dataFolder: z.string().min(1).default('./data').describe('Cache for downloaded and decoded datasets'),
    downloadUrl: z
      .string()
      // Only http(s) can be downloaded; the message never repeats the URL (it may hold credentials).
      .refine(isHttpUrl, 'must be an http:// or https:// URL')
      .optional()
      .describe('Where to download CIFAR-10 from (also $IMAGE_CLASSIFIER_CIFAR10_URL)'),
    validationSplit: z
      .number()
      .min(0)
      .max(0.5)
      .default(0.1)
      .describe(
        'Fraction of the training images held out to validate after each epoch (0: validate on the test split)',
      ),
    testSplit: z
      .number()
      .gt(0)
      .max(0.5)
      .default(0.1)
      .describe('Fraction held out as the test split when an image folder has no test/ folder'),
    numWorkers: z
      .number()
      .int()
      .min(1)
      .max(64)
      .optional()
      .describe('Images decoded in parallel (default: number of CPU cores)'),

    // --- model
    model: z
      .enum(MODEL_NAMES)
      .default('vgg')
      .describe(
        "Network: 'vgg' (6 conv + BatchNorm), 'net' (the ancestor's tutorial CNN) or 'resnet' (ResNet-9-style)",
      ),
    imageSize: z
      .number()
      .int()
      .min(32)
      .max(256)
      .default(32)
      .describe('Images are square, this many pixels a side (image folders are resized; CIFAR-10 is 32)'),
    pretrainedModel: z
      .string()
      .min(1)
      .optional()
      .describe(
        'Start from the weights of an earlier run: <experiment>/<run>, relative to the experiments folder',
      ),

    // --- optimisation (defaults: a fast recipe for the default model)
    epochs: z.number().int().min(1).max(10_000).default(8).describe('Passes over the training data'),
    batchSize: z
      .number()
      .int()
      .min(1)
      .max(MAX_BATCH_SIZE)
      .default(256)
      .describe(
        `Images per training step (at most ${MAX_BATCH_SIZE}: a larger step of vgg does not fit the 4 GiB heap of the wasm and native backends)`,
      ),
    learningRate: z
      .number()
      .gt(0)
      .max(100)
      .default(0.2)
      .describe('Learning rate (the peak, with a schedule)'),
    lrSchedule: z.enum(LR_SCHEDULES).default('onecycle').describe('Learning-rate schedule over all steps'),
    warmupFraction: z
      .number()
      .min(0)
      .max(1)
      .default(0.25)
      .describe('Share of the steps spent warming up (onecycle)'),
    momentum: z.number().min(0).lt(1).default(0.9).describe('SGD momentum'),
    nesterov: z.boolean().default(true).describe('Nesterov momentum'),
    weightDecay: z.number().min(0).max(1).default(5e-4).describe('L2 weight decay'),
    labelSmoothing: z
      .number()
      .min(0)
      .lt(1)
      .default(0.2)
      .describe('Label smoothing of the cross-entropy targets'),
    optimizer: z
      .enum(OPTIMIZERS)
      .default('sgd')
      .describe(
        'sgd (momentum, Nesterov, L2 decay) or adamw (decoupled decay; wants a rate near 0.001-0.003)',
      ),
    randomFlip: z.boolean().default(true).describe('Augment: random horizontal flips'),
    randomCrop: z
      .number()
      .int()
      .min(0)
      .max(16)
      .default(2)
      .describe('Augment: random translation by up to this many pixels (0: off)'),
    cutout: z
      .number()
      .int()
      .min(0)
      .max(64)
      .default(0)
      .describe('Augment: blank a random square of this many pixels a side in each image (0: off)'),
    colorJitter: z
      .number()
      .min(0)
      .max(0.5)
      .default(0)
      .describe('Augment: random brightness, contrast and saturation, each by up to this fraction (0: off)'),
    seed: z
      .number()
      .int()
      .min(0)
      .max(2 ** 32 - 1)
      .default(0)
      .describe('Seed for initialisation, shuffling and augmentation'),
    earlyStoppingPatience: z
      .number()
      .int()
      .min(1)
      .max(1000)
      .optional()
      .describe('Stop when --early-stopping-metric has not improved for this many epochs (default: off)'),
    earlyStoppingMetric: z
      .enum(EARLY_STOPPING_METRICS)
      .default('validation-accuracy')
      .describe('What early stopping and --save-best watch (the best epoch is the one where it was best)'),
    saveBest: z
      .boolean()
      .default(false)
      .describe("Keep the best epoch's weights as the model (the last epoch's go to model-last/)"),

    // --- compute
    device: z.enum(DEVICES).default('auto').describe('Where to train: auto picks a GPU when one works'),
    backend: z
      .enum(BACKENDS)
      .default('auto')
      .describe('tfjs backend (auto: the fastest that loads and works)'),
    threads: z
      .number()
      .int()
      .min(1)
      .max(256)
      .optional()
      .describe('Threads for the CPU backends (default: all cores); results do not depend on it'),

    // --- tracking (the API key never is an option: it comes from $WANDB_API_KEY or ~/.netrc)
    wandb: z
      .boolean()
      .default(false)
      .describe('Log the run to Weights & Biases ($WANDB_MODE=offline or disabled turns uploads off)'),
    wandbProject: wandbName
      .optional()
      .describe('W&B project (default: $WANDB_PROJECT, else the experiment name)'),
    wandbEntity: wandbName
      .optional()
      .describe("W&B user or team (default: $WANDB_ENTITY, else the API key's default entity)"),
  })
  .strict()
  .superRefine((config, ctx) => {
    if (config.dataset === 'cifar10' && config.imageSize !== 32) {
      ctx.addIssue({
        code: 'custom',
        path: ['imageSize'],
        message: `${config.imageSize}: CIFAR-10 images are 32x32 (train on them at 32, or on an image folder at any size)`,
        input: config.imageSize,
      });
    }
    if (config.dataset === 'image-folder' && !config.datasetFolder) {
      ctx.addIssue({
        code: 'custom',
        path: ['datasetFolder'],
        message: 'is required with --dataset image-folder',
        input: undefined,
      });
    }
  });

/** A complete, validated run configuration. */
export type RunConfig = z.infer<typeof runConfigSchema>;
/** What a caller gives: the two names, plus any overrides of the defaults. */
export type RunConfigInput = z.input<typeof runConfigSchema>;
export type ModelName = (typeof MODEL_NAMES)[number];

/** `learningRate` -> `learning-rate`: the flag names are the schema keys in kebab case. */
export function flagName(key: string): string {
  return key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
}

/** `learning-rate` or `learning_rate` -> `learningRate`, so config files may use any of the three. */
export function keyName(flag: string): string {
  return flag.replace(/[-_]([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** Validates options against one of the schemas above; throws ConfigError naming the first bad flag. */
export function parseOptions<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  const result = schema.safeParse(input, { reportInput: true });
  if (result.success) return result.data;
  throw new ConfigError(describeIssue(result.error.issues[0]!));
}

/** Validates a configuration; throws ConfigError naming the first bad flag. */
export function parseRunConfig(input: unknown): RunConfig {
  return parseOptions(runConfigSchema, input);
}

/**
 * Reads a YAML or JSON file of run options (keys as the flags, in kebab-, snake- or camelCase) into
 * schema keys. Not validated yet: mergeConfig, then parseRunConfig, so flags can complete it.
 */
export function loadConfigFile(path: string): Record<string, unknown> {
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

/**
 * Layers of options by schema key (or as the flags spell them), lowest first: e.g. a config file's,
 * then the environment's, then the flags. Validate the result with parseRunConfig.
 */
export function mergeConfig(...layers: Array<Record<string, unknown>>): Record<string, unknown> {
  return Object.fromEntries(
    layers.flatMap((options) => Object.entries(options).map(([k, v]) => [keyName(k), v] as const)),
  );
}

/** The prefix of the environment variables that give run options: IMAGE_CLASSIFIER_LEARNING_RATE=0.05. */
export const ENV_PREFIX = 'IMAGE_CLASSIFIER_';

/** `learningRate` -> `IMAGE_CLASSIFIER_LEARNING_RATE`. */
export function envName(key: string): string {
  return ENV_PREFIX + flagName(key).toUpperCase().replace(/-/g, '_');
}

/**
 * Run options from the environment (IMAGE_CLASSIFIER_<FLAG>, e.g. IMAGE_CLASSIFIER_EPOCHS=4), typed as
 * the flags are: numbers as typed (decimal), booleans true/false/1/0. Other IMAGE_CLASSIFIER_*
 * variables (the CIFAR-10 URL, the serving token) are not options and are left alone.
 */
export function configFromEnv(env: NodeJS.ProcessEnv = process.env): Record<string, unknown> {
  const options: Record<string, unknown> = {};
  for (const spec of flagSpecs()) {
    const name = envName(spec.key);
    const text = env[name];
    if (text === undefined || text === '') continue;
    if (spec.type === 'number') {
      const value = Number(text.trim());
      if (!/^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(text.trim()) || !Number.isFinite(value))
        throw new ConfigError(`$${name} must be a number (got ${JSON.stringify(text)})`);
      options[spec.key] = value;
    } else if (spec.type === 'boolean') {
      const value = { true: true, '1': true, false: false, '0': false }[text.trim().toLowerCase()];
      if (value === undefined)
        throw new ConfigError(`$${name} must be true, false, 1 or 0 (got ${JSON.stringify(text)})`);
      options[spec.key] = value;
    } else {
      options[spec.key] = text;
    }
  }
  return options;
}

/** A value as the user wrote it: JSON, but Infinity and NaN as themselves (JSON says null). */
function shown(value: unknown): string {
  return typeof value === 'number' ? String(value) : JSON.stringify(value);
}

/** One line per problem, in the user's terms: the flag, what it must be, and what was given. */
function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === 'unrecognized_keys')
    return `unknown option ${issue.keys.map((k) => '--' + flagName(k)).join(', ')}`;
  const key = issue.path.length > 0 ? String(issue.path[0]) : '';
  if (key === '') return issue.message;
  const flag = `--${flagName(key)}`;
  const got = issue.input === undefined ? '' : ` (got ${shown(issue.input)})`;
  switch (issue.code) {
    case 'invalid_type':
      if (issue.input === undefined) return `${flag} is required`;
      // zod's number type refuses Infinity and NaN (from a config file's .inf or .nan) as not numbers.
      if (typeof issue.input === 'number' && !Number.isFinite(issue.input))
        return `${flag} must be a finite number${got}`;
      return `${flag} must be ${issue.expected === 'int' ? 'an integer' : `a ${issue.expected}`}${got}`;
    case 'too_small':
      return issue.origin === 'string'
        ? `${flag} ${issue.message}${got}`
        : `${flag} must be ${issue.inclusive ? '>=' : '>'} ${String(issue.minimum)}${got}`;
    case 'too_big':
      return issue.origin === 'string'
        ? `${flag} ${issue.message}${got}`
        : `${flag} must be ${issue.inclusive ? '<=' : '<'} ${String(issue.maximum)}${got}`;
    case 'invalid_value':
      return `${flag} must be one of ${issue.values.map((v) => String(v)).join(', ')}${got}`;
    case 'custom':
      return `${flag} ${issue.message}`;
    default:
      return `${flag} ${issue.message}${got}`;
  }
}

export interface FlagSpec {
  key: string;
  flag: string;
  type: 'string' | 'number' | 'boolean';
  description: string;
  choices?: readonly string[];
  defaultValue?: unknown;
  required: boolean;
}

/** Describes each option of a schema (the run configuration's by default) for the CLI and the docs checks. */
export function flagSpecs(schema: z.ZodObject = runConfigSchema): FlagSpec[] {
  return Object.entries(schema.shape).map(([key, field]) => {
    let inner: z.ZodType = field;
    let defaultValue: unknown;
    let required = true;
    for (;;) {
      const def = inner._zod.def as { type: string; innerType?: z.ZodType; defaultValue?: unknown };
      if (def.type === 'default') {
        defaultValue = def.defaultValue;
        required = false;
        inner = def.innerType!;
      } else if (def.type === 'optional') {
        required = false;
        inner = def.innerType!;
      } else break;
    }
    const def = inner._zod.def as { type: string; entries?: Record<string, string> };
    const type = def.type === 'number' ? 'number' : def.type === 'boolean' ? 'boolean' : 'string';
    const spec: FlagSpec = {
      key,
      flag: flagName(key),
      type,
      description: field.description ?? '',
      required,
      defaultValue,
    };
    if (def.type === 'enum' && def.entries) spec.choices = Object.values(def.entries);
    return spec;
  });
}
