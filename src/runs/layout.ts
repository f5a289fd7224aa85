// Every path and file name of the experiments folder, said once:
//
//   <experiments>/<experiment>/
//     <run>/                         a finished run (renamed into place only when complete)
//       run.json                     the manifest: configuration, environment, sha256 of every file
//       metrics.json  metrics.png  curves.png  confusion.png  train.log
//       model/model.json  model/weights.bin   (model-last/ too, with --save-best)
//       evaluation-<name>.json/.png  written later by `evaluate`
//     .<run>.tmp-<pid>-<ms>/         a run being written (its checkpoint/ inside)
//     .<run>.partial/                an interrupted run waiting for --resume
//     <run>-duplicate-<n>/           a finished run whose name another process took first
//     comparison.png  sweep.json     written by `runs` and `sweep`
import { join, resolve } from 'node:path';
// The model folder's own files are tfjs's format, named where it is written.
import { MODEL_FILE, WEIGHTS_FILE } from '../models/io.js';

const MODEL_FOLDER = 'model';
const LAST_MODEL_FOLDER = 'model-last';

/** The files of a finished run, relative to its folder (the keys of run.json's `files`). */
export const RUN_FILES = {
  manifest: 'run.json',
  metrics: 'metrics.json',
  metricsChart: 'metrics.png',
  curves: 'curves.png',
  confusion: 'confusion.png',
  log: 'train.log',
  modelFolder: MODEL_FOLDER,
  modelJson: `${MODEL_FOLDER}/${MODEL_FILE}`,
  weights: `${MODEL_FOLDER}/${WEIGHTS_FILE}`,
  /** With --save-best, when the best epoch is not the last: the last epoch's model. */
  lastModelFolder: LAST_MODEL_FOLDER,
} as const;

/** model-last/'s files, hashed in run.json when it exists. */
export const LAST_MODEL_FILES = [
  `${LAST_MODEL_FOLDER}/${MODEL_FILE}`,
  `${LAST_MODEL_FOLDER}/${WEIGHTS_FILE}`,
] as const;

/** The files a run's manifest records the sha256 of, in order. */
export const HASHED_RUN_FILES = [
  RUN_FILES.modelJson,
  RUN_FILES.weights,
  RUN_FILES.metrics,
  RUN_FILES.metricsChart,
  RUN_FILES.curves,
  RUN_FILES.confusion,
] as const;

/** In a run's temporary folder while it trains; removed when it completes. */
export const CHECKPOINT_FOLDER = 'checkpoint';

/** In the experiment's folder. */
export const COMPARISON_FILE = 'comparison.png';
export const SWEEP_SUMMARY_FILE = 'sweep.json';

/** The folder of run `run`. */
export function runPath(experimentsFolder: string, experiment: string, run: string): string {
  return resolve(experimentsFolder, experiment, run);
}

export function experimentPath(experimentsFolder: string, experiment: string): string {
  return resolve(experimentsFolder, experiment);
}

/** Where an interrupted run waits to be resumed. */
export function partialName(run: string): string {
  return `.${run}.partial`;
}

/** The run an experiment's entry `.<run>.partial` waits for; null for any other name. */
export function partialRunName(entry: string): string | null {
  return /^\.(.+)\.partial$/.exec(entry)?.[1] ?? null;
}

export function partialPath(experimentsFolder: string, experiment: string, run: string): string {
  return join(experimentPath(experimentsFolder, experiment), partialName(run));
}

/** The prefix of a run's temporary folders, `.<run>.tmp-<pid>-<ms>`. */
export function temporaryPrefix(run: string): string {
  return `.${run}.tmp-`;
}

export function temporaryName(run: string, pid: number, ms: number): string {
  return `${temporaryPrefix(run)}${pid}-${ms}`;
}

export function duplicateName(run: string, n: number): string {
  return `${run}-duplicate-${n}`;
}

/** What `evaluate --name <name>` writes into the run folder. */
export function evaluationFiles(runFolder: string, name: string): { json: string; chart: string } {
  return {
    json: join(runFolder, `evaluation-${name}.json`),
    chart: join(runFolder, `evaluation-${name}.png`),
  };
}
