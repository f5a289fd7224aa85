// The options of the commands that use a trained model (evaluate, predict, serve) and of the library
// functions behind them: zod schemas, as config.ts is for training, so that their flags, their checks
// and their TypeScript types come from one place.
import { z } from 'zod';
import { DATASETS, DEVICES, MAX_BATCH_SIZE, runConfigSchema } from './config.js';
import { ConfigError } from './errors.js';

/** Their defaults, which the library's functions share. Batching: see src/serving/batcher.ts for why. */
export const SERVING_DEFAULTS = {
  topK: 3,
  batchSize: 32,
  port: 8080,
  host: '127.0.0.1',
  maxBodyBytes: 10 * 1024 * 1024,
  maxImages: 64,
  maxBatch: 32,
  batchWindowMs: 0,
  logFormat: 'json',
} as const;

/** A number check whose message says what the number must be and shows what was given. */
function numberThat(what: string, test: (n: number) => boolean, max?: number) {
  // A bound given as `max` is checked first, in the schema's words (`must be <= 1024`).
  return (max === undefined ? z.number() : z.number().max(max)).refine(test, {
    error: (issue) => `must be ${what} (got ${String(issue.input)})`,
  });
}

const positiveInteger = (max?: number) =>
  numberThat('a positive integer', (n) => Number.isInteger(n) && n >= 1, max);

const SIZE_EXAMPLES = 'a size in bytes such as 10485760, 512k or 10M';

/** `10485760`, `512k`, `10M`, `10MiB`, `1G`: bytes, suffixes binary (k = 1024); NaN for anything else. */
function byteCount(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?$/i.exec(text.trim());
  const unit = (match?.[2] ?? 'b').toLowerCase()[0]!;
  const bytes = match
    ? Math.floor(Number(match[1]) * { b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[unit]!)
    : NaN;
  return Number.isFinite(bytes) && bytes >= 1 ? bytes : NaN;
}

/** A byte size as `--max-body-bytes` takes it (see byteCount); throws a ConfigError naming `flag`. */
export function parseByteSize(text: string, flag: string): number {
  const bytes = byteCount(text);
  if (Number.isNaN(bytes)) throw new ConfigError(`--${flag} must be ${SIZE_EXAMPLES} (got ${text})`);
  return bytes;
}

/** A number of bytes, or its text with a suffix (the flag's value): a number once parsed. */
const byteSize = z.union([z.number(), z.string()]).transform((value, ctx) => {
  const bytes = byteCount(String(value));
  if (!Number.isNaN(bytes)) return bytes;
  ctx.addIssue({ code: 'custom', message: `must be ${SIZE_EXAMPLES} (got ${String(value)})`, input: value });
  return z.NEVER;
});

/** Where a trained model runs. */
export const computeOptionsSchema = z.object({
  device: z.enum(DEVICES).default('auto').describe('Where to run the model'),
  backend: runConfigSchema.shape.backend,
  threads: positiveInteger().optional().describe('Threads for the CPU backends (default: all cores)'),
});
// Each command's own options come first, then these: the order they are checked (and listed) in.
const computeShape = computeOptionsSchema.shape;
const { experimentsFolder } = runConfigSchema.shape;

/** loadModel's options: where the run is found and where its model runs. */
export const modelOptionsSchema = z.object({ experimentsFolder, ...computeShape }).strict();

export const evaluateOptionsSchema = z
  .object({
    experimentsFolder,
    dataset: z
      .enum(DATASETS)
      .optional()
      .describe("Data to evaluate on (default: the run's own, its test split)"),
    datasetFolder: z
      .string()
      .optional()
      .describe(
        'Folder of that data: CIFAR-10 batches, or an image folder (<class>/* is evaluated whole, train/ + test/ on test/)',
      ),
    name: z
      .string()
      .optional()
      .describe(
        "Name of the files written, evaluation-<name>.json/.png (default: 'test', or the folder's name)",
      ),
    overwrite: z.boolean().optional().describe('Replace evaluation-<name> files that exist'),
    ...computeShape,
  })
  .strict();

export const predictOptionsSchema = z
  .object({
    experimentsFolder,
    topK: positiveInteger().default(SERVING_DEFAULTS.topK).describe('Labels per image, most probable first'),
    // Larger batches do not fit the wasm heap.
    batchSize: positiveInteger(MAX_BATCH_SIZE)
      .default(SERVING_DEFAULTS.batchSize)
      .describe('Images per model call'),
    ...computeShape,
  })
  .strict();

export const serveOptionsSchema = z
  .object({
    experimentsFolder,
    port: numberThat('an integer from 0 to 65535', (n) => Number.isInteger(n) && n >= 0 && n <= 65535)
      .default(SERVING_DEFAULTS.port)
      .describe('Port to listen on (0: any free port)'),
    host: z
      .string()
      .default(SERVING_DEFAULTS.host)
      .describe('Address to listen on (0.0.0.0: every interface, as in a container)'),
    maxBodyBytes: byteSize
      .default(SERVING_DEFAULTS.maxBodyBytes)
      .describe('Largest request body (bytes, or 512k, 10M): larger ones get 413'),
    maxImages: positiveInteger()
      .default(SERVING_DEFAULTS.maxImages)
      .describe('Most images in one multipart request'),
    topK: positiveInteger().default(SERVING_DEFAULTS.topK).describe('Labels per image unless ?top_k=N'),
    maxBatch: positiveInteger(MAX_BATCH_SIZE)
      .default(SERVING_DEFAULTS.maxBatch)
      .describe('Most images per model call when requests arrive together (1: no batching)'),
    batchWindowMs: numberThat('from 0 to 1000', (n) => n >= 0 && n <= 1000)
      .default(SERVING_DEFAULTS.batchWindowMs)
      .describe('How long an image waits for others to batch with when the model is idle'),
    cors: z
      .string()
      .optional()
      .describe(
        'Origins a browser may call the API from, comma separated (https://app.example.com), or * for any',
      ),
    authTokenFile: z
      .string()
      .optional()
      .describe(
        'File holding a bearer token that /predict and /model then require (default: $IMAGE_CLASSIFIER_TOKEN, if set)',
      ),
    logFormat: z
      .enum(['json', 'text'])
      .default(SERVING_DEFAULTS.logFormat)
      .describe('Request log lines: JSON (pino, one object per line) or text'),
    ...computeShape,
  })
  .strict();

/** What a caller gives for each (every option may be left out). */
export type ModelOptionsInput = z.input<typeof modelOptionsSchema>;
export type EvaluateOptionsInput = z.input<typeof evaluateOptionsSchema>;
export type PredictOptionsInput = z.input<typeof predictOptionsSchema>;
export type ServeOptionsInput = z.input<typeof serveOptionsSchema>;
