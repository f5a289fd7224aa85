// Fused training-mode batch-norm kernels for the wasm backend, channels last.
// They work directly on the tensors' memory on the wasm heap with per-channel
// float64 accumulators in a fixed order (deterministic, and no materialised
// broadcasts: the stock gradient of moments + batchNorm Tiles the per-channel
// statistics to the full activation size and runs several big Sums).
import * as tf from '@tensorflow/tfjs';
import { allocF32, asWasmBackend, f32View } from './wasm-internals.js';

/** Forward: inputs {x, gamma, beta}, attrs {epsilon} -> [y, mean, variance]. */
export const BATCH_NORM_TRAIN = 'ImageClassifierBatchNormTrain';
/** Backward: inputs {dy, x, gamma, mean, variance}, attrs {epsilon} -> [dx, dgamma, dbeta]. */
export const BATCH_NORM_TRAIN_GRAD = 'ImageClassifierBatchNormTrainGrad';

export interface BatchNormTrainAttrs {
  epsilon: number;
}

function channels(x: tf.TensorInfo): { rows: number; c: number } {
  const c = x.shape[x.shape.length - 1] ?? 1;
  const size = x.shape.reduce((a, b) => a * b, 1);
  return { rows: c === 0 ? 0 : size / c, c };
}

/** Per-channel mean and (biased) variance of x viewed as [rows, c]; two passes for accuracy. */
function moments(xs: Float32Array, rows: number, c: number): { mean: Float64Array; variance: Float64Array } {
  const mean = new Float64Array(c);
  const variance = new Float64Array(c);
  for (let r = 0, i = 0; r < rows; r++) {
    for (let j = 0; j < c; j++, i++) mean[j]! += xs[i]!;
  }
  for (let j = 0; j < c; j++) mean[j]! /= rows;
  for (let r = 0, i = 0; r < rows; r++) {
    for (let j = 0; j < c; j++, i++) {
      const d = xs[i]! - mean[j]!;
      variance[j]! += d * d;
    }
  }
  for (let j = 0; j < c; j++) variance[j]! /= rows;
  return { mean, variance };
}

function batchNormTrain(params: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: unknown }): tf.TensorInfo[] {
  const backend = asWasmBackend(params.backend);
  const { x, gamma, beta } = params.inputs as { x: tf.TensorInfo; gamma: tf.TensorInfo; beta: tf.TensorInfo };
  // Cast: tfjs passes attrs as a generic map; these are the attrs we set.
  const { epsilon } = params.attrs as BatchNormTrainAttrs;
  const { rows, c } = channels(x);
  const y = allocF32(backend, x.shape);
  const meanOut = allocF32(backend, [c]);
  const varOut = allocF32(backend, [c]);
  const xs = f32View(backend, x);
  const ys = f32View(backend, y);
  const g = f32View(backend, gamma);
  const b = f32View(backend, beta);
  const { mean, variance } = moments(xs, rows, c);
  // y = x * scale + shift, with the per-channel coefficients in float32 (the
  // arithmetic tfjs does element-wise as well).
  const scale = new Float32Array(c);
  const shift = new Float32Array(c);
  for (let j = 0; j < c; j++) {
    const s = g[j]! / Math.sqrt(variance[j]! + epsilon);
    scale[j] = s;
    shift[j] = b[j]! - mean[j]! * s;
  }
  for (let r = 0, i = 0; r < rows; r++) {
    for (let j = 0; j < c; j++, i++) ys[i] = xs[i]! * scale[j]! + shift[j]!;
  }
  f32View(backend, meanOut).set(mean);
  f32View(backend, varOut).set(variance);
  return [y, meanOut, varOut];
}

function batchNormTrainGrad(params: {
  inputs: tf.NamedTensorInfoMap;
  backend: unknown;
  attrs?: unknown;
}): tf.TensorInfo[] {
  const backend = asWasmBackend(params.backend);
  const { dy, x, gamma, mean, variance } = params.inputs as {
    dy: tf.TensorInfo;
    x: tf.TensorInfo;
    gamma: tf.TensorInfo;
    mean: tf.TensorInfo;
    variance: tf.TensorInfo;
  };
  // Cast: tfjs passes attrs as a generic map; these are the attrs we set.
  const { epsilon } = params.attrs as BatchNormTrainAttrs;
  const { rows, c } = channels(x);
  const dx = allocF32(backend, x.shape);
  const dgammaOut = allocF32(backend, [c]);
  const dbetaOut = allocF32(backend, [c]);
  const xs = f32View(backend, x);
  const dys = f32View(backend, dy);
  const dxs = f32View(backend, dx);
  const g = f32View(backend, gamma);
  const mu = f32View(backend, mean);
  const v = f32View(backend, variance);

  const invStd = new Float64Array(c);
  for (let j = 0; j < c; j++) invStd[j] = 1 / Math.sqrt(v[j]! + epsilon);
  // sum(dy) and sum(dy * (x - mean)) per channel.
  const sumDy = new Float64Array(c);
  const sumDyXc = new Float64Array(c);
  for (let r = 0, i = 0; r < rows; r++) {
    for (let j = 0; j < c; j++, i++) {
      const d = dys[i]!;
      sumDy[j]! += d;
      sumDyXc[j]! += d * (xs[i]! - mu[j]!);
    }
  }
  // dx = gamma*invStd * (dy - sum(dy)/M - xhat * sum(dy*xhat)/M), rewritten
  // as dx = a*dy + b*(x - mean) + d with per-channel a, b, d (centring x
  // first avoids cancellation when |mean| >> std).
  const a = new Float32Array(c);
  const bCoef = new Float32Array(c);
  const d = new Float32Array(c);
  const dgamma = f32View(backend, dgammaOut);
  const dbeta = f32View(backend, dbetaOut);
  for (let j = 0; j < c; j++) {
    const is = invStd[j]!;
    const aj = g[j]! * is;
    const bj = rows > 0 ? (-aj * sumDyXc[j]! * is * is) / rows : 0;
    a[j] = aj;
    bCoef[j] = bj;
    d[j] = rows > 0 ? (-aj * sumDy[j]!) / rows : 0;
    dgamma[j] = sumDyXc[j]! * is;
    dbeta[j] = sumDy[j]!;
  }
  for (let r = 0, i = 0; r < rows; r++) {
    for (let j = 0; j < c; j++, i++) dxs[i] = a[j]! * dys[i]! + bCoef[j]! * (xs[i]! - mu[j]!) + d[j]!;
  }
  return [dx, dgammaOut, dbetaOut];
}

export function batchNormTrainConfigs(): tf.KernelConfig[] {
  return [
    { kernelName: BATCH_NORM_TRAIN, backendName: 'wasm', kernelFunc: batchNormTrain },
    { kernelName: BATCH_NORM_TRAIN_GRAD, backendName: 'wasm', kernelFunc: batchNormTrainGrad },
  ];
}
