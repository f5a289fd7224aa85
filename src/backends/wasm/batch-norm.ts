// Fused training-mode batch-norm kernels for the wasm backend, channels last.
// They work directly on the tensors' memory on the wasm heap with per-channel
// float64 accumulators in a fixed order (deterministic, and no materialised
// broadcasts: the stock gradient of moments + batchNorm Tiles the per-channel
// statistics to the full activation size and runs several big Sums). The
// full-size passes run as WebAssembly SIMD loops (./simd/batch-norm.ts)
// when the channel count is a multiple of 4 (the native backend: the addon's
// passes, any count), else as JS loops.
import * as tf from '@tensorflow/tfjs';
import { BATCH_NORM_TRAIN, BATCH_NORM_TRAIN_GRAD } from '../batch-norm.js';
import {
  allocF32,
  asWasmBackend,
  f32View,
  freeTemp,
  heapMemory,
  heapOffset,
  type WasmBackend,
} from './internals.js';
import type { BatchNormSimd } from './simd/batch-norm.js';
import { simdKernels } from './simd/module.js';

/** What tfjs passes a kernel function. */
type KernelParams = Parameters<tf.KernelFunc>[0];

interface BatchNormTrainAttrs {
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

/** The four full-size passes on heap offsets: our SIMD loops' or the native addon's (the same signatures). */
export type BatchNormPasses = BatchNormSimd;

/** The passes that apply to a backend and channel count; null: the JS loops below. */
export type BatchNormPassesFor = (backend: WasmBackend, c: number) => BatchNormPasses | null;

/** Our SIMD loops, for channel counts a multiple of 4. */
const simdPasses: BatchNormPassesFor = (backend, c) =>
  c % 4 === 0 ? simdKernels(heapMemory(backend)) : null;

/** Per-channel float64 sums from a SIMD kernel: runs `fill` on zeroed heap accumulators. */
function heapSums(
  backend: WasmBackend,
  c: number,
  fill: (first: number, second: number) => void,
): [Float64Array, Float64Array] {
  // float32 tensors of 2c elements: 8 bytes per float64 accumulator.
  const first = allocF32(backend, [2 * c]);
  const second = allocF32(backend, [2 * c]);
  try {
    f32View(backend, first).fill(0);
    f32View(backend, second).fill(0);
    fill(heapOffset(backend, first), heapOffset(backend, second));
    const a = f32View(backend, first);
    const b = f32View(backend, second);
    // Copy out: views on the heap go stale when it grows.
    return [
      new Float64Array(a.buffer, a.byteOffset, c).slice(),
      new Float64Array(b.buffer, b.byteOffset, c).slice(),
    ];
  } finally {
    freeTemp(backend, first);
    freeTemp(backend, second);
  }
}

/** Writes per-channel float32 vectors to temporary heap tensors, runs `use`, frees them. */
function withHeapVectors(backend: WasmBackend, vectors: Float32Array[], use: (ptrs: number[]) => void): void {
  const temps = vectors.map((v) => allocF32(backend, [v.length]));
  try {
    temps.forEach((t, i) => f32View(backend, t).set(vectors[i]!));
    use(temps.map((t) => heapOffset(backend, t)));
  } finally {
    for (const t of temps) freeTemp(backend, t);
  }
}

function batchNormTrain(params: KernelParams, passesFor: BatchNormPassesFor): tf.TensorInfo[] {
  const backend = asWasmBackend(params.backend);
  const { x, gamma, beta } = params.inputs as { x: tf.TensorInfo; gamma: tf.TensorInfo; beta: tf.TensorInfo };
  // Cast: tfjs passes attrs as a generic map; these are the attrs we set.
  const { epsilon } = params.attrs as unknown as BatchNormTrainAttrs;
  const { rows, c } = channels(x);
  const y = allocF32(backend, x.shape);
  const meanOut = allocF32(backend, [c]);
  const varOut = allocF32(backend, [c]);
  const passes = passesFor(backend, c);

  let mean: Float64Array;
  let variance: Float64Array;
  if (passes !== null) {
    // One pass: float64 sums of x and x^2 (exact products of float32 values);
    // the E[x^2] - E[x]^2 cancellation only matters for |mean| > ~1e6 std.
    const [sum, sumSq] = heapSums(backend, c, (s1, s2) =>
      passes.bnStats(heapOffset(backend, x), rows, c, s1, s2),
    );
    mean = new Float64Array(c);
    variance = new Float64Array(c);
    for (let j = 0; j < c; j++) {
      const m = rows > 0 ? sum[j]! / rows : 0;
      mean[j] = m;
      variance[j] = rows > 0 ? Math.max(0, sumSq[j]! / rows - m * m) : 0;
    }
  } else {
    ({ mean, variance } = moments(f32View(backend, x), rows, c));
  }
  // y = x * scale + shift, with per-channel coefficients in float32.
  const g = f32View(backend, gamma);
  const b = f32View(backend, beta);
  const scale = new Float32Array(c);
  const shift = new Float32Array(c);
  for (let j = 0; j < c; j++) {
    const s = g[j]! / Math.sqrt(variance[j]! + epsilon);
    scale[j] = s;
    shift[j] = b[j]! - mean[j]! * s;
  }
  if (passes !== null) {
    withHeapVectors(backend, [scale, shift], ([sp, hp]) =>
      passes.bnApply(heapOffset(backend, x), heapOffset(backend, y), rows, c, sp!, hp!),
    );
  } else {
    const xs = f32View(backend, x);
    const ys = f32View(backend, y);
    for (let r = 0, i = 0; r < rows; r++) {
      for (let j = 0; j < c; j++, i++) ys[i] = xs[i]! * scale[j]! + shift[j]!;
    }
  }
  f32View(backend, meanOut).set(mean);
  f32View(backend, varOut).set(variance);
  return [y, meanOut, varOut];
}

function batchNormTrainGrad(params: KernelParams, passesFor: BatchNormPassesFor): tf.TensorInfo[] {
  const backend = asWasmBackend(params.backend);
  const { dy, x, gamma, mean, variance } = params.inputs as {
    dy: tf.TensorInfo;
    x: tf.TensorInfo;
    gamma: tf.TensorInfo;
    mean: tf.TensorInfo;
    variance: tf.TensorInfo;
  };
  // Cast: tfjs passes attrs as a generic map; these are the attrs we set.
  const { epsilon } = params.attrs as unknown as BatchNormTrainAttrs;
  const { rows, c } = channels(x);
  const dx = allocF32(backend, x.shape);
  const dgammaOut = allocF32(backend, [c]);
  const dbetaOut = allocF32(backend, [c]);
  const passes = passesFor(backend, c);

  const g = Float32Array.from(f32View(backend, gamma));
  const mu = Float32Array.from(f32View(backend, mean));
  const v = f32View(backend, variance);
  const invStd = new Float64Array(c);
  for (let j = 0; j < c; j++) invStd[j] = 1 / Math.sqrt(v[j]! + epsilon);

  // sum(dy) and sum(dy * (x - mean)) per channel.
  let sumDy: Float64Array;
  let sumDyXc: Float64Array;
  if (passes !== null) {
    [sumDy, sumDyXc] = heapSums(backend, c, (s1, s2) =>
      passes.bnGradStats(
        heapOffset(backend, dy),
        heapOffset(backend, x),
        heapOffset(backend, mean),
        rows,
        c,
        s1,
        s2,
      ),
    );
  } else {
    sumDy = new Float64Array(c);
    sumDyXc = new Float64Array(c);
    const xs = f32View(backend, x);
    const dys = f32View(backend, dy);
    for (let r = 0, i = 0; r < rows; r++) {
      for (let j = 0; j < c; j++, i++) {
        const d = dys[i]!;
        sumDy[j]! += d;
        sumDyXc[j]! += d * (xs[i]! - mu[j]!);
      }
    }
  }
  // dx = gamma*invStd * (dy - sum(dy)/M - xhat * sum(dy*xhat)/M), rewritten
  // as dx = a*dy + b*(x - mean) + d with per-channel a, b, d (centring x
  // first avoids cancellation when |mean| >> std).
  const a = new Float32Array(c);
  const bCoef = new Float32Array(c);
  const d = new Float32Array(c);
  const dgamma = new Float32Array(c);
  const dbeta = new Float32Array(c);
  for (let j = 0; j < c; j++) {
    const is = invStd[j]!;
    const aj = g[j]! * is;
    a[j] = aj;
    bCoef[j] = rows > 0 ? (-aj * sumDyXc[j]! * is * is) / rows : 0;
    d[j] = rows > 0 ? (-aj * sumDy[j]!) / rows : 0;
    dgamma[j] = sumDyXc[j]! * is;
    dbeta[j] = sumDy[j]!;
  }
  if (passes !== null) {
    withHeapVectors(backend, [a, bCoef, d], ([ap, bp, dp]) =>
      passes.bnGradApply(
        heapOffset(backend, dy),
        heapOffset(backend, x),
        heapOffset(backend, dx),
        rows,
        c,
        ap!,
        bp!,
        heapOffset(backend, mean),
        dp!,
      ),
    );
  } else {
    const xs = f32View(backend, x);
    const dys = f32View(backend, dy);
    const dxs = f32View(backend, dx);
    for (let r = 0, i = 0; r < rows; r++) {
      for (let j = 0; j < c; j++, i++) dxs[i] = a[j]! * dys[i]! + bCoef[j]! * (xs[i]! - mu[j]!) + d[j]!;
    }
  }
  f32View(backend, dgammaOut).set(dgamma);
  f32View(backend, dbetaOut).set(dbeta);
  return [dx, dgammaOut, dbetaOut];
}

/** The fused batch-norm kernels, their full-size passes from `passesFor` (the native backend's: the addon's). */
export function batchNormTrainConfigs(passesFor: BatchNormPassesFor = simdPasses): tf.KernelConfig[] {
  return [
    { kernelName: BATCH_NORM_TRAIN, backendName: 'wasm', kernelFunc: (p) => batchNormTrain(p, passesFor) },
    {
      kernelName: BATCH_NORM_TRAIN_GRAD,
      backendName: 'wasm',
      kernelFunc: (p) => batchNormTrainGrad(p, passesFor),
    },
  ];
}
