// Accuracy, per-class accuracy, loss and confusion matrix of a model on an ImageSet.
import * as tf from '@tensorflow/tfjs';
import type { ImageSet } from '../data/dataset.js';
import { assembleBatch, NO_AUGMENTATION, type Normalization } from './batches.js';

export interface Evaluation {
  loss: number;
  accuracy: number;
  /** Accuracy of each class (NaN-free: a class with no images gets 0). */
  perClassAccuracy: number[];
  /** confusion[true][predicted] = count */
  confusion: number[][];
  count: number;
}

/** Async: results are read back with `data()`, which every backend supports (WebGPU in Node has no dataSync). */
export async function evaluateModel(
  model: tf.LayersModel,
  set: ImageSet,
  norm: Normalization,
  numClasses: number,
  batchSize = 500,
): Promise<Evaluation> {
  const confusion = Array.from({ length: numClasses }, () => new Array<number>(numClasses).fill(0));
  const size = set.height * set.width * set.channels;
  const order = Int32Array.from({ length: set.count }, (_, i) => i);
  const x = new Float32Array(batchSize * size);
  const y = new Int32Array(batchSize);
  let lossSum = 0;
  for (let start = 0; start < set.count; start += batchSize) {
    const n = Math.min(batchSize, set.count - start);
    assembleBatch(set, order, start, n, norm, NO_AUGMENTATION, undefined, x, y);
    const outputs: [tf.Tensor, tf.Tensor] = tf.tidy(() => {
      const input = tf.tensor4d(x.subarray(0, n * size), [n, set.height, set.width, set.channels]);
      const logits = model.predict(input) as tf.Tensor2D;
      const labels = tf.oneHot(tf.tensor1d(y.subarray(0, n), 'int32'), numClasses);
      const perImage = tf.losses.softmaxCrossEntropy(labels, logits, undefined, 0, tf.Reduction.NONE);
      return [perImage, tf.argMax(logits, 1)];
    });
    const [losses, predictions] = await Promise.all([outputs[0].data(), outputs[1].data()]);
    tf.dispose(outputs);
    for (let i = 0; i < n; i++) {
      lossSum += losses[i]!;
      confusion[y[i]!]![predictions[i]!]!++;
    }
  }
  const perClassAccuracy = confusion.map((row, k) => {
    const total = row.reduce((a, b) => a + b, 0);
    return total === 0 ? 0 : row[k]! / total;
  });
  const correct = confusion.reduce((a, row, k) => a + row[k]!, 0);
  return {
    loss: set.count === 0 ? 0 : lossSum / set.count,
    accuracy: set.count === 0 ? 0 : correct / set.count,
    perClassAccuracy,
    confusion,
    count: set.count,
  };
}
