// The `evaluate`, `predict` and `serve` subcommands: their flags and what they do. src/cli/main.ts
// registers them; they live here to keep the commands that use a trained model together.
import { basename, dirname } from 'node:path';
import type { Argv } from 'yargs';
import { BACKENDS, DATASETS, DEVICES, MAX_BATCH_SIZE, type RunConfig } from '../config.js';
import { numberOption, PARSER_CONFIGURATION } from '../cli/number-flags.js';
import { IMAGE_EXTENSIONS } from '../data/image-folder.js';
import { silentProgress, terminalProgress } from '../reports/progress.js';
import { evaluate, type EvaluateResult } from '../training/evaluate-run.js';
import { DEFAULT_TOP_K, loadModel, type LoadModelOptions } from './model.js';
import { predictFiles } from './predict-files.js';
import {
  createServer,
  DEFAULT_BATCHING,
  DEFAULT_HOST,
  DEFAULT_MAX_BODY_BYTES,
  DEFAULT_MAX_IMAGES,
  DEFAULT_PORT,
} from './server.js';
import { ConfigError } from '../errors.js';

const PROGRAM = 'image-classifier-trainer';
/** Signals closer together than this are one (see runServe). */
const DUPLICATE_SIGNAL_MS = 500;

function computeOptions(y: Argv): Argv {
  return y
    .option('device', {
      type: 'string',
      choices: DEVICES,
      default: 'auto',
      describe: 'Where to run the model',
      group: 'Compute:',
    })
    .option('backend', {
      type: 'string',
      choices: BACKENDS,
      default: 'auto',
      describe: 'tfjs backend (auto: the fastest that loads and works)',
      group: 'Compute:',
    })
    .option(
      'threads',
      numberOption('threads', {
        describe: 'Threads for the CPU backends (default: all cores)',
        group: 'Compute:',
      }),
    );
}

function positiveInteger(argv: Record<string, unknown>, key: string, flag: string): number | undefined {
  const value = argv[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1)
    throw new ConfigError(`--${flag} must be a positive integer (got ${String(value)})`);
  return value;
}

function modelOptions(argv: Record<string, unknown>): LoadModelOptions {
  return {
    experimentsFolder: argv.experimentsFolder as string,
    device: argv.device as RunConfig['device'],
    backend: argv.backend as RunConfig['backend'],
    threads: positiveInteger(argv, 'threads', 'threads'),
  };
}

/** `10485760`, `512k`, `10M`, `10MiB`, `1G`: bytes, suffixes binary (k = 1024). */
export function parseByteSize(text: string, flag: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?$/i.exec(text.trim());
  const unit = (match?.[2] ?? 'b').toLowerCase()[0]!;
  const bytes = match
    ? Math.floor(Number(match[1]) * { b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[unit]!)
    : NaN;
  if (!Number.isFinite(bytes) || bytes < 1)
    throw new ConfigError(`--${flag} must be a size in bytes such as 10485760, 512k or 10M (got ${text})`);
  return bytes;
}

// ---------------------------------------------------------------- evaluate

export function evaluateOptions(y: Argv): Argv {
  return computeOptions(
    y
      .positional('run', { type: 'string', describe: '<experiment>/<run>, or the path of a run folder' })
      .option('dataset', {
        type: 'string',
        choices: DATASETS,
        describe: "Data to evaluate on (default: the run's own, its test split)",
      })
      .option('dataset-folder', {
        type: 'string',
        describe:
          'Folder of that data: CIFAR-10 batches, or an image folder (<class>/* is evaluated whole, train/ + test/ on test/)',
      })
      .option('name', {
        type: 'string',
        describe:
          "Name of the files written, evaluation-<name>.json/.png (default: 'test', or the folder's name)",
      })
      .option('overwrite', { type: 'boolean', describe: 'Replace evaluation-<name> files that exist' })
      .option('json', { type: 'boolean', describe: 'Print the evaluation as JSON' }),
  ).example('$0 evaluate baseline/run-1', "Accuracy on the run's test split: evaluation-test.json and .png");
}

function percent(x: number): string {
  return `${(x * 100).toFixed(2)}%`;
}

function evaluationText(result: EvaluateResult, runPath: string): string {
  const { classNames, confusion } = result;
  const width = Math.max(5, ...classNames.map((c) => c.length));
  const lines = [
    `${result.name}: ${result.count} images (${result.dataset.kind}, ${result.dataset.split === 'all' ? 'all images' : 'test split'} of ${result.dataset.source})`,
    `accuracy ${percent(result.accuracy)}, loss ${result.loss.toFixed(4)}`,
    '',
    `${'class'.padEnd(width)}  accuracy  images`,
    ...classNames.map(
      (c, k) =>
        `${c.padEnd(width)}  ${percent(result.perClassAccuracy[k]!).padStart(8)}  ${String(confusion[k]!.reduce((a, b) => a + b, 0)).padStart(6)}`,
    ),
    '',
    'confusion matrix (rows: true class, columns: predicted class)',
    [''.padEnd(width), ...classNames.map((c) => c.padStart(Math.max(6, c.length)))].join(' '),
    ...confusion.map((row, k) =>
      [
        classNames[k]!.padEnd(width),
        ...row.map((n, j) => String(n).padStart(Math.max(6, classNames[j]!.length))),
      ].join(' '),
    ),
  ];
  if (result.files) {
    lines.push('', `wrote ${basename(result.files.json)} and ${basename(result.files.chart)} in ${runPath}`);
  }
  return lines.join('\n');
}

export async function runEvaluate(argv: Record<string, unknown>): Promise<void> {
  const result = await evaluate(String(argv.run), {
    ...modelOptions(argv),
    dataset: argv.dataset as RunConfig['dataset'] | undefined,
    datasetFolder: argv.datasetFolder as string | undefined,
    name: argv.name as string | undefined,
    overwrite: argv.overwrite === true,
    save: true,
    progress: terminalProgress(),
    // Progress and data-loading lines go to stderr: stdout holds the report (or the JSON).
    log: (line) => process.stderr.write(line + '\n'),
  });
  if (argv.json === true) {
    console.log(JSON.stringify(result, null, 2));
    return;
  }
  console.log(evaluationText(result, result.files ? dirname(result.files.json) : ''));
}

// ---------------------------------------------------------------- predict

export function predictOptions(y: Argv): Argv {
  return computeOptions(
    y
      // The CLI keeps only the last of repeated arguments, which would also keep only the last input.
      .parserConfiguration({ ...PARSER_CONFIGURATION, 'duplicate-arguments-array': true })
      .positional('run', { type: 'string', describe: '<experiment>/<run>, or the path of a run folder' })
      .positional('inputs', {
        type: 'string',
        array: true,
        describe: 'Image files (any format sharp reads), or folders searched recursively for images',
      })
      .option(
        'top-k',
        numberOption('top-k', {
          default: DEFAULT_TOP_K,
          describe: 'Labels per image, most probable first',
        }),
      )
      .option('json', {
        type: 'boolean',
        describe: 'JSON Lines: one object per image, with every class probability',
      })
      .option('csv', { type: 'boolean', describe: 'CSV: file, then label_i, probability_i for the top k' })
      .conflicts('json', 'csv')
      .option(
        'batch-size',
        numberOption('batch-size', {
          default: 32,
          describe: 'Images per model call',
          // The handler checks the rest; larger batches do not fit the wasm heap.
          bounds: { max: MAX_BATCH_SIZE },
        }),
      ),
  )
    .example('$0 predict baseline/run-1 cat.jpg dog.png', 'Top 3 labels of two images')
    .example(
      '$0 predict baseline/run-1 ./photos --csv > predictions.csv',
      'Every image under ./photos, as CSV',
    )
    .epilogue(
      'Files that cannot be read are named on stderr and skipped. Exit codes: 0 every image predicted; 1 some could not be read; 2 bad input.',
    );
}

/**
 * Label smoothing trains the model towards `1 - s + s/K` for the right class, not 1: a confident
 * prediction then reads e.g. 82%, which looks low to someone who does not know. Said once, on stderr.
 */
export function smoothingNote(labelSmoothing: unknown, classes: number): string | null {
  if (typeof labelSmoothing !== 'number' || !(labelSmoothing > 0) || classes < 2) return null;
  const ceiling = 1 - labelSmoothing + labelSmoothing / classes;
  return (
    `note: this model was trained with label smoothing ${labelSmoothing}, so even a sure prediction gets about ` +
    `${(ceiling * 100).toFixed(0)}%, not 100%: compare the probabilities with each other, not with 100%`
  );
}

export async function runPredict(argv: Record<string, unknown>): Promise<void> {
  const inputs = (argv.inputs as string[] | undefined) ?? [];
  const topK = positiveInteger(argv, 'topK', 'top-k') ?? DEFAULT_TOP_K;
  const batchSize = positiveInteger(argv, 'batchSize', 'batch-size');
  const format = argv.json === true ? 'json' : argv.csv === true ? 'csv' : 'table';
  const model = await loadModel(String(argv.run), modelOptions(argv));
  try {
    // A live bar beside a table on the same terminal would garble it; JSON and CSV go to files or pipes.
    const showProgress = format !== 'table' || !process.stdout.isTTY;
    const result = await predictFiles(model, inputs, {
      topK,
      format,
      batchSize,
      progress: showProgress ? terminalProgress() : silentProgress,
      onError: ({ file, reason }) => process.stderr.write(`${PROGRAM}: skipped ${file}: ${reason}\n`),
    });
    const note = smoothingNote(model.manifest.config.labelSmoothing, model.classNames.length);
    if (note && result.predicted > 0) process.stderr.write(`${note}\n`);
    if (result.images === 0 && result.failed.length === 0) {
      throw new ConfigError(
        `no image files in ${inputs.join(', ')} (looked for ${IMAGE_EXTENSIONS.join(' ')})`,
      );
    }
    if (result.failed.length > 0) {
      process.stderr.write(
        `${PROGRAM}: ${result.predicted} image${result.predicted === 1 ? '' : 's'} predicted, ${result.failed.length} could not be read\n`,
      );
      process.exitCode = 1;
    }
  } finally {
    model.dispose();
  }
}

// ---------------------------------------------------------------- serve

export function serveOptions(y: Argv): Argv {
  return computeOptions(
    y
      .positional('run', { type: 'string', describe: '<experiment>/<run>, or the path of a run folder' })
      .option(
        'port',
        numberOption('port', {
          default: DEFAULT_PORT,
          describe: 'Port to listen on (0: any free port)',
        }),
      )
      .option('host', {
        type: 'string',
        default: DEFAULT_HOST,
        describe: 'Address to listen on (0.0.0.0: every interface, as in a container)',
      })
      .option('max-body-bytes', {
        type: 'string',
        default: String(DEFAULT_MAX_BODY_BYTES),
        describe: 'Largest request body (bytes, or 512k, 10M): larger ones get 413',
      })
      .option(
        'max-images',
        numberOption('max-images', {
          default: DEFAULT_MAX_IMAGES,
          describe: 'Most images in one multipart request',
        }),
      )
      .option(
        'top-k',
        numberOption('top-k', {
          default: DEFAULT_TOP_K,
          describe: 'Labels per image unless ?top_k=N',
        }),
      )
      .option(
        'max-batch',
        numberOption('max-batch', {
          default: DEFAULT_BATCHING.maxBatch,
          describe: 'Most images per model call when requests arrive together (1: no batching)',
          // The handler checks the rest; larger batches do not fit the wasm heap.
          bounds: { max: MAX_BATCH_SIZE },
        }),
      )
      .option(
        'batch-window-ms',
        numberOption('batch-window-ms', {
          default: DEFAULT_BATCHING.windowMs,
          describe: 'How long an image waits for others to batch with when the model is idle',
        }),
      )
      .option('quiet', { type: 'boolean', describe: 'No line per request on stdout' }),
  )
    .example(
      '$0 serve baseline/run-1',
      'http://127.0.0.1:8080: POST /predict, GET /healthz, /metrics, /model',
    )
    .example(
      'curl -s --data-binary @cat.jpg -H "Content-Type: image/jpeg" localhost:8080/predict',
      'Classify an image',
    )
    .epilogue('SIGTERM or Ctrl-C stops accepting connections, finishes the requests in flight and exits 0.');
}

export async function runServe(argv: Record<string, unknown>): Promise<void> {
  const port = argv.port as number;
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new ConfigError(`--port must be an integer from 0 to 65535 (got ${String(argv.port)})`);
  const maxBodyBytes = parseByteSize(String(argv.maxBodyBytes), 'max-body-bytes');
  const maxImages = positiveInteger(argv, 'maxImages', 'max-images');
  const topK = positiveInteger(argv, 'topK', 'top-k');
  const maxBatch = positiveInteger(argv, 'maxBatch', 'max-batch');
  const windowMs = argv.batchWindowMs as number;
  if (!(windowMs >= 0 && windowMs <= 1000))
    throw new ConfigError(`--batch-window-ms must be from 0 to 1000 (got ${String(argv.batchWindowMs)})`);
  const model = await loadModel(String(argv.run), modelOptions(argv));
  console.log(
    `model ${model.runId} (${model.manifest.config.model}, ${model.classNames.length} classes) loaded in ` +
      `${model.loadSeconds.toFixed(2)} s on ${model.backend.name} (${model.backend.threads} thread${model.backend.threads === 1 ? '' : 's'})`,
  );
  const server = createServer(model, {
    maxBodyBytes,
    maxImages,
    topK,
    batching: { maxBatch, windowMs },
    log: argv.quiet === true ? undefined : (line) => console.log(line),
  });
  // Signals are handled from here on: a second one while draining quits at once.
  let stop: (signal: NodeJS.Signals) => void = () => {};
  const stopped = new Promise<NodeJS.Signals>((resolve) => (stop = resolve));
  let first: number | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    // One Ctrl-C can arrive twice: from the terminal to the whole process group, and forwarded by a
    // parent such as npm (npx). Only a signal well after the first is a second one.
    if (first === undefined) {
      first = performance.now();
      stop(signal);
    } else if (performance.now() - first > DUPLICATE_SIGNAL_MS) process.exit(1);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    let address;
    try {
      address = await server.listen(port, String(argv.host));
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw new ConfigError(
        `cannot listen on ${String(argv.host)}:${port} (${code ?? (error as Error).message})`,
      );
    }
    console.log(`listening on ${address.url}: POST /predict, GET /healthz, GET /metrics, GET /model`);
    const signal = await stopped;
    console.log(`${signal}: no new connections; finishing the requests in flight`);
    await server.close();
    console.log('stopped');
    // Nothing should be left to keep Node running; should anything be, do not wait for SIGKILL.
    setTimeout(() => process.exit(), 2000).unref();
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    model.dispose();
  }
}
