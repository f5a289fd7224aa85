// evaluate(): a finished run's model on a dataset (by default the run's own test split), optionally
// written into the run folder as evaluation-<name>.json and evaluation-<name>.png.
import { existsSync } from 'node:fs';
import { rename, unlink, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { type RunConfig } from '../config.js';
import { selectBackend, type BackendInfo } from '../backends/select.js';
import type { ImageSet } from '../data/dataset.js';
import { loadDataset } from '../data/load.js';
import { loadRun } from '../runs/load-run.js';
import { renderConfusionChart } from '../reports/charts.js';
import { silentProgress, type ProgressFactory } from '../reports/progress.js';
import { evaluateModel } from './evaluate.js';
import type { Evaluation } from '../runs/metrics.js';
import { ConfigError } from '../errors.js';
import { evaluationFiles, RUN_FILES } from '../runs/layout.js';
import type { EvaluateOptionsInput } from '../model-options.js';

/** evaluateOptionsSchema's options (where, on what, on which backend), and how to report and save. */
export interface EvaluateOptions extends EvaluateOptionsInput {
  progress?: ProgressFactory;
  log?: (line: string) => void;
  /**
   * Write evaluation-<name>.json and evaluation-<name>.png into the run folder (the files run.json
   * lists are never touched, so `verify` still passes).
   */
  save?: boolean;
}

export interface EvaluateResult extends Evaluation {
  classNames: string[];
  backend: BackendInfo;
  /**
   * What was evaluated: its kind, where it came from, its checksums, and which images: the test split,
   * or all of them (an image folder other than the run's, without train/ and test/ folders).
   */
  dataset: { kind: string; source: string; split: 'test' | 'all'; checksums: Record<string, string> };
  /** The evaluation's name (in the saved files' names). */
  name: string;
  /** The files written (absolute paths), when `save` was set. */
  files?: { json: string; chart: string };
}

/** What evaluation-<name>.json holds. */
export interface EvaluationFile extends Evaluation {
  schemaVersion: 1;
  run: string;
  name: string;
  date: string;
  /** sha256 of the weights evaluated, as run.json records them. */
  weightsSha256: string | null;
  dataset: EvaluateResult['dataset'];
  classNames: string[];
  backend: BackendInfo;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** A folder or dataset name made fit for a file name: other characters become '-'. */
function safeName(raw: string): string {
  const cleaned = raw.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[^A-Za-z0-9]+/, '');
  return cleaned.slice(0, 100) || 'dataset';
}

/** `test` when the data is the run's own; else the folder's basename, or the dataset's name. */
export function defaultEvaluationName(config: RunConfig, options: EvaluateOptions): string {
  const dataset = options.dataset ?? config.dataset;
  const folder = options.datasetFolder;
  const sameFolder =
    folder === undefined ||
    (config.datasetFolder !== undefined && resolve(folder) === resolve(config.datasetFolder));
  if (dataset === config.dataset && sameFolder) return 'test';
  return safeName(folder !== undefined ? basename(resolve(folder)) : dataset);
}

function concatSets(a: ImageSet, b: ImageSet): ImageSet {
  const images = new Uint8Array(a.images.length + b.images.length);
  images.set(a.images);
  images.set(b.images, a.images.length);
  const labels = new Uint8Array(a.count + b.count);
  labels.set(a.labels);
  labels.set(b.labels, a.count);
  return { ...a, images, labels, count: a.count + b.count };
}

/** Writes to a temporary name and renames, so a crash never leaves half a file under the real name. */
async function writeAtomically(path: string, data: string | Buffer): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    await writeFile(tmp, data);
    await rename(tmp, path);
  } catch (error) {
    await unlink(tmp).catch(() => undefined);
    throw error;
  }
}

export async function evaluate(run: string, options: EvaluateOptions = {}): Promise<EvaluateResult> {
  const loaded = await loadRun(run, options.experimentsFolder);
  const { config, preprocessing } = loaded.manifest;
  const name = options.name ?? defaultEvaluationName(config, options);
  let files: EvaluateResult['files'];
  if (options.save) {
    if (!NAME.test(name) || name.includes('..')) {
      throw new ConfigError(`--name must be letters, digits, ".", "_" or "-" (got ${JSON.stringify(name)})`);
    }
    files = evaluationFiles(loaded.path, name);
    // Refused before any work: an evaluation is never replaced by accident.
    const existing = Object.values(files).filter((f) => existsSync(f));
    if (existing.length > 0 && !options.overwrite) {
      throw new ConfigError(
        `${existing.map((f) => basename(f)).join(' and ')} already in ${loaded.path}: choose another --name, or --overwrite`,
      );
    }
  }
  const backend = await selectBackend({
    device: options.device ?? 'auto',
    backend: options.backend ?? 'auto',
    threads: options.threads,
  });
  const kind = options.dataset ?? config.dataset;
  const dataset = await loadDataset({
    dataset: kind,
    // The run's folder only goes with the run's kind of dataset.
    datasetFolder: options.datasetFolder ?? (kind === config.dataset ? config.datasetFolder : undefined),
    cacheFolder: config.dataFolder,
    imageSize: { height: preprocessing.inputShape[0], width: preprocessing.inputShape[1] },
    seed: config.seed,
    numWorkers: config.numWorkers ?? availableParallelism(),
    testSplit: config.testSplit,
    downloadUrl: config.downloadUrl,
    download: true,
    progress: options.progress ?? silentProgress,
    log: options.log ?? (() => {}),
  });
  // Labels are class indices: another class list would make every number meaningless.
  const runClasses = loaded.manifest.dataset.classNames;
  if (JSON.stringify(dataset.classNames) !== JSON.stringify(runClasses)) {
    throw new ConfigError(
      `the dataset's classes (${dataset.classNames.join(', ')}) are not the run's (${runClasses.join(', ')})`,
    );
  }
  // A folder of new images (<class>/*, not the run's) is evaluated whole: holding a test split out
  // of it, as training does, would leave most of it unused.
  const whole =
    dataset.kind === 'image-folder' &&
    options.datasetFolder !== undefined &&
    resolve(options.datasetFolder) !== resolve(config.datasetFolder ?? '') &&
    !existsSync(join(options.datasetFolder, 'test'));
  const images = whole ? concatSets(dataset.train, dataset.test) : dataset.test;
  // No images, no result: an accuracy of 0% on nothing would read as one.
  if (images.count === 0) {
    throw new ConfigError(
      `${run}: the data has no test images (its classes have too few images for --test-split to hold one out): nothing to evaluate; give other data with --dataset-folder`,
    );
  }
  const model = await loaded.loadLayersModel();
  let evaluation: Evaluation;
  try {
    evaluation = await evaluateModel(model, images, preprocessing, dataset.classNames.length);
  } finally {
    model.dispose();
  }
  const result: EvaluateResult = {
    ...evaluation,
    classNames: dataset.classNames,
    backend,
    dataset: {
      kind: dataset.kind,
      source: dataset.source,
      split: whole ? 'all' : 'test',
      checksums: dataset.checksums,
    },
    name,
  };
  if (files) {
    const runId = `${loaded.manifest.experiment}/${loaded.manifest.run}`;
    const file: EvaluationFile = {
      schemaVersion: 1,
      run: runId,
      name,
      date: new Date().toISOString(),
      weightsSha256: loaded.manifest.files[RUN_FILES.weights] ?? null,
      dataset: result.dataset,
      classNames: result.classNames,
      backend,
      ...evaluation,
    };
    // The confusion matrix: what metrics.png (accuracy per class) does not show.
    const chart = renderConfusionChart(
      `${runId} on ${name}: ${evaluation.count} images, accuracy ${(evaluation.accuracy * 100).toFixed(1)}%`,
      result.classNames,
      evaluation.confusion,
    );
    await writeAtomically(files.chart, chart);
    await writeAtomically(files.json, JSON.stringify(file, null, 2) + '\n');
    result.files = files;
  }
  return result;
}
