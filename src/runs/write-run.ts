// Writing a finished run's files into its (temporary) folder: the model, metrics.json, the charts,
// and last run.json, which records the sha256 of every other file.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type * as tf from '@tensorflow/tfjs';
import { flagName, type RunConfig } from '../config.js';
import type { BackendInfo } from '../backends/select.js';
import type { Normalization } from '../data/batches.js';
import type { Dataset } from '../data/dataset.js';
import { inputShapeOf } from '../models/index.js';
import { saveModel, setWeightValues } from '../models/io.js';
import { renderAccuracyChart, renderConfusionChart, renderCurves } from '../reports/charts.js';
import { HASHED_RUN_FILES, LAST_MODEL_FILES, RUN_FILES } from './layout.js';
import {
  gitState,
  manifestText,
  rerunCommand,
  sha256File,
  systemInfo,
  versions,
  type Manifest,
} from './manifest.js';
import type { Metrics } from './metrics.js';
import type { RunFolder } from './run-folder.js';

/** The key of our metadata in model.json's `userDefinedMetadata`. */
export const MODEL_METADATA_KEY = 'imageClassifier';

/**
 * In model.json: the classes (in the order of the model's outputs) and how to turn an image into the
 * model's input: RGB, resized to inputShape, x * scale, then (x - mean) / std per channel; the output
 * is logits (softmax gives probabilities).
 */
export type ModelMetadata = Manifest['preprocessing'] & { run: string; classNames: string[] };

export interface RunFacts {
  backend: BackendInfo;
  dataset: Dataset;
  counts: { train: number; validation: number };
  normalization: Normalization;
  pretrained: Manifest['pretrained'];
  metrics: Metrics;
  startedAt: Date;
  trainSeconds: number;
  resumes: Manifest['resumes'];
  reproductionOf: string | null;
  epochs: NonNullable<Manifest['results']['epochs']>;
  /** With --save-best when the best epoch is not the last: the last epoch's weights, for model-last/. */
  lastWeights?: Float32Array[];
  /** Finishes the tracked run with the charts written; what it returns goes into run.json. */
  finishTracking: (charts: string[]) => Promise<Manifest['tracking']>;
  log: (line: string) => void;
}

export async function writeRun(
  folder: RunFolder,
  model: tf.LayersModel,
  config: RunConfig,
  facts: RunFacts,
): Promise<Manifest> {
  const dir = folder.tmpPath;
  const { metrics, dataset } = facts;
  const title = `${config.experimentName} / ${config.runName}`;
  const preprocessing: Manifest['preprocessing'] = {
    inputShape: inputShapeOf(config),
    scale: 1 / 255,
    ...facts.normalization,
    output: 'logits',
  };
  // What a program needs to classify with model.json alone (tf.loadLayersModel, no run.json beside it).
  const metadata: ModelMetadata = {
    run: `${config.experimentName}/${config.runName}`,
    classNames: dataset.classNames,
    ...preprocessing,
  };
  await saveModel(model, join(dir, RUN_FILES.modelFolder), { [MODEL_METADATA_KEY]: metadata });
  if (facts.lastWeights) {
    // The model's weights become the last epoch's from here: saved, nothing else reads them after.
    setWeightValues(model, facts.lastWeights);
    await saveModel(model, join(dir, RUN_FILES.lastModelFolder), { [MODEL_METADATA_KEY]: metadata });
  }
  await writeFile(join(dir, RUN_FILES.metrics), JSON.stringify(metrics, null, 2));
  await writeFile(
    join(dir, RUN_FILES.metricsChart),
    renderAccuracyChart(
      `${title}: test accuracy (%)`,
      dataset.classNames,
      metrics.test.perClassAccuracy,
      metrics.test.accuracy,
    ),
  );
  await writeFile(
    join(dir, RUN_FILES.curves),
    renderCurves(`${title}: loss and accuracy per epoch`, metrics.history),
  );

  await writeFile(
    join(dir, RUN_FILES.confusion),
    renderConfusionChart(
      `${title}: confusion matrix of the test split`,
      dataset.classNames,
      metrics.test.confusion,
    ),
  );

  const files: Record<string, string> = {};
  const hashed = facts.lastWeights ? [...HASHED_RUN_FILES, ...LAST_MODEL_FILES] : HASHED_RUN_FILES;
  for (const name of hashed) {
    files[name] = await sha256File(join(dir, name));
  }
  // Before run.json, so that it records where the run was tracked.
  const charts = [RUN_FILES.metricsChart, RUN_FILES.curves, RUN_FILES.confusion].map((f) => join(dir, f));
  const tracking = await facts.finishTracking(charts);
  const end = new Date();
  const last = metrics.history[metrics.history.length - 1]!;
  const trainedImages = metrics.history.length * facts.counts.train;
  const manifest: Manifest = {
    schemaVersion: 1,
    experiment: config.experimentName,
    run: config.runName,
    status: 'completed',
    command: rerunCommand(config, flagName),
    config,
    seed: config.seed,
    git: await gitState(process.cwd()),
    versions: versions(),
    backend: facts.backend,
    system: systemInfo(),
    dataset: {
      kind: dataset.kind,
      source: dataset.source,
      classNames: dataset.classNames,
      trainImages: facts.counts.train,
      validationImages: facts.counts.validation,
      testImages: dataset.test.count,
      checksums: dataset.checksums,
    },
    preprocessing,
    pretrained: facts.pretrained,
    resumes: facts.resumes,
    reproductionOf: facts.reproductionOf,
    results: {
      // null without test images (the evaluation's NaN): the same in memory as in run.json.
      testAccuracy: Number.isFinite(metrics.test.accuracy) ? metrics.test.accuracy : null,
      testLoss: Number.isFinite(metrics.test.loss) ? metrics.test.loss : null,
      validationAccuracy: last.validationAccuracy,
      validationLoss: last.validationLoss,
      epochs: facts.epochs,
    },
    timing: {
      start: facts.startedAt.toISOString(),
      end: end.toISOString(),
      durationSeconds: (end.getTime() - facts.startedAt.getTime()) / 1000,
      trainSeconds: facts.trainSeconds,
      imagesPerSecond: facts.trainSeconds > 0 ? trainedImages / facts.trainSeconds : 0,
    },
    files,
    tracking,
  };
  await writeFile(join(dir, RUN_FILES.manifest), manifestText(manifest));
  facts.log(
    `wrote ${RUN_FILES.modelFolder}/, ${[...HASHED_RUN_FILES.slice(2), RUN_FILES.manifest, RUN_FILES.log].join(', ')}`,
  );
  return manifest;
}
