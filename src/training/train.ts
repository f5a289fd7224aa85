// train(): one run from configuration to a complete run folder. Read it top to bottom:
// config -> backend -> data -> model -> epochs of SGD -> test evaluation -> files -> rename into place.
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, relative, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { ConfigError, flagName, parseRunConfig, type RunConfig, type RunConfigInput } from '../config.js';
import { selectBackend, type BackendInfo } from '../backends/select.js';
import { selectImages, type Dataset, type ImageSet } from '../data/dataset.js';
import { loadDataset } from '../data/load.js';
import { Random } from '../data/random.js';
import { buildModel, INPUT_SHAPE } from '../models/index.js';
import { loadModelFile, MODEL_FILE, saveModel } from '../models/io.js';
import { renderAccuracyChart, renderCurves } from '../reports/charts.js';
import { silentProgress, type ProgressFactory } from '../reports/progress.js';
import {
  gitState,
  MANIFEST_FILE,
  rerunCommand,
  sha256File,
  systemInfo,
  versions,
  type Manifest,
} from '../runs/manifest.js';
import { RunLog } from '../runs/run-log.js';
import {
  abandonRunFolder,
  assertRunIsNew,
  commitRunFolder,
  createRunFolder,
  type RunFolder,
} from '../runs/run-folder.js';
import { assembleBatch, channelStatistics, type Normalization } from './batches.js';
import { evaluateModel, type Evaluation } from './evaluate.js';
import { learningRateSchedule } from './schedule.js';
import { Sgd } from './sgd.js';

export const METRICS_FILE = 'metrics.json';
export const LOG_FILE = 'train.log';

export interface TrainHooks {
  /** Receives each log line (they also go to the run's train.log). */
  log?: (line: string) => void;
  /** Progress bars for long work (download, decode, epochs). */
  progress?: ProgressFactory;
  /** Aborting stops training after the current step; no run folder is left behind. */
  signal?: AbortSignal;
}

export interface EpochMetrics {
  epoch: number;
  trainLoss: number;
  trainAccuracy: number;
  validationLoss: number;
  validationAccuracy: number;
  learningRate: number;
  seconds: number;
  imagesPerSecond: number;
}

export interface Metrics {
  history: EpochMetrics[];
  test: Evaluation & { classNames: string[] };
}

export interface TrainResult {
  /** Absolute path of the finished run folder. */
  runPath: string;
  manifest: Manifest;
  metrics: Metrics;
}

export class TrainingInterrupted extends Error {
  override name = 'TrainingInterrupted';
}

export async function train(input: RunConfigInput, hooks: TrainHooks = {}): Promise<TrainResult> {
  const config = parseRunConfig(input);
  const progress = hooks.progress ?? silentProgress;
  const startedAt = new Date();
  const runLog = new RunLog(hooks.log);
  const log = runLog.line;

  // Everything that can be refused is refused before any work, and before a folder exists.
  assertRunIsNew(config.experimentsFolder, config.experimentName, config.runName);
  const pretrainedPath = config.pretrainedModel ? resolvePretrained(config) : undefined;

  const backend = await selectBackend(config);
  log(
    `backend: ${backend.name} (${backend.package}, ${backend.device}, ${backend.threads} thread${backend.threads > 1 ? 's' : ''})`,
  );

  const dataset = await loadDataset({
    dataset: config.dataset,
    datasetFolder: config.datasetFolder,
    cacheFolder: config.dataFolder,
    imageSize: { height: INPUT_SHAPE[0], width: INPUT_SHAPE[1] },
    seed: config.seed,
    numWorkers: config.numWorkers ?? availableParallelism(),
    testSplit: config.testSplit,
    downloadUrl: config.downloadUrl,
    download: true,
    progress,
    log,
  });
  const { train: trainSet, validation: validationSet } = splitValidation(
    dataset.train,
    config.validationSplit,
    config.seed,
  );
  const validation = validationSet ?? dataset.test;
  const numClasses = dataset.classNames.length;
  log(
    `data: ${dataset.kind} from ${dataset.source}: ${trainSet.count} train, ` +
      `${validationSet ? `${validationSet.count} validation` : 'validating on the test split'}, ${dataset.test.count} test, ${numClasses} classes`,
  );

  const normalization = channelStatistics(trainSet);
  const model = buildModel(config.model, { inputShape: INPUT_SHAPE, numClasses, seed: config.seed });
  let pretrained: Manifest['pretrained'] = null;
  if (pretrainedPath) {
    pretrained = await loadPretrainedWeights(model, pretrainedPath, config).catch((error: unknown) => {
      model.dispose();
      throw error;
    });
    log(`pretrained: weights from ${pretrained.path}`);
  }

  const folder = await createRunFolder(config.experimentsFolder, config.experimentName, config.runName);
  runLog.open(join(folder.tmpPath, LOG_FILE));
  try {
    const history = await trainEpochs(
      model,
      config,
      trainSet,
      validation,
      normalization,
      numClasses,
      hooks,
      progress,
      log,
    );
    const trainSeconds = history.reduce((s, h) => s + h.seconds, 0);
    const test = evaluateModel(model, dataset.test, normalization, numClasses);
    log(
      `test: accuracy ${(test.accuracy * 100).toFixed(2)}%, loss ${test.loss.toFixed(4)} on ${test.count} images`,
    );
    const metrics: Metrics = { history, test: { ...test, classNames: dataset.classNames } };
    const manifest = await writeRun(folder, model, config, {
      backend,
      dataset,
      counts: { train: trainSet.count, validation: validationSet?.count ?? 0 },
      normalization,
      pretrained,
      metrics,
      startedAt,
      trainSeconds,
      log,
    });
    await runLog.close();
    await commitRunFolder(folder);
    hooks.log?.(`run written to ${folder.finalPath}`);
    return { runPath: folder.finalPath, manifest, metrics };
  } catch (error) {
    await runLog.close();
    await abandonRunFolder(folder);
    throw error;
  } finally {
    model.dispose();
  }
}

async function trainEpochs(
  model: tf.LayersModel,
  config: RunConfig,
  trainSet: ImageSet,
  validation: ImageSet,
  normalization: Normalization,
  numClasses: number,
  hooks: TrainHooks,
  progress: ProgressFactory,
  log: (line: string) => void,
): Promise<EpochMetrics[]> {
  const { batchSize, epochs } = config;
  const random = new Random(config.seed);
  const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const optimizer = new Sgd(variables, config);
  const stepsPerEpoch = Math.ceil(trainSet.count / batchSize);
  const schedule = learningRateSchedule(config, stepsPerEpoch * epochs);
  const augmentation = { flip: config.randomFlip, crop: config.randomCrop };
  const imageSize = trainSet.height * trainSet.width * trainSet.channels;
  const x = new Float32Array(batchSize * imageSize);
  const y = new Int32Array(batchSize);
  const order = Int32Array.from({ length: trainSet.count }, (_, i) => i);
  const history: EpochMetrics[] = [];

  try {
    for (let epoch = 1; epoch <= epochs; epoch++) {
      random.shuffle(order);
      const bar = progress(`epoch ${epoch}/${epochs}`, trainSet.count, 'images');
      const started = performance.now();
      let lossSum = 0;
      let correct = 0;
      let seen = 0;
      let learningRate = 0;
      for (let step = 0; step < stepsPerEpoch; step++) {
        if (hooks.signal?.aborted) {
          bar.stop();
          throw new TrainingInterrupted(`interrupted in epoch ${epoch}`);
        }
        const n = Math.min(batchSize, trainSet.count - step * batchSize);
        assembleBatch(trainSet, order, step * batchSize, n, normalization, augmentation, random, x, y);
        learningRate = schedule((epoch - 1) * stepsPerEpoch + step);
        const [loss, hits] = trainStep(
          model,
          variables,
          optimizer,
          x,
          y,
          n,
          numClasses,
          config.labelSmoothing,
          learningRate,
        );
        lossSum += loss * n;
        correct += hits;
        seen += n;
        const elapsed = (performance.now() - started) / 1000;
        bar.update(seen, { loss: (lossSum / seen).toFixed(4), 'img/s': Math.round(seen / elapsed) });
        // Let signal handlers and the progress bar run between steps.
        if (step % 8 === 7) await new Promise((r) => setImmediate(r));
      }
      bar.stop();
      const seconds = (performance.now() - started) / 1000;
      const validationResult = evaluateModel(model, validation, normalization, numClasses);
      const metrics: EpochMetrics = {
        epoch,
        trainLoss: lossSum / seen,
        trainAccuracy: correct / seen,
        validationLoss: validationResult.loss,
        validationAccuracy: validationResult.accuracy,
        learningRate,
        seconds,
        imagesPerSecond: seen / seconds,
      };
      history.push(metrics);
      log(
        `epoch ${epoch}/${epochs}: train loss ${metrics.trainLoss.toFixed(4)} acc ${(metrics.trainAccuracy * 100).toFixed(2)}% | ` +
          `validation loss ${metrics.validationLoss.toFixed(4)} acc ${(metrics.validationAccuracy * 100).toFixed(2)}% | ` +
          `${seconds.toFixed(1)} s, ${Math.round(metrics.imagesPerSecond)} img/s`,
      );
    }
  } finally {
    optimizer.dispose();
  }
  return history;
}

/** One SGD step; returns the batch's mean loss and number of correct predictions. (Also used by the benchmark.) */
export function trainStep(
  model: tf.LayersModel,
  variables: tf.Variable[],
  optimizer: Sgd,
  x: Float32Array,
  y: Int32Array,
  n: number,
  numClasses: number,
  labelSmoothing: number,
  learningRate: number,
): [number, number] {
  return tf.tidy(() => {
    const [h, w, c] = model.inputs[0]!.shape.slice(1) as [number, number, number];
    const input = tf.tensor4d(x.subarray(0, n * h * w * c), [n, h, w, c]);
    const labels = tf.tensor1d(y.subarray(0, n), 'int32');
    const targets = tf.oneHot(labels, numClasses);
    let hits: tf.Tensor | undefined;
    const { value, grads } = tf.variableGrads(() => {
      const logits = model.apply(input, { training: true }) as tf.Tensor;
      // variableGrads disposes everything made in here but the loss: keep the hit count explicitly.
      hits = tf.keep(tf.sum(tf.cast(tf.equal(tf.argMax(logits, 1), labels), 'int32')));
      return tf.losses.softmaxCrossEntropy(targets, logits, undefined, labelSmoothing) as tf.Scalar;
    }, variables);
    optimizer.step(
      variables.map((v) => grads[v.name]!),
      learningRate,
    );
    const correct = hits!.dataSync()[0]!;
    hits!.dispose();
    return [value.dataSync()[0]!, correct];
  });
}

/** Holds out a seeded random `fraction` of the training images for validation. */
function splitValidation(
  set: ImageSet,
  fraction: number,
  seed: number,
): { train: ImageSet; validation?: ImageSet } {
  const count = Math.round(set.count * fraction);
  if (count === 0) return { train: set };
  if (count >= set.count) throw new ConfigError(`--validation-split ${fraction} leaves no training images`);
  // A generator of its own, so the split does not depend on what else draws random numbers.
  const order = new Random(seed ^ 0x5eed).shuffle(Int32Array.from({ length: set.count }, (_, i) => i));
  const validationIdx = order.subarray(0, count).sort();
  const trainIdx = order.subarray(count).sort();
  return { train: selectImages(set, trainIdx), validation: selectImages(set, validationIdx) };
}

/** `--pretrained-model <experiment>/<run>` (or a model folder, or a model.json), relative to the experiments folder. */
function resolvePretrained(config: RunConfig): string {
  const given = config.pretrainedModel!;
  const base = resolve(config.experimentsFolder, given);
  const candidates = [join(base, 'model', MODEL_FILE), join(base, MODEL_FILE), base];
  const found = candidates.find((p) => p.endsWith('.json') && existsSync(p));
  if (!found) {
    throw new ConfigError(
      `--pretrained-model ${given}: no model found at ${base} (expected <experiment>/<run> under ${config.experimentsFolder})`,
    );
  }
  return found;
}

async function loadPretrainedWeights(
  model: tf.LayersModel,
  modelJsonPath: string,
  config: RunConfig,
): Promise<NonNullable<Manifest['pretrained']>> {
  const given = config.pretrainedModel!;
  let source: tf.LayersModel;
  try {
    source = await loadModelFile(modelJsonPath);
  } catch (error) {
    throw new ConfigError(
      `--pretrained-model ${given}: cannot load ${modelJsonPath} (${(error as Error).message.split('\n')[0]})`,
    );
  }
  try {
    if (source.name !== model.name) {
      throw new ConfigError(
        `--pretrained-model ${given} is a '${source.name}' model, but --model is '${config.model}'`,
      );
    }
    const from = source.getWeights();
    const to = model.getWeights();
    const mismatch = from.length !== to.length || from.some((w, i) => w.shape.join() !== to[i]!.shape.join());
    if (mismatch) {
      throw new ConfigError(
        `--pretrained-model ${given} has other layer shapes than this '${config.model}' (different number of classes?)`,
      );
    }
    model.setWeights(from);
  } finally {
    source.dispose();
  }
  const weightsFile = join(modelJsonPath, '..', 'weights.bin');
  const runFolder = modelJsonPath.endsWith(join('model', MODEL_FILE))
    ? resolve(modelJsonPath, '..', '..')
    : null;
  return {
    path: given,
    run: runFolder ? relative(resolve(config.experimentsFolder), runFolder) : null,
    weightsSha256: existsSync(weightsFile) ? await sha256File(weightsFile) : '',
  };
}

interface RunFacts {
  backend: BackendInfo;
  dataset: Dataset;
  counts: { train: number; validation: number };
  normalization: Normalization;
  pretrained: Manifest['pretrained'];
  metrics: Metrics;
  startedAt: Date;
  trainSeconds: number;
  log: (line: string) => void;
}

async function writeRun(
  folder: RunFolder,
  model: tf.LayersModel,
  config: RunConfig,
  facts: RunFacts,
): Promise<Manifest> {
  const dir = folder.tmpPath;
  const { metrics, dataset } = facts;
  const title = `${config.experimentName} / ${config.runName}`;
  await saveModel(model, join(dir, 'model'));
  await writeFile(join(dir, METRICS_FILE), JSON.stringify(metrics, null, 2));
  await writeFile(
    join(dir, 'metrics.png'),
    renderAccuracyChart(
      `${title}: test accuracy (%)`,
      dataset.classNames,
      metrics.test.perClassAccuracy,
      metrics.test.accuracy,
    ),
  );
  await writeFile(
    join(dir, 'curves.png'),
    renderCurves(`${title}: loss and accuracy per epoch`, metrics.history),
  );

  const files: Record<string, string> = {};
  for (const name of ['model/model.json', 'model/weights.bin', METRICS_FILE, 'metrics.png', 'curves.png']) {
    files[name] = await sha256File(join(dir, name));
  }
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
    preprocessing: { inputShape: INPUT_SHAPE, scale: 1 / 255, ...facts.normalization, output: 'logits' },
    pretrained: facts.pretrained,
    results: {
      testAccuracy: metrics.test.accuracy,
      testLoss: metrics.test.loss,
      validationAccuracy: last.validationAccuracy,
      validationLoss: last.validationLoss,
    },
    timing: {
      start: facts.startedAt.toISOString(),
      end: end.toISOString(),
      durationSeconds: (end.getTime() - facts.startedAt.getTime()) / 1000,
      trainSeconds: facts.trainSeconds,
      imagesPerSecond: facts.trainSeconds > 0 ? trainedImages / facts.trainSeconds : 0,
    },
    files,
  };
  await writeFile(join(dir, MANIFEST_FILE), JSON.stringify(manifest, null, 2));
  facts.log(`wrote model/, metrics.json, metrics.png, curves.png, run.json, ${LOG_FILE}`);
  return manifest;
}
