// `npm run bench`: training throughput per backend, optionally side by side with the PyTorch CPU
// reference (../shared/bench/pytorch_reference.py), or time to a validation accuracy on real data.
// Each measurement runs in a fresh child process (scripts/bench-child.ts) so backends never share a
// process and peak RSS belongs to one configuration. Run `npm run bench -- --help` for the options.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { extname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { BACKEND_DEVICES, BACKEND_NAMES, type BackendName } from '../src/backends/names.js';
import { MODEL_NAMES, type ModelName } from '../src/config.js';
import {
  RESULT_MARKER,
  type ChildResult,
  type ChildSpec,
  type ProbeResult,
  type ThroughputResult,
  type TimeToAccuracyResult,
} from './bench-protocol.js';

const ROOT = resolve(import.meta.dirname, '..');
// .ts under tsx; .js when compiled with tsc (scripts/gpu-check.sh runs it so on a machine without tsx).
const CHILD = join(import.meta.dirname, `bench-child${extname(import.meta.filename)}`);
const PYTHON = '/usr/bin/python3';
// On the GPU machine ../shared/device/gpu-env.sh points $BENCH at the references and its python3 has CUDA.
const BENCH_DIR = process.env.BENCH ?? resolve(ROOT, '../shared/bench');
const REFERENCE = join(BENCH_DIR, 'pytorch_reference.py');
const GPU_REFERENCE = join(BENCH_DIR, 'pytorch_gpu_reference.py');
const GPU_PYTHON = process.env.BENCH_PYTHON ?? 'python3';
const INSTALL_HINT = 'apt-get install -y python3-torch python3-pil';
/** Backends that run on a GPU: their reference is PyTorch with CUDA on the same GPU. */
const GPU_BACKENDS = BACKEND_NAMES.filter((b) => BACKEND_DEVICES[b] === 'gpu');

/** Measured by default: the models the PyTorch reference has too (resnet on request: --models resnet). */
const MODELS: readonly ModelName[] = ['net', 'vgg'];
/** Batch sizes as the comparisons with the reference use them. */
const BATCH: Record<ModelName, number> = { net: 64, vgg: 256, resnet: 128 };
const DEFAULT_IMAGES: Record<ModelName, number> = { net: 2560, vgg: 1024, resnet: 512 };
const DEFAULT_WARMUP = 3;

const USAGE = `Usage: npm run bench -- [options]

Throughput (default): training images/s (forward + backward + SGD step on random data, after warm-up)
per backend, for net at batch 64 and vgg at batch 256, each in a fresh process.
  --models net,vgg        networks (default both)
  --backends wasm,...     backends (default: every one that works here, but cpu)
  --all                   include the (very slow) plain-JS cpu backend: a couple of steps of net
  --threads N[,M]         threads for the backend and PyTorch (default ${availableParallelism()})
  --images N              timed images per measurement (default net ${DEFAULT_IMAGES.net}, vgg ${DEFAULT_IMAGES.vgg})
  --warmup N              untimed steps first (default ${DEFAULT_WARMUP})
  --reference             also run the PyTorch reference, interleaved, and print ours/PyTorch
                          (GPU backends: pytorch_gpu_reference.py with CUDA, fp32, in $BENCH or ../shared/bench)
  --repeat K              K runs of everything; report medians (default 1)

Time to accuracy:
  --time-to-accuracy      train the default recipe with train() on an image folder
  --data DIR              the cifar10-train folder of ../shared/data/cifar10-train-jpg.tar.gz, unpacked
  --target A              validation accuracy to reach (default 0.7)
  --epochs E              epochs (default 8)
  --cache DIR             decoded-image cache (default ${join(tmpdir(), 'image-classifier-bench-data')})
  --reference             also run the reference's fast recipe for E epochs (on the GPU for a GPU backend)

Serving (scripts/bench-serve.ts; \`--serve --help\` lists its options):
  --serve                 requests/s and p50/p99 latency of \`serve\` on 127.0.0.1, concurrency 1 and 8

Output:
  --json                  JSON only on stdout (the table goes to stderr)
  --out FILE              also write the JSON to FILE`;

class UsageError extends Error {
  override name = 'UsageError';
}

interface Options {
  mode: 'throughput' | 'time-to-accuracy';
  models: ModelName[];
  modelsGiven: boolean;
  backends: BackendName[] | undefined;
  all: boolean;
  threads: number[];
  images: number | undefined;
  warmup: number;
  reference: boolean;
  repeat: number;
  json: boolean;
  out: string | undefined;
  data: string | undefined;
  target: number;
  epochs: number;
  cache: string;
}

function positiveInt(flag: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1)
    throw new UsageError(`--${flag} must be a positive integer (got ${value})`);
  return n;
}

function list<T extends string>(flag: string, value: string, allowed: readonly T[]): T[] {
  const items = value.split(',').filter((s) => s !== '');
  for (const item of items) {
    if (!allowed.includes(item as T)) {
      throw new UsageError(`--${flag}: '${item}' is not one of ${allowed.join(', ')}`);
    }
  }
  if (items.length === 0) throw new UsageError(`--${flag} must name at least one`);
  return items as T[];
}

function parseOptions(argv: string[]): Options | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        help: { type: 'boolean', short: 'h' },
        models: { type: 'string' },
        backends: { type: 'string' },
        all: { type: 'boolean' },
        threads: { type: 'string' },
        images: { type: 'string' },
        warmup: { type: 'string' },
        reference: { type: 'boolean' },
        repeat: { type: 'string' },
        json: { type: 'boolean' },
        out: { type: 'string' },
        'time-to-accuracy': { type: 'boolean' },
        data: { type: 'string' },
        target: { type: 'string' },
        epochs: { type: 'string' },
        cache: { type: 'string' },
      },
    }));
  } catch (error) {
    throw new UsageError((error as Error).message.split('\n')[0]!);
  }
  if (values.help) return 'help';
  const target = values.target === undefined ? 0.7 : Number(values.target);
  if (!(target > 0 && target <= 1)) throw new UsageError(`--target must be in (0, 1] (got ${values.target})`);
  const warmup = values.warmup === undefined ? DEFAULT_WARMUP : Number(values.warmup);
  if (!Number.isInteger(warmup) || warmup < 0) {
    throw new UsageError(`--warmup must be a whole number (got ${values.warmup})`);
  }
  return {
    mode: values['time-to-accuracy'] ? 'time-to-accuracy' : 'throughput',
    models: values.models === undefined ? [...MODELS] : list('models', values.models, MODEL_NAMES),
    modelsGiven: values.models !== undefined,
    backends: values.backends === undefined ? undefined : list('backends', values.backends, BACKEND_NAMES),
    all: values.all ?? false,
    threads:
      values.threads === undefined
        ? [availableParallelism()]
        : values.threads.split(',').map((t) => positiveInt('threads', t)),
    images: values.images === undefined ? undefined : positiveInt('images', values.images),
    warmup,
    reference: values.reference ?? false,
    repeat: values.repeat === undefined ? 1 : positiveInt('repeat', values.repeat),
    json: values.json ?? false,
    out: values.out,
    data: values.data === undefined ? undefined : resolve(values.data),
    target,
    epochs: values.epochs === undefined ? 8 : positiveInt('epochs', values.epochs),
    cache: resolve(values.cache ?? join(tmpdir(), 'image-classifier-bench-data')),
  };
}

// ---------------------------------------------------------------- child processes

/** Progress and the children's logs go to stderr, so stdout holds only the table or the JSON. */
function note(line: string): void {
  process.stderr.write(line + '\n');
}

/** Runs a command; resolves to its stdout. Its stderr is shown as it comes and its tail kept for errors. */
function runProcess(command: string, args: string[], what: string): Promise<string> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderrTail = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      process.stderr.write(d);
      stderrTail = (stderrTail + d.toString()).slice(-2000);
    });
    child.on('error', (error) => reject(new Error(`${what}: ${error.message}`)));
    child.on('close', (code, signal) => {
      if (code === 0) return resolveRun(stdout);
      const last = stderrTail.trim().split('\n').pop() ?? '';
      reject(new Error(`${what} failed (${signal ?? `exit code ${code}`})${last ? `: ${last}` : ''}`));
    });
  });
}

/** One measurement in a fresh Node process, under the same loader (tsx) as this one. */
async function runChild<R extends ChildResult>(spec: ChildSpec & { kind: R['kind'] }): Promise<R> {
  const stdout = await runProcess(
    process.execPath,
    [...process.execArgv, CHILD, JSON.stringify(spec)],
    `bench child (${spec.kind})`,
  );
  const line = stdout.split('\n').find((l) => l.startsWith(RESULT_MARKER));
  if (!line) throw new Error(`bench child (${spec.kind}) printed no result`);
  const result = JSON.parse(line.slice(RESULT_MARKER.length)) as ChildResult;
  if (result.kind !== spec.kind) throw new Error(`bench child answered '${result.kind}' to '${spec.kind}'`);
  return result as R;
}

/** Fails early, with one line, when the reference (the CPU one, or the CUDA one) cannot run. */
function assertReference(gpu = false): void {
  const [script, python] = gpu ? [GPU_REFERENCE, GPU_PYTHON] : [REFERENCE, PYTHON];
  if (!existsSync(script)) throw new UsageError(`--reference: ${script} not found`);
  const check = gpu ? 'import torch; assert torch.cuda.is_available()' : 'import torch';
  const probe = spawnSync(python, ['-c', check], { stdio: 'ignore' });
  if (probe.error || probe.status !== 0) {
    throw new UsageError(
      gpu
        ? `--reference with a GPU backend needs PyTorch with CUDA for ${python} (BENCH_PYTHON names another)`
        : `--reference needs PyTorch for ${PYTHON}: ${INSTALL_HINT}`,
    );
  }
}

/** Runs a reference; returns the JSON objects of the lines of its output that are JSON. */
async function runReference(args: string[], gpu = false): Promise<Record<string, unknown>[]> {
  const [script, python] = gpu ? [GPU_REFERENCE, GPU_PYTHON] : [REFERENCE, PYTHON];
  const stdout = await runProcess(python, [script, ...args], `PyTorch reference (${args[0]})`);
  const objects = stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  if (objects.length === 0)
    throw new Error(`PyTorch reference printed no JSON (${stdout.trim().split('\n').pop() ?? ''})`);
  return objects;
}

function numberField(record: Record<string, unknown>, key: string): number {
  const value = record[key];
  if (typeof value !== 'number') throw new Error(`PyTorch reference: no number '${key}' in its output`);
  return value;
}

// ---------------------------------------------------------------- throughput

interface OurRun {
  imagesPerSecond: number;
  seconds: number;
  cpuSeconds: number;
  images: number;
  peakRssMB: number;
}

interface PyTorchRun {
  imagesPerSecond: number;
  seconds: number;
  images: number;
  threads: number;
}

interface Row {
  backend: BackendName;
  package: string | null;
  /** Threads asked for; `backendThreads` is what the backend says it uses. */
  threads: number;
  backendThreads: number | null;
  model: ModelName;
  batch: number;
  images: number;
  warmupSteps: number;
  imagesPerSecond: number | null;
  peakRssMB: number | null;
  runs: OurRun[];
  errors: string[];
  pytorch: { imagesPerSecond: number | null; runs: PyTorchRun[]; errors: string[] } | null;
  /** ours / PyTorch, medians. */
  ratio: number | null;
  /** GPU backends: where one step's GPU time goes (the last run's profile). */
  topKernels?: ThroughputResult['topKernels'];
}

interface ThroughputReport {
  mode: 'throughput';
  date: string;
  host: Host;
  repeat: number;
  notes: string[];
  skipped: { backend: string; model?: string; reason: string }[];
  results: Row[];
}

interface Host {
  cpu: string;
  cores: number;
  node: string;
  platform: string;
  /** 1, 5 and 15 minute load averages at the start: a loaded machine explains slow numbers. */
  loadAverage: number[];
}

function host(): Host {
  return {
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    cores: availableParallelism(),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    loadAverage: loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

function hostLine(h: Host): string {
  return `host: ${h.cpu}, ${h.cores} cores, Node ${h.node}, ${h.platform}, load average ${h.loadAverage.join(' ')} at start`;
}

function median(values: number[]): number | null {
  if (values.length === 0) return null;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

async function chooseBackends(
  opts: Options,
): Promise<{ backends: BackendName[]; skipped: ThroughputReport['skipped'] }> {
  if (opts.backends) return { backends: opts.backends, skipped: [] };
  note('probing backends ...');
  const { backends: reports } = await runChild<ProbeResult>({
    kind: 'probe',
    threads: Math.max(...opts.threads),
  });
  const backends: BackendName[] = [];
  const skipped: ThroughputReport['skipped'] = [];
  for (const r of reports) {
    if (!r.works) skipped.push({ backend: r.name, reason: r.reason ?? 'does not work' });
    else if (r.name === 'cpu' && !opts.all)
      skipped.push({ backend: r.name, reason: 'very slow; --all includes it' });
    else backends.push(r.name);
  }
  return { backends, skipped };
}

async function throughputMode(opts: Options): Promise<ThroughputReport> {
  const { backends, skipped } = await chooseBackends(opts);
  const gpuRows = backends.some((b) => GPU_BACKENDS.includes(b));
  if (opts.reference && backends.some((b) => !GPU_BACKENDS.includes(b))) assertReference();
  if (opts.reference && gpuRows) assertReference(true);
  const rows: Row[] = [];
  for (const model of opts.models) {
    for (const threads of opts.threads) {
      for (const backend of backends) {
        const slow = backend === 'cpu';
        // Plain JS needs minutes per vgg batch: only when asked for by name.
        if (slow && model === 'vgg' && !opts.modelsGiven) {
          skipped.push({ backend, model, reason: 'vgg on cpu takes minutes; --models vgg runs it' });
          continue;
        }
        const batch = BATCH[model];
        rows.push({
          backend,
          package: null,
          threads,
          backendThreads: null,
          model,
          batch,
          // A couple of steps on cpu, after one warm-up step.
          images: slow ? 2 * batch : (opts.images ?? DEFAULT_IMAGES[model]),
          warmupSteps: slow ? Math.min(1, opts.warmup) : opts.warmup,
          imagesPerSecond: null,
          peakRssMB: null,
          runs: [],
          errors: [],
          pytorch: null,
          ratio: null,
        });
      }
    }
  }
  // One PyTorch series per (model, threads), shared by that network's rows; GPU rows share one per model.
  const pytorch = new Map<string, NonNullable<Row['pytorch']>>();
  const key = (model: string, threads: number | 'gpu'): string => `${model}/${threads}`;
  let gpuReference: Promise<Record<string, unknown>[]> | undefined;

  const total = opts.repeat * (rows.length + (opts.reference ? opts.models.length * opts.threads.length : 0));
  let done = 0;
  // Repeats outermost and the reference right after our rows for the same network: drift on a shared
  // machine then hits both sides alike.
  for (let r = 0; r < opts.repeat; r++) {
    for (const model of opts.models) {
      for (const threads of opts.threads) {
        for (const row of rows.filter((x) => x.model === model && x.threads === threads)) {
          const what = `${row.backend} ${model}@${row.batch}, ${threads} thread${threads > 1 ? 's' : ''}`;
          try {
            const res = await runChild<ThroughputResult>({
              kind: 'throughput',
              backend: row.backend,
              threads,
              model,
              batch: row.batch,
              images: row.images,
              warmupSteps: row.warmupSteps,
            });
            row.package = res.package;
            row.backendThreads = res.threads;
            if (res.topKernels) row.topKernels = res.topKernels;
            row.images = res.images;
            row.runs.push({
              imagesPerSecond: res.imagesPerSecond,
              seconds: res.seconds,
              cpuSeconds: res.cpuSeconds,
              images: res.images,
              peakRssMB: res.peakRssMB,
            });
            note(
              `[${++done}/${total}] ${what}: ${res.imagesPerSecond.toFixed(1)} img/s, ${res.peakRssMB.toFixed(0)} MB`,
            );
          } catch (error) {
            row.errors.push((error as Error).message);
            note(`[${++done}/${total}] ${what}: ${(error as Error).message}`);
          }
        }
        if (!opts.reference || !MODELS.includes(model)) continue;
        if (
          rows.some((x) => x.model === model && x.threads === threads && !GPU_BACKENDS.includes(x.backend))
        ) {
          const series = pytorch.get(key(model, threads)) ?? { imagesPerSecond: null, runs: [], errors: [] };
          pytorch.set(key(model, threads), series);
          const what = `PyTorch ${model}@${BATCH[model]}, ${threads} thread${threads > 1 ? 's' : ''}`;
          try {
            const [out] = await runReference([
              'throughput',
              '--model',
              model,
              '--batch-size',
              String(BATCH[model]),
              '--threads',
              String(threads),
              '--images',
              String(opts.images ?? DEFAULT_IMAGES[model]),
            ]);
            const run: PyTorchRun = {
              imagesPerSecond: numberField(out!, 'images_per_s'),
              seconds: numberField(out!, 'seconds'),
              images: numberField(out!, 'images'),
              threads: numberField(out!, 'threads'),
            };
            series.runs.push(run);
            note(`[${++done}/${total}] ${what}: ${run.imagesPerSecond.toFixed(1)} img/s`);
          } catch (error) {
            series.errors.push((error as Error).message);
            note(`[${++done}/${total}] ${what}: ${(error as Error).message}`);
          }
        }
        if (rows.some((x) => x.model === model && GPU_BACKENDS.includes(x.backend))) {
          // The CUDA reference measures both networks (fp32 and bf16) in one run; ours is fp32.
          const series = pytorch.get(key(model, 'gpu')) ?? { imagesPerSecond: null, runs: [], errors: [] };
          pytorch.set(key(model, 'gpu'), series);
          try {
            gpuReference ??= runReference(['throughput'], true);
            const line = (await gpuReference).find((o) => o.model === model && o.amp_bf16 === false);
            if (!line) throw new Error(`the CUDA reference measured no fp32 ${model}`);
            const imagesPerSecond = numberField(line, 'images_per_s');
            series.runs.push({ imagesPerSecond, seconds: NaN, images: NaN, threads: 0 });
            note(
              `[${++done}/${total}] PyTorch CUDA ${model}@${BATCH[model]} fp32: ${imagesPerSecond.toFixed(1)} img/s`,
            );
          } catch (error) {
            series.errors.push((error as Error).message);
            note(`[${++done}/${total}] PyTorch CUDA ${model}: ${(error as Error).message}`);
          }
        }
      }
    }
    gpuReference = undefined;
  }

  for (const row of rows) {
    row.imagesPerSecond = median(row.runs.map((x) => x.imagesPerSecond));
    row.peakRssMB = median(row.runs.map((x) => x.peakRssMB));
    const series = pytorch.get(key(row.model, GPU_BACKENDS.includes(row.backend) ? 'gpu' : row.threads));
    if (series) {
      series.imagesPerSecond = median(series.runs.map((x) => x.imagesPerSecond));
      row.pytorch = series;
      if (row.imagesPerSecond !== null && series.imagesPerSecond) {
        row.ratio = row.imagesPerSecond / series.imagesPerSecond;
      }
    }
  }
  const notes = [
    `img/s: training images per second (forward + backward + SGD step of the default recipe, random data), ` +
      `timed after ${opts.warmup} warm-up steps${opts.repeat > 1 ? `; medians of ${opts.repeat} runs` : ''}.`,
    "peak RSS: the measuring process's maxRSS (each configuration runs in a fresh process).",
  ];
  if (rows.some((r) => r.backend === 'cpu')) notes.push('cpu: 1 warm-up step, then 2 timed steps.');
  if (opts.reference) {
    notes.push(
      'PyTorch: ../shared/bench/pytorch_reference.py throughput (plain momentum SGD, no label smoothing), ' +
        'same network, batch and threads, at least 10 timed batches; ratio = ours / PyTorch.',
    );
  }
  return {
    mode: 'throughput',
    date: new Date().toISOString(),
    host: host(),
    repeat: opts.repeat,
    notes,
    skipped,
    results: rows,
  };
}

// ---------------------------------------------------------------- time to accuracy

interface TimeToAccuracyReport {
  mode: 'time-to-accuracy';
  date: string;
  host: Host;
  target: number;
  epochs: number;
  data: string;
  notes: string[];
  ours: {
    result: TimeToAccuracyResult | null;
    error: string | null;
    /** Training seconds (sum of epoch times) up to the first epoch whose validation accuracy reached the target. */
    secondsToTarget: number | null;
    epochToTarget: number | null;
    trainSeconds: number | null;
  };
  pytorch: {
    trainImages: number;
    evalImages: number;
    trainSeconds: number;
    accuracy: number;
    threads: number;
  } | null;
  pytorchError: string | null;
}

/** Time to accuracy on a GPU backend, named with --backends (auto's pick is not known here). */
function onGpu(opts: Options): boolean {
  return opts.backends !== undefined && GPU_BACKENDS.includes(opts.backends[0]!);
}

async function timeToAccuracyMode(opts: Options): Promise<TimeToAccuracyReport> {
  const data = opts.data;
  if (!data) {
    throw new UsageError(
      '--time-to-accuracy needs --data DIR: the cifar10-train folder of ../shared/data/cifar10-train-jpg.tar.gz, unpacked',
    );
  }
  if (!existsSync(data)) throw new UsageError(`--data ${data}: no such folder`);
  if (opts.backends && opts.backends.length > 1)
    throw new UsageError('--time-to-accuracy takes one --backends');
  if (opts.reference) assertReference(onGpu(opts));
  const threads = opts.threads[0]!;

  const report: TimeToAccuracyReport = {
    mode: 'time-to-accuracy',
    date: new Date().toISOString(),
    host: host(),
    target: opts.target,
    epochs: opts.epochs,
    data,
    notes: [
      'Splits differ: ours holds out 10% of the images as the test split and 10% of the rest for validation ' +
        '(the target is checked on validation; the final accuracy is on test). The PyTorch reference holds out ' +
        'the last 5,000 images of a seeded shuffle and reports its accuracy on them.',
      'Times are training time only (sum of epoch times: no data loading, no evaluation passes), as the ' +
        "reference's train_seconds. The reference reports no per-epoch accuracy, so only its final one.",
      `ours uses all cores through train() (${availableParallelism()} here); PyTorch gets --threads ${threads}.`,
    ],
    ours: { result: null, error: null, secondsToTarget: null, epochToTarget: null, trainSeconds: null },
    pytorch: null,
    pytorchError: null,
  };

  note(`training the default recipe on ${data} for ${opts.epochs} epochs ...`);
  try {
    const result = await runChild<TimeToAccuracyResult>({
      kind: 'time-to-accuracy',
      backend: opts.backends?.[0] ?? 'auto',
      data,
      epochs: opts.epochs,
      cacheFolder: opts.cache,
    });
    report.ours.result = result;
    let elapsed = 0;
    for (const h of result.history) {
      elapsed += h.seconds;
      if (report.ours.secondsToTarget === null && h.validationAccuracy >= opts.target) {
        report.ours.secondsToTarget = elapsed;
        report.ours.epochToTarget = h.epoch;
      }
    }
    report.ours.trainSeconds = elapsed;
  } catch (error) {
    report.ours.error = (error as Error).message;
    note(report.ours.error);
  }

  if (opts.reference) {
    const gpu = onGpu(opts);
    note(`PyTorch reference${gpu ? ' (CUDA)' : ''}: fast recipe, ${opts.epochs} epochs ...`);
    try {
      if (gpu) {
        // The CUDA reference holds out the last 5,000 of a seeded shuffle and trains on the rest.
        const [out] = await runReference(['recipe', data, String(opts.epochs)], true);
        report.pytorch = {
          trainImages: (report.ours.result?.trainImages ?? 0) + (report.ours.result?.validationImages ?? 0),
          evalImages: 5000,
          trainSeconds: numberField(out!, 'train_seconds'),
          accuracy: numberField(out!, 'accuracy') / 100,
          threads: 0,
        };
      } else {
        const [out] = await runReference([
          'recipe',
          '--data',
          data,
          '--recipe',
          'fast',
          '--epochs',
          String(opts.epochs),
          '--threads',
          String(threads),
        ]);
        report.pytorch = {
          trainImages: numberField(out!, 'train_images'),
          evalImages: numberField(out!, 'eval_images'),
          trainSeconds: numberField(out!, 'train_seconds'),
          accuracy: numberField(out!, 'accuracy') / 100,
          threads,
        };
      }
    } catch (error) {
      report.pytorchError = (error as Error).message;
      note(report.pytorchError);
    }
  }
  return report;
}

// ---------------------------------------------------------------- output

function table(header: string[], rows: string[][], rightAligned: boolean[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (rightAligned[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

const fixed = (v: number | null, digits: number): string => (v === null ? 'n/a' : v.toFixed(digits));
const percent = (v: number): string => `${(v * 100).toFixed(2)}%`;

function throughputText(report: ThroughputReport): string {
  const header = ['backend', 'threads', 'model', 'batch', 'img/s', 'peak RSS MB', 'PyTorch img/s', 'ratio'];
  const rows = report.results.map((r) => [
    r.backend,
    r.backendThreads !== null && r.backendThreads !== r.threads
      ? `${r.threads} (${r.backendThreads})`
      : String(r.threads),
    r.model,
    String(r.batch),
    r.errors.length > 0 && r.imagesPerSecond === null ? 'failed' : fixed(r.imagesPerSecond, 1),
    fixed(r.peakRssMB, 0),
    r.pytorch ? fixed(r.pytorch.imagesPerSecond, 1) : '-',
    // Two significant digits for tiny ratios (the cpu backend), so they do not print as 0.00.
    r.pytorch ? (r.ratio !== null && r.ratio < 0.1 ? r.ratio.toPrecision(2) : fixed(r.ratio, 2)) : '-',
  ]);
  const lines = [table(header, rows, [false, true, false, true, true, true, true, true]), ''];
  lines.push(...report.notes);
  for (const r of report.results) {
    if (!r.topKernels) continue;
    lines.push(`${r.backend} ${r.model}@${r.batch}, GPU time of one step by kernel (tf.profile):`);
    for (const k of r.topKernels)
      lines.push(`  ${k.name.padEnd(34)} ${k.ms.toFixed(3).padStart(9)} ms  x${k.calls}`);
  }
  for (const s of report.skipped)
    lines.push(`not measured: ${s.backend}${s.model ? ` ${s.model}` : ''} (${s.reason})`);
  for (const r of report.results)
    for (const e of r.errors) lines.push(`error: ${r.backend} ${r.model}: ${e}`);
  const pytorchErrors = new Set(report.results.flatMap((r) => r.pytorch?.errors ?? []));
  for (const e of pytorchErrors) lines.push(`error: ${e}`);
  lines.push(hostLine(report.host));
  return lines.join('\n');
}

function timeToAccuracyText(report: TimeToAccuracyReport): string {
  const { ours, pytorch } = report;
  const r = ours.result;
  // 0.7 -> '70%': the target as the user gave it, not padded to two decimals.
  const target = `${+(report.target * 100).toFixed(2)}%`;
  const oursName = r ? `ours (${r.backend}, ${r.threads} thread${r.threads > 1 ? 's' : ''})` : 'ours';
  const header = ['', oursName];
  if (report.pytorch || report.pytorchError)
    header.push(pytorch?.threads === 0 ? 'PyTorch (CUDA)' : `PyTorch (${pytorch?.threads ?? '?'} threads)`);
  const reached =
    ours.secondsToTarget !== null
      ? `${ours.secondsToTarget.toFixed(1)} s (epoch ${ours.epochToTarget})`
      : r
        ? 'not reached'
        : 'failed';
  const rows: string[][] = [
    ['epochs', String(report.epochs), String(report.epochs)],
    ['train images', r ? String(r.trainImages) : 'n/a', pytorch ? String(pytorch.trainImages) : 'n/a'],
    [
      'held out',
      r ? `${r.validationImages} validation, ${r.testImages} test` : 'n/a',
      pytorch ? `${pytorch.evalImages} eval` : 'n/a',
    ],
    [
      `time to ${target} validation`,
      reached,
      pytorch
        ? pytorch.accuracy >= report.target
          ? `<= ${pytorch.trainSeconds.toFixed(1)} s (final epoch)`
          : 'not reached'
        : 'n/a',
    ],
    ['train seconds', fixed(ours.trainSeconds, 1), pytorch ? pytorch.trainSeconds.toFixed(1) : 'n/a'],
    [
      'final accuracy',
      r ? `${percent(r.testAccuracy)} (test)` : 'n/a',
      pytorch ? `${percent(pytorch.accuracy)} (eval)` : 'n/a',
    ],
    ['peak RSS MB', r ? r.peakRssMB.toFixed(0) : 'n/a', 'n/a'],
  ].map((row) => row.slice(0, header.length));
  const lines = [
    table(
      header,
      rows,
      header.map(() => false),
    ),
    '',
  ];
  if (r) {
    let elapsed = 0;
    for (const h of r.history) {
      elapsed += h.seconds;
      lines.push(
        `ours epoch ${h.epoch}: ${h.seconds.toFixed(1)} s (cumulative ${elapsed.toFixed(1)} s), ` +
          `validation ${percent(h.validationAccuracy)}, train loss ${h.trainLoss.toFixed(4)}`,
      );
    }
    lines.push(
      `ours wall time of train(): ${r.wallSeconds.toFixed(1)} s (with data loading and evaluation)`,
      '',
    );
  }
  lines.push(...report.notes);
  if (ours.error) lines.push(`error: ${ours.error}`);
  if (report.pytorchError) lines.push(`error: ${report.pytorchError}`);
  lines.push(hostLine(report.host));
  return lines.join('\n');
}

function failed(report: ThroughputReport | TimeToAccuracyReport): boolean {
  if (report.mode === 'throughput') {
    return report.results.some((r) => r.errors.length > 0 || (r.pytorch?.errors.length ?? 0) > 0);
  }
  return report.ours.error !== null || report.pytorchError !== null;
}

async function main(): Promise<number> {
  if (process.argv.includes('--serve')) {
    const { benchServe } = await import('./bench-serve.js');
    return benchServe(process.argv.slice(2).filter((a) => a !== '--serve'));
  }
  const opts = parseOptions(process.argv.slice(2));
  if (opts === 'help') {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  const report = opts.mode === 'throughput' ? await throughputMode(opts) : await timeToAccuracyMode(opts);
  const text = report.mode === 'throughput' ? throughputText(report) : timeToAccuracyText(report);
  const json = JSON.stringify(report, null, 2);
  if (opts.json) {
    process.stderr.write('\n' + text + '\n');
    process.stdout.write(json + '\n');
  } else {
    process.stdout.write('\n' + text + '\n');
  }
  if (opts.out) {
    writeFileSync(opts.out, json + '\n');
    note(`JSON written to ${opts.out}`);
  }
  return failed(report) ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof UsageError) {
      process.stderr.write(`bench: ${error.message}\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(
        `bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
      );
      process.exitCode = 1;
    }
  },
);
