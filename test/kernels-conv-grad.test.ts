// Conv2D gradients on wasm (with our kernels) against the cpu backend.
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { convGradTuning } from '../src/backends/wasm/conv-grad.js';
import { registerWasmTrainingKernels } from '../src/backends/wasm/kernels.js';
import { randomArray, expectClose, sameBits, type ConvCase } from './helpers/numeric.js';

type Case = ConvCase;

interface Grads {
  dx: Float32Array;
  dw: Float32Array;
}

async function convGrads(backend: string, tc: Case): Promise<Grads> {
  await tf.setBackend(backend);
  const xs = randomArray(tc.n * tc.h * tc.w * tc.c, 1);
  const ws = randomArray(tc.k * tc.k * tc.c * tc.f, 2);
  const [dx, dw] = tf.tidy(() => {
    const x = tf.tensor4d(xs, [tc.n, tc.h, tc.w, tc.c]);
    const w = tf.tensor4d(ws, [tc.k, tc.k, tc.c, tc.f]);
    // A non-uniform upstream gradient: weight the output by a fixed pattern.
    const f = (a: tf.Tensor, b: tf.Tensor): tf.Scalar => {
      const y = tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, tc.stride, tc.pad);
      const pattern = tf.tensor(randomArray(y.size, 3), y.shape);
      return tf.sum(tf.mul(y, pattern));
    };
    const g = tf.grads(f)([x, w]);
    return [g[0]!, g[1]!];
  });
  const out = { dx: (await dx!.data()) as Float32Array, dw: (await dw!.data()) as Float32Array };
  dx!.dispose();
  dw!.dispose();
  return out;
}

const cases: Case[] = [];
for (const k of [3, 5]) {
  for (const stride of [1, 2]) {
    for (const pad of ['same', 'valid'] as const) {
      cases.push({ n: 3, h: 7, w: 9, c: 3, f: 4, k, stride, pad });
      cases.push({ n: 3, h: 9, w: 7, c: 5, f: 6, k, stride, pad });
      // The SIMD filter-gradient loop's register tiles: 4 channels when
      // C % 4 == 0, else 1; 8 filters (F padded up to a multiple of 8).
      cases.push({ n: 3, h: 7, w: 9, c: 4, f: 8, k, stride, pad });
      cases.push({ n: 2, h: 7, w: 9, c: 3, f: 8, k, stride, pad });
      cases.push({ n: 2, h: 9, w: 7, c: 8, f: 16, k, stride, pad });
    }
  }
}
// Batches larger than the filter gradient's image chunks (4), split unevenly.
cases.push({ n: 5, h: 6, w: 5, c: 8, f: 8, k: 3, stride: 1, pad: 'same' });
cases.push({ n: 7, h: 6, w: 5, c: 4, f: 16, k: 3, stride: 2, pad: 'valid' });
// Explicit numeric padding (tfjs accepts a number for conv2d).
cases.push({ n: 2, h: 8, w: 6, c: 3, f: 2, k: 3, stride: 1, pad: 1 });
cases.push({ n: 2, h: 8, w: 7, c: 3, f: 2, k: 3, stride: 2, pad: 2 });
// Explicit padding larger than the kernel allows: the input gradient falls
// back to the stock kernel, the filter gradient still uses ours.
cases.push({ n: 2, h: 5, w: 5, c: 2, f: 3, k: 3, stride: 1, pad: 3 });

describe('wasm Conv2D gradients', () => {
  beforeAll(async () => {
    registerWasmTrainingKernels();
    registerWasmTrainingKernels(); // idempotent
    await tf.ready();
  });

  for (const tc of cases) {
    const name = `${tc.n}x${tc.h}x${tc.w}x${tc.c} k${tc.k} f${tc.f} s${tc.stride} ${tc.pad}`;
    it(name, async () => {
      const ref = await convGrads('cpu', tc);
      const saved = { ...convGradTuning };
      try {
        // Every form of the filter gradient: XNNPACK in one call, XNNPACK
        // split by dy row, and our SIMD loop (where the channels allow).
        const forms = [
          { rowsThresholdBytes: Infinity, simdFilterGrad: false },
          { rowsThresholdBytes: 0, simdFilterGrad: false },
          { rowsThresholdBytes: Infinity, simdFilterGrad: true },
        ];
        for (const form of forms) {
          Object.assign(convGradTuning, form);
          const got = await convGrads('wasm', tc);
          expectClose(got.dw, ref.dw, `dW ${JSON.stringify(form)}`);
          expectClose(got.dx, ref.dx, 'dx');
        }
      } finally {
        Object.assign(convGradTuning, saved);
      }
    });
  }

  it('is deterministic', async () => {
    const tc: Case = { n: 4, h: 12, w: 12, c: 8, f: 16, k: 3, stride: 1, pad: 'same' };
    const a = await convGrads('wasm', tc);
    const b = await convGrads('wasm', tc);
    expect(sameBits(a.dw, b.dw)).toBe(true);
    expect(sameBits(a.dx, b.dx)).toBe(true);
  });
});
