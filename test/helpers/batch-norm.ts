// Training-mode batch norm run through forward and backward on one backend: ours
// (batchNormTraining) or the stock tfjs formulation (moments + batchNorm).
import * as tf from '@tensorflow/tfjs';
import { batchNormTraining } from '../../src/backends/batch-norm.js';
import { expectClose, randomArray } from './numeric.js';

export const SHAPE = [3, 7, 9, 5];
const EPS = 1e-3;

export interface Result {
  y: Float32Array;
  mean: Float32Array;
  variance: Float32Array;
  dx: Float32Array;
  dgamma: Float32Array;
  dbeta: Float32Array;
}

export type Impl = 'stock' | 'ours';

export async function runBatchNorm(backend: string, impl: Impl, shape = SHAPE): Promise<Result> {
  await tf.setBackend(backend);
  const size = shape.reduce((a, b) => a * b, 1);
  const c = shape[shape.length - 1]!;
  // Non-zero mean per channel, so centring matters.
  const xs = randomArray(size, 11, 4, 1.5);
  const out = tf.tidy(() => {
    const x = tf.tensor(xs, shape);
    const gamma = tf.tensor1d(randomArray(c, 12, 1, 1));
    const beta = tf.tensor1d(randomArray(c, 13));
    const pattern = tf.tensor(randomArray(size, 14), shape);
    const forward = (
      xi: tf.Tensor,
      gi: tf.Tensor,
      bi: tf.Tensor,
    ): { y: tf.Tensor; mean: tf.Tensor; variance: tf.Tensor } => {
      if (impl === 'ours') return batchNormTraining(xi, gi as tf.Tensor1D, bi as tf.Tensor1D, EPS);
      const axes = shape.slice(0, -1).map((_, i) => i);
      const { mean, variance } = tf.moments(xi, axes);
      return {
        y: tf.batchNorm(xi, mean, variance, bi as tf.Tensor1D, gi as tf.Tensor1D, EPS),
        mean,
        variance,
      };
    };
    const { y, mean, variance } = forward(x, gamma, beta);
    const grads = tf.grads((xi: tf.Tensor, gi: tf.Tensor, bi: tf.Tensor) =>
      tf.sum(tf.mul(forward(xi, gi, bi).y, pattern)),
    )([x, gamma, beta]);
    return [y, mean, variance, ...grads];
  });
  const data = await Promise.all(out.map((t) => t.data() as Promise<Float32Array>));
  tf.dispose(out);
  const [y, mean, variance, dx, dgamma, dbeta] = data as [
    Float32Array,
    Float32Array,
    Float32Array,
    Float32Array,
    Float32Array,
    Float32Array,
  ];
  return { y, mean, variance, dx, dgamma, dbeta };
}

export function compare(got: Result, ref: Result): void {
  expectClose(got.y, ref.y, 'y');
  expectClose(got.mean, ref.mean, 'mean');
  expectClose(got.variance, ref.variance, 'variance');
  expectClose(got.dx, ref.dx, 'dx');
  expectClose(got.dgamma, ref.dgamma, 'dgamma');
  expectClose(got.dbeta, ref.dbeta, 'dbeta');
}
