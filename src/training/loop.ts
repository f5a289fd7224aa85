// The epochs of SGD: shuffle, assemble each batch (on the GPU where the images live there), one step
// in flight, validate after each epoch, hand the state to `onEpochEnd` (which writes the checkpoint).
// A stop asked for between steps throws StopRequested with the state after the last step done.
import * as tf from '@tensorflow/tfjs';
import type { RunConfig } from '../config.js';
import { GpuImages, PARAMS_PER_IMAGE } from '../backends/webgpu/batches.js';
import {
  assembleBatch,
  batchParams,
  needsCpuAssembly,
  normalizationTable,
  type Normalization,
} from '../data/batches.js';
import type { ImageSet } from '../data/dataset.js';
import type { Random } from '../data/random.js';
import { TrainingDiverged } from '../errors.js';
import type { Progress, ProgressFactory } from '../reports/progress.js';
import { tensorValues, type LoopState } from '../runs/checkpoint.js';
import type { EpochMetrics } from '../runs/metrics.js';
import { evaluateModel } from './evaluate.js';
import { learningRateSchedule } from './schedule.js';
import type { Optimizer } from './sgd.js';
import { trainStep } from './step.js';
import { percent, plural } from '../reports/format.js';

/** Thrown inside the training loop when the signal aborts: the state after the last step done. */
export class StopRequested extends Error {
  constructor(readonly state: LoopState) {
    super('stop requested');
  }
}

/**
 * Below this an epoch has too few SGD steps for the recipe (warm-up, then decay, over the run's steps)
 * to train a network from scratch: e.g. 1,620 images in batches of 256 give 6 steps an epoch, and VGG
 * ends near chance. Such a run gets a warning.
 */
export const MIN_STEPS_PER_EPOCH = 16;

/** A warning when the recipe gets too few steps to learn, with a batch size that would give enough. */
export function fewStepsWarning(images: number, batchSize: number, epochs: number): string | null {
  const perEpoch = Math.ceil(images / batchSize);
  const total = perEpoch * epochs;
  if (perEpoch >= MIN_STEPS_PER_EPOCH) return null;
  // A power of two that gives about 40 steps an epoch.
  const smaller = 2 ** Math.floor(Math.log2(images / 40));
  const advice =
    smaller >= 8 && smaller < batchSize
      ? `a smaller --batch-size (e.g. ${smaller}: ${Math.ceil(images / smaller)} steps an epoch) or more --epochs`
      : 'more images, or more --epochs';
  return (
    `warning: ${perEpoch} step${perEpoch === 1 ? '' : 's'} an epoch (${images} training images, --batch-size ${batchSize}), ${total} in all: ` +
    `too few for this recipe to train the model (it may end near chance); try ${advice}`
  );
}

export interface TrainingSetup {
  model: tf.LayersModel;
  variables: tf.Variable[];
  optimizer: Optimizer;
  random: Random;
  config: RunConfig;
  trainSet: ImageSet;
  validation: ImageSet;
  normalization: Normalization;
  numClasses: number;
}

export interface LoopHooks {
  signal?: AbortSignal;
  stopNow?: AbortSignal;
  progress: ProgressFactory;
  log: (line: string) => void;
  /** Holds the live bar, for a stop at once to close it. */
  run: { bar: Progress | undefined };
  onEpochEnd: (state: LoopState) => Promise<void>;
}

export interface LoopResult {
  history: EpochMetrics[];
  /** The best epoch by --early-stopping-metric, and its value. */
  best: { epoch: number; value: number } | null;
  /** With --save-best: all model weights at the end of the best epoch. */
  bestWeights?: Float32Array[];
  /** The epoch early stopping stopped after; null when every epoch was trained. */
  stoppedEarlyAfter: number | null;
}

/** Whether `value` of the watched metric beats `best` (accuracy: higher; loss: lower). Ties do not. */
function improves(config: RunConfig, value: number, best: { value: number } | null): boolean {
  if (best === null) return true;
  return config.earlyStoppingMetric === 'validation-loss' ? value < best.value : value > best.value;
}

/** The epochs of SGD, from the start or from `start` (a checkpoint's state). */
export async function trainEpochs(
  setup: TrainingSetup,
  start: LoopState | null,
  hooks: LoopHooks,
): Promise<LoopResult> {
  const { model, variables, optimizer, random, config, trainSet, validation, normalization, numClasses } =
    setup;
  const { batchSize, epochs } = config;
  const { progress, log } = hooks;
  const learner = { model, variables, optimizer, numClasses, labelSmoothing: config.labelSmoothing };
  const stepsPerEpoch = Math.ceil(trainSet.count / batchSize);
  const schedule = learningRateSchedule(config, stepsPerEpoch * epochs);
  const augmentation = {
    flip: config.randomFlip,
    crop: config.randomCrop,
    cutout: config.cutout,
    colorJitter: config.colorJitter,
  };
  const imageSize = trainSet.height * trainSet.width * trainSet.channels;
  const x = new Float32Array(batchSize * imageSize);
  const y = new Int32Array(batchSize);
  // On WebGPU the training images live on the GPU and each batch is assembled there.
  // (Cutout and colour jitter are assembled on the CPU and uploaded: the GPU kernel does flips and shifts.)
  const gpuImages = needsCpuAssembly(augmentation)
    ? undefined
    : GpuImages.upload(trainSet, normalizationTable(normalization, trainSet.channels));
  const params = new Int32Array(batchSize * PARAMS_PER_IMAGE);
  if (start && start.order.length !== trainSet.count) {
    throw new Error(
      `the checkpoint's image order has ${start.order.length} images, the training split ${trainSet.count}`,
    );
  }
  const order = start
    ? Int32Array.from(start.order)
    : Int32Array.from({ length: trainSet.count }, (_, i) => i);
  const history: EpochMetrics[] = start ? [...start.history] : [];
  let best = start?.best ?? null;
  let bestWeights = start?.bestWeights;
  let stoppedEarlyAfter: number | null = null;
  const patience = config.earlyStoppingPatience;
  // A checkpoint taken at the end of an epoch continues with the next one.
  const midEpoch = start !== null && start.step < stepsPerEpoch;
  const firstEpoch = start === null ? 1 : midEpoch ? start.epoch : start.epoch + 1;
  const stopAsked = () => hooks.signal?.aborted === true || hooks.stopNow?.aborted === true;
  const diverged = (loss: number, epoch: number, step: number, where: string, learningRate: number) =>
    new TrainingDiverged(
      `training diverged: the ${where} loss became ${loss} in epoch ${epoch}${step > 0 ? `, step ${step} of ${stepsPerEpoch}` : ''} ` +
        `(learning rate ${Number(learningRate.toPrecision(3))}); try a lower --learning-rate than ${config.learningRate} ` +
        `(e.g. ${Number((config.learningRate / 4).toPrecision(3))})`,
      epoch,
      step,
      loss,
    );

  try {
    for (let epoch = firstEpoch; epoch <= epochs; epoch++) {
      // Checked before the epoch (not after the last one), so a resumed run stops where it would have.
      if (patience !== undefined && best !== null && epoch - 1 - best.epoch >= patience) {
        stoppedEarlyAfter = epoch - 1;
        log(
          `early stopping after epoch ${epoch - 1}: ${config.earlyStoppingMetric} has not improved for ${plural(patience, 'epoch')} (best: epoch ${best.epoch}, ${Number(best.value.toPrecision(4))})`,
        );
        break;
      }
      const resuming = midEpoch && epoch === start!.epoch;
      if (!resuming) random.shuffle(order);
      const sums = resuming
        ? { ...start!.sums }
        : { lossSum: 0, correct: 0, seen: 0, seconds: 0, learningRate: 0 };
      const firstStep = resuming ? start!.step : 0;
      const bar = progress(`epoch ${epoch}/${epochs}`, trainSet.count, 'images');
      hooks.run.bar = bar;
      bar.update(sums.seen);
      const started = performance.now();
      const seenBefore = sums.seen;
      const snapshot = (step: number): LoopState => ({
        epoch,
        step,
        order,
        randomState: random.state,
        history,
        sums: { ...sums, seconds: sums.seconds + (performance.now() - started) / 1000 },
        best,
        bestWeights,
      });
      // One step in flight: step k is queued before step k-1's loss is read, so the GPU never waits
      // for the CPU to read a number back (CPU backends lose nothing). Its numbers are added here.
      let pending:
        { result: Promise<[number, number]>; n: number; step: number; learningRate: number } | undefined;
      const settle = async (): Promise<void> => {
        if (pending === undefined) return;
        const { result, n, step, learningRate } = pending;
        pending = undefined;
        const [loss, hits] = await result;
        if (!Number.isFinite(loss)) {
          bar.stop();
          throw diverged(loss, epoch, step + 1, 'training', learningRate);
        }
        sums.lossSum += loss * n;
        sums.correct += hits;
        sums.seen += n;
        const elapsed = (performance.now() - started) / 1000;
        bar.update(sums.seen, {
          loss: (sums.lossSum / sums.seen).toFixed(4),
          'img/s': Math.round((sums.seen - seenBefore) / elapsed),
        });
      };
      for (let step = firstStep; step < stepsPerEpoch; step++) {
        if (stopAsked()) {
          await settle();
          bar.stop();
          throw new StopRequested(snapshot(step));
        }
        const n = Math.min(batchSize, trainSet.count - step * batchSize);
        let input: Float32Array | tf.Tensor4D = x;
        if (gpuImages) {
          batchParams(
            trainSet,
            order,
            step * batchSize,
            n,
            augmentation,
            random,
            params,
            PARAMS_PER_IMAGE,
            y,
          );
          input = gpuImages.batch(params, n);
        } else {
          assembleBatch(trainSet, order, step * batchSize, n, normalization, augmentation, random, x, y);
        }
        const learningRate = schedule((epoch - 1) * stepsPerEpoch + step);
        const result = trainStep(learner, { x: input, y, n }, learningRate);
        // Seen when settled; a failure while the previous step settles must not leave it unhandled.
        result.catch(() => undefined);
        if (!(input instanceof Float32Array)) input.dispose();
        await settle();
        sums.learningRate = learningRate;
        pending = { result, n, step, learningRate };
        // Let signal handlers (and the progress bar) run after every step: a macrotask turn costs
        // microseconds, a step milliseconds, and a stop is then seen before the next step.
        await new Promise((r) => setImmediate(r));
      }
      await settle();
      bar.stop();
      hooks.run.bar = undefined;
      sums.seconds += (performance.now() - started) / 1000;
      const validationResult = await evaluateModel(model, validation, normalization, numClasses);
      if (!Number.isFinite(validationResult.loss)) {
        throw diverged(validationResult.loss, epoch, 0, 'validation', sums.learningRate);
      }
      const metrics: EpochMetrics = {
        epoch,
        trainLoss: sums.lossSum / sums.seen,
        trainAccuracy: sums.correct / sums.seen,
        validationLoss: validationResult.loss,
        validationAccuracy: validationResult.accuracy,
        learningRate: sums.learningRate,
        seconds: sums.seconds,
        imagesPerSecond: sums.seen / sums.seconds,
      };
      history.push(metrics);
      log(
        `epoch ${epoch}/${epochs}: train loss ${metrics.trainLoss.toFixed(4)} acc ${percent(metrics.trainAccuracy)} | ` +
          `validation loss ${metrics.validationLoss.toFixed(4)} acc ${percent(metrics.validationAccuracy)} | ` +
          `${metrics.seconds.toFixed(1)} s, ${Math.round(metrics.imagesPerSecond)} img/s`,
      );
      const value =
        config.earlyStoppingMetric === 'validation-loss'
          ? metrics.validationLoss
          : metrics.validationAccuracy;
      if (improves(config, value, best)) {
        best = { epoch, value };
        if (config.saveBest) bestWeights = await tensorValues(model.weights.map((w) => w.read()));
      }
      await hooks.onEpochEnd({
        epoch,
        step: stepsPerEpoch,
        order,
        randomState: random.state,
        history,
        sums: { ...sums },
        best,
        bestWeights,
      });
    }
  } finally {
    gpuImages?.dispose();
  }
  return { history, best, bestWeights, stoppedEarlyAfter };
}
