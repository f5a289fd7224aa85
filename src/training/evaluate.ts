// Accuracy, per-class accuracy, loss and confusion matrix of a model on an ImageSet.
import * as tf from '@tensorflow/tfjs';

import type { ImageSet } from '../data/dataset.js';
import { GpuImages, PARAMS_PER_IMAGE } from '../backends/webgpu/batches.js';
import {
  assembleBatch,
  batchParams,
  NO_AUGMENTATION,
  normalizationTable,
  type Normalization,
} from '../data/batches.js';
import { ConfigError } from '../errors.js';
import type { Evaluation } from '../runs/metrics.js';
import { percent } from '../reports/format.js';

/**
 * Async: results are read back with `data()`, which every backend supports (WebGPU in Node has no
 * dataSync). One batch is in flight while the previous one is read back, and on WebGPU the images
 * are uploaded once and batches assembled on the GPU, in larger batches (`batchSize` by default 500,
 * 2,000 there): per-image results do not depend on the batch size.
 */
export async function evaluateModel(
  model: tf.LayersModel,
  set: ImageSet,
  norm: Normalization,
  numClasses: number,
  batchSize?: number,
): Promise<Evaluation> {
  const confusion = Array.from({ length: numClasses }, () => new Array<number>(numClasses).fill(0));
  const size = set.height * set.width * set.channels;
  const gpu = set.count > 0 ? GpuImages.upload(set, normalizationTable(norm, set.channels)) : undefined;
  const batch = batchSize ?? (gpu ? 2000 : 500);
  const order = Int32Array.from({ length: set.count }, (_, i) => i);
  const x = new Float32Array(gpu ? 0 : batch * size);
  const params = new Int32Array(gpu ? batch * PARAMS_PER_IMAGE : 0);
  let lossSum = 0;
  // How many images had their true class among the k most probable, k = 1..maxK.
  const maxK = Math.min(MAX_TOP_K, numClasses);
  const topHits = new Array<number>(maxK).fill(0);
  let pending: Promise<void> | undefined;
  try {
    for (let start = 0; start < set.count; start += batch) {
      const n = Math.min(batch, set.count - start);
      const y = new Int32Array(n);
      let input: tf.Tensor4D;
      if (gpu) {
        batchParams(set, order, start, n, NO_AUGMENTATION, undefined, params, PARAMS_PER_IMAGE, y);
        input = gpu.batch(params, n);
      } else {
        assembleBatch(set, order, start, n, norm, NO_AUGMENTATION, undefined, x, y);
        input = tf.tensor4d(x.subarray(0, n * size), [n, set.height, set.width, set.channels]);
      }
      const outputs: [tf.Tensor, tf.Tensor] = tf.tidy(() => {
        const logits = model.predict(input) as tf.Tensor2D;
        const labels = tf.oneHot(tf.tensor1d(y, 'int32'), numClasses);
        const perImage = tf.losses.softmaxCrossEntropy(labels, logits, undefined, 0, tf.Reduction.NONE);
        // The k most probable classes, most probable first (topk sorts; ties: the lower index, as argMax).
        return [perImage, tf.topk(logits, maxK).indices];
      });
      input.dispose();
      const previous = pending;
      pending = (async () => {
        // Read in batch order: the loss is summed in the same order whatever the batch size.
        await previous;
        const [losses, ranked] = await Promise.all([outputs[0].data(), outputs[1].data()]);
        tf.dispose(outputs);
        for (let i = 0; i < n; i++) {
          lossSum += losses[i]!;
          confusion[y[i]!]![ranked[i * maxK]!]!++;
          const rank = Array.prototype.indexOf.call(ranked.subarray(i * maxK, (i + 1) * maxK), y[i]!);
          if (rank >= 0) for (let k = rank; k < maxK; k++) topHits[k]!++;
        }
      })();
      // Seen below; a failure here must not be unhandled while the next batch is queued.
      pending.catch(() => undefined);
      if (previous) await previous;
    }
    await pending;
  } finally {
    gpu?.dispose();
  }
  const report = classificationReport(confusion);
  const correct = confusion.reduce((a, row, k) => a + row[k]!, 0);
  return {
    loss: set.count === 0 ? NaN : lossSum / set.count,
    accuracy: set.count === 0 ? NaN : correct / set.count,
    perClassAccuracy: report.recall,
    confusion,
    count: set.count,
    ...report,
    topK: Object.fromEntries(
      topHits.map((hits, k) => [String(k + 1), set.count === 0 ? NaN : hits / set.count]),
    ),
  };
}

/** Top-k accuracy is reported up to this k (or the number of classes). */
export const MAX_TOP_K = 5;

/** Precision, recall, F1 and support per class, and their macro and weighted means, from a confusion matrix. */
export function classificationReport(
  confusion: number[][],
): Pick<Evaluation, 'precision' | 'recall' | 'f1' | 'support' | 'macro' | 'weighted'> {
  const ratio = (a: number, b: number) => (b === 0 ? 0 : a / b);
  const support = confusion.map((row) => row.reduce((a, b) => a + b, 0));
  const predicted = confusion.map((_, j) => confusion.reduce((a, row) => a + row[j]!, 0));
  const recall = confusion.map((row, k) => ratio(row[k]!, support[k]!));
  const precision = confusion.map((row, k) => ratio(row[k]!, predicted[k]!));
  const f1 = precision.map((p, k) => ratio(2 * p * recall[k]!, p + recall[k]!));
  const total = support.reduce((a, b) => a + b, 0);
  const mean = (values: number[], weights?: number[]) =>
    weights
      ? ratio(
          values.reduce((a, v, k) => a + v * weights[k]!, 0),
          total,
        )
      : ratio(
          values.reduce((a, v) => a + v, 0),
          values.length,
        );
  return {
    precision,
    recall,
    f1,
    support,
    macro: { precision: mean(precision), recall: mean(recall), f1: mean(f1) },
    weighted: { precision: mean(precision, support), recall: mean(recall, support), f1: mean(f1, support) },
  };
}

/** Whether an evaluation measured anything (a split with no images did not). */
export function hasResult(evaluation: Pick<Evaluation, 'count' | 'accuracy'>): boolean {
  return evaluation.count > 0 && Number.isFinite(evaluation.accuracy);
}

/** The run log's line for the test split: its accuracy, or that there was no test split. */
export function describeTest(test: Evaluation): string {
  return hasResult(test)
    ? `test: accuracy ${percent(test.accuracy)}, loss ${test.loss.toFixed(4)} on ${test.count} images`
    : 'test: no test images (the data has no test split), so no test accuracy; the validation accuracy is the result';
}

/**
 * Refuses, before any training, a run with nothing to validate on: no validation images held out and
 * no test split to validate on instead. Every epoch's validation accuracy would be an empty 0%, and
 * `runs` and `sweep` rank runs by it.
 */
export function checkValidationImages(
  validationImages: number,
  trainImages: number,
  validationSplit: number,
): void {
  if (validationImages > 0) return;
  const held =
    validationSplit === 0
      ? '--validation-split 0 validates on the test split'
      : `--validation-split ${validationSplit} of ${trainImages} training images holds out none`;
  // The smallest fraction that holds out one image (the split rounds), within the schema's 0.5.
  const enough = Math.min(0.5, Math.ceil(50 / Math.max(1, trainImages)) / 100);
  const fix =
    trainImages >= 2 && Math.round(trainImages * enough) < trainImages
      ? `use --validation-split ${enough} or more, or add images`
      : 'add images';
  throw new ConfigError(
    `no images to validate on: ${held}, and the data has no test images (--test-split rounds per class: 0.1 holds one out of 5); ${fix}`,
  );
}
