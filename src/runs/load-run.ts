// Reading finished runs back: the manifest, the metrics and the model. Nothing in a run folder is
// trusted: run.json and metrics.json are size-bounded and checked before use, and the model's files
// must match the sha256 hashes run.json recorded.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type * as tf from '@tensorflow/tfjs';

import { selectBackend } from '../backends/select.js';
import { createClassifier, type ClassifierModel, type ModelBackendOptions } from './classifier.js';
import { loadModelFile } from '../models/io.js';
import type { Metrics } from './metrics.js';
import { readBoundedFile } from '../util/bounded-read.js';
import { parseManifest, type Manifest } from './manifest.js';
import { InputError, ManifestError, fileProblem } from '../errors.js';
import { RUN_FILES } from './layout.js';
import { DEFAULT_EXPERIMENTS_FOLDER } from '../config.js';

/** run.json and metrics.json are kilobytes; a file far larger is not one we wrote. */
const MAX_JSON_BYTES = 16 * 2 ** 20;

export interface LoadedRun {
  /** Absolute path of the run folder. */
  path: string;
  manifest: Manifest;
  metrics: Metrics;
  /**
   * Loads the trained model as a classifier on the selected backend (auto by default): the same
   * thing `loadModel()` returns, ready for `predict`. Its files must match run.json's hashes. The
   * caller disposes it.
   */
  loadModel(options?: ModelBackendOptions): Promise<ClassifierModel>;
  /** The bare tfjs model (it outputs logits), on the current backend; the caller disposes it. */
  loadLayersModel(): Promise<tf.LayersModel>;
}

/** The folder of `run`: `<experiment>/<run>` relative to `experimentsFolder`, or a path to a run folder. */
export function findRunFolder(run: string, experimentsFolder = DEFAULT_EXPERIMENTS_FOLDER): string {
  const candidates = [resolve(experimentsFolder, run), resolve(run)];
  const path = candidates.find((p) => existsSync(join(p, RUN_FILES.manifest)));
  if (!path) throw new InputError(`no run at ${candidates[0]} (a run folder has a ${RUN_FILES.manifest})`);
  return path;
}

/** A JSON file of the run folder, parsed; bounded in size. */
async function readJson(file: string): Promise<unknown> {
  let text: string;
  try {
    text = (await readBoundedFile(file, MAX_JSON_BYTES)).toString('utf8');
  } catch (error) {
    throw new InputError(`${file}: cannot be read (${fileProblem(error)})`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new InputError(`${file}: not valid JSON (${(error as Error).message.split('\n')[0]})`);
  }
}

/** A run's manifest (run.json), checked: a file that is not a manifest is refused with an InputError. */
export async function readManifest(path: string): Promise<Manifest> {
  const file = join(path, RUN_FILES.manifest);
  const data = await readJson(file);
  try {
    return parseManifest(data, file);
  } catch (error) {
    if (error instanceof ManifestError) throw new InputError(error.message);
    throw error;
  }
}

/** metrics.json: the history and the test evaluation, checked for the fields the commands read. */
async function readMetrics(path: string): Promise<Metrics> {
  const file = join(path, RUN_FILES.metrics);
  const data = (await readJson(file)) as Partial<Metrics> | null;
  const ok =
    data !== null &&
    typeof data === 'object' &&
    Array.isArray(data.history) &&
    data.history.every((h) => h !== null && typeof h === 'object' && typeof h.epoch === 'number') &&
    data.test !== null &&
    typeof data.test === 'object' &&
    (typeof data.test.accuracy === 'number' || data.test.accuracy === null);
  if (!ok) throw new InputError(`${file} is not a run's metrics (history and test results)`);
  const metrics = data as Metrics;
  // No test images: JSON wrote NaN as null; NaN again, as training had it (see Evaluation).
  metrics.test.accuracy ??= NaN;
  metrics.test.loss ??= NaN;
  return metrics;
}

/** The sha256 of the model's files from run.json, by path relative to the model folder. */
function modelHashes(manifest: Manifest): Record<string, string> {
  const prefix = 'model/';
  return Object.fromEntries(
    Object.entries(manifest.files)
      .filter(([file]) => file.startsWith(prefix))
      .map(([file, hash]) => [file.slice(prefix.length), hash]),
  );
}

/** `run` is `<experiment>/<run>` relative to `experimentsFolder`, or a path to a run folder. */
export async function loadRun(
  run: string,
  experimentsFolder = DEFAULT_EXPERIMENTS_FOLDER,
): Promise<LoadedRun> {
  const path = findRunFolder(run, experimentsFolder);
  const manifest = await readManifest(path);
  const metrics = await readMetrics(path);
  const loadLayersModel = () =>
    loadModelFile(join(path, RUN_FILES.modelJson), {
      sha256: modelHashes(manifest),
      recordedIn: join(path, RUN_FILES.manifest),
    });
  return {
    path,
    manifest,
    metrics,
    loadLayersModel,
    async loadModel(options: ModelBackendOptions = {}) {
      const started = performance.now();
      const backend = await selectBackend({
        device: options.device ?? 'auto',
        backend: options.backend ?? 'auto',
        threads: options.threads,
      });
      return createClassifier(await loadLayersModel(), manifest, path, backend, started);
    },
  };
}
