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
        return [perImage, tf.argMax(logits, 1)];
      });
      input.dispose();
      const previous = pending;
      pending = (async () => {
        // Read in batch order: the loss is summed in the same order whatever the batch size.
        await previous;
        const [losses, predictions] = await Promise.all([outputs[0].data(), outputs[1].data()]);
        tf.dispose(outputs);
        for (let i = 0; i < n; i++) {
          lossSum += losses[i]!;
          confusion[y[i]!]![predictions[i]!]!++;
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
  const perClassAccuracy = confusion.map((row, k) => {
    const total = row.reduce((a, b) => a + b, 0);
    return total === 0 ? 0 : row[k]! / total;
  });
  const correct = confusion.reduce((a, row, k) => a + row[k]!, 0);
  return {
    loss: set.count === 0 ? NaN : lossSum / set.count,
    accuracy: set.count === 0 ? NaN : correct / set.count,
    perClassAccuracy,
    confusion,
    count: set.count,
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
