// Training-mode batch normalisation over the last (channel) axis whose
// gradient needs only per-channel reductions. tfjs-layers' batchNormalization
// differentiates through moments() + batchNorm(), whose gradients materialise
// the per-channel statistics at full activation size (Tile) and run several
// full-size Sums; on the wasm backend that was most of a VGG training step.
//
// On a backend with our fused kernels registered (wasm and webgpu: see
// wasm/kernels.ts and webgpu/kernels.ts) forward and backward are one kernel each;
// elsewhere the same custom gradient runs as ordinary tf ops. The layer that uses it is
// src/models/layers/batch-norm.ts.
import * as tf from '@tensorflow/tfjs';
import { hasKernel } from './registry.js';

/** Forward: inputs {x, gamma, beta}, attrs {epsilon} -> [y, mean, variance]. */
export const BATCH_NORM_TRAIN = 'ImageClassifierBatchNormTrain';
/** Backward: inputs {dy, x, gamma, mean, variance}, attrs {epsilon} -> [dx, dgamma, dbeta]. */
export const BATCH_NORM_TRAIN_GRAD = 'ImageClassifierBatchNormTrainGrad';
/**
 * A moving statistic's update, orig - (orig - value) * decay as tfjs-layers computes it: inputs
 * {orig, value}, attrs {decay}. One dispatch instead of three where a backend has it (webgpu).
 */
export const MOVING_AVERAGE = 'ImageClassifierMovingAverage';

export interface BatchNormTrainingResult {
  /** The normalised, scaled and shifted input (same shape as x). */
  y: tf.Tensor;
  /** Per-channel batch mean, shape [C]. */
  mean: tf.Tensor1D;
  /** Per-channel biased batch variance, shape [C] (what tf.moments returns). */
  variance: tf.Tensor1D;
}

function leadingAxes(rank: number): number[] {
  return Array.from({ length: rank - 1 }, (_, i) => i);
}

/**
 * Batch norm in training mode over all axes but the last: normalises x with
 * its own per-channel mean and biased variance, then scales by gamma and
 * shifts by beta (both shape [C]). Differentiable with respect to x, gamma
 * and beta; mean and variance are returned for moving averages and carry no
 * gradient. Matches tf.layers.batchNormalization's training branch.
 */
export function batchNormTraining(
  x: tf.Tensor,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  epsilon = 1e-3,
): BatchNormTrainingResult {
  if (x.rank < 2) throw new Error('batchNormTraining: x must have rank >= 2');
  const c = x.shape[x.rank - 1];
  if (gamma.shape[0] !== c || beta.shape[0] !== c) {
    throw new Error(`batchNormTraining: gamma/beta must have shape [${c}]`);
  }
  const fused = hasKernel(BATCH_NORM_TRAIN) && hasKernel(BATCH_NORM_TRAIN_GRAD);
  const axes = leadingAxes(x.rank);
  let stats: [tf.Tensor, tf.Tensor] | undefined;

  const f = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    // Cast: customGrad passes our three inputs, then the save function.
    const [xi, gi, bi, save] = args as [tf.Tensor, tf.Tensor1D, tf.Tensor1D, tf.GradSaveFunc];
    let y: tf.Tensor;
    let mean: tf.Tensor;
    let variance: tf.Tensor;
    if (fused) {
      [y, mean, variance] = tf.engine().runKernel(
        BATCH_NORM_TRAIN,
        { x: xi, gamma: gi, beta: bi },
        {
          epsilon,
        },
      ) as tf.Tensor[] as [tf.Tensor, tf.Tensor, tf.Tensor];
    } else {
      mean = tf.mean(xi, axes);
      variance = tf.mean(tf.squaredDifference(xi, mean), axes);
      const scale = tf.mul(gi, tf.rsqrt(tf.add(variance, epsilon)));
      y = tf.add(tf.mul(tf.sub(xi, mean), scale), bi);
    }
    // The forward function runs inside a tidy; keep the statistics for the
    // caller (handed back below, then tracked by the caller's scope).
    stats = [tf.keep(mean), tf.keep(variance)];
    save([xi, gi, mean, variance]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]): tf.Tensor[] => {
        const [sx, sg, sm, sv] = saved as [tf.Tensor, tf.Tensor1D, tf.Tensor1D, tf.Tensor1D];
        if (fused) {
          return tf
            .engine()
            .runKernel(
              BATCH_NORM_TRAIN_GRAD,
              { dy, x: sx, gamma: sg, mean: sm, variance: sv },
              { epsilon },
            ) as tf.Tensor[];
        }
        const m = sx.size / sx.shape[sx.rank - 1]!;
        const invStd = tf.rsqrt(tf.add(sv, epsilon));
        const xhat = tf.mul(tf.sub(sx, sm), invStd);
        const dbeta = tf.sum(dy, axes);
        const dgamma = tf.sum(tf.mul(dy, xhat), axes);
        const inner = tf.sub(tf.sub(dy, tf.div(dbeta, m)), tf.mul(xhat, tf.div(dgamma, m)));
        const dx = tf.mul(tf.mul(sg, invStd), inner);
        return [dx, dgamma, dbeta];
      },
    };
  });

  const y = f(x, gamma, beta);
  if (stats === undefined) throw new Error('batchNormTraining: forward did not run');
  const [keptMean, keptVariance] = stats;
  // Clones are tracked by the current scope like any op output; drop our keeps.
  const mean = keptMean.clone() as tf.Tensor1D;
  const variance = keptVariance.clone() as tf.Tensor1D;
  keptMean.dispose();
  keptVariance.dispose();
  return { y, mean, variance };
}

/** A moving statistic's next value, orig - (orig - value) * decay: MOVING_AVERAGE where the backend has it. */
export function movingAverage(orig: tf.Tensor, value: tf.Tensor, decay: number): tf.Tensor {
  return hasKernel(MOVING_AVERAGE)
    ? (tf.engine().runKernel(MOVING_AVERAGE, { orig, value }, { decay }) as tf.Tensor)
    : tf.sub(orig, tf.mul(tf.sub(orig, value), decay));
}
