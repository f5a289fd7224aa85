// Our WebGPU training kernels (src/backends/webgpu/) against the cpu backend, on whatever WebGPU
// adapter this machine has: Mesa's lavapipe in CI (.ci/run installs it), a real GPU elsewhere.
// Skipped, saying why, where there is none.
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { BatchNormNHWC } from '../src/models/layers/batch-norm.js';
import { selectBackend } from '../src/backends/select.js';
import { SGD_UPDATE } from '../src/backends/sgd.js';
import { filterGradTuning } from '../src/backends/webgpu/conv-filter-grad.js';
import { registerWebGpuTrainingKernels } from '../src/backends/webgpu/kernels.js';
import { GpuImages, PARAMS_PER_IMAGE } from '../src/backends/webgpu/batches.js';
import type { ImageSet } from '../src/data/dataset.js';
import { Random } from '../src/data/random.js';
import { assembleBatch, drawAugmentation, normalizationTable } from '../src/data/batches.js';
import { Sgd } from '../src/training/sgd.js';
import { compare, runBatchNorm, SHAPE } from './helpers/batch-norm.js';
import { expectClose, randomArray, sameBits, type ConvCase } from './helpers/numeric.js';

let unavailable: string | undefined;

beforeAll(async () => {
  try {
    await selectBackend({ device: 'auto', backend: 'webgpu' });
  } catch (error) {
    unavailable = error instanceof Error ? error.message : String(error);
  }
});

function outputSize(tc: ConvCase): [number, number] {
  const info = tf.backend_util.computeConv2DInfo(
    [tc.n, tc.h, tc.w, tc.c],
    [tc.k, tc.k, tc.c, tc.f],
    tc.stride,
    1,
    tc.pad,
  );
  return [info.outHeight, info.outWidth];
}

async function filterGrad(backend: string, tc: ConvCase): Promise<Float32Array> {
  await tf.setBackend(backend);
  const xs = randomArray(tc.n * tc.h * tc.w * tc.c, 1);
  const [oh, ow] = outputSize(tc);
  const dys = randomArray(tc.n * oh * ow * tc.f, 2);
  const dw = tf.tidy(
    () =>
      tf
        .engine()
        .runKernel(
          tf.Conv2DBackpropFilter,
          { x: tf.tensor4d(xs, [tc.n, tc.h, tc.w, tc.c]), dy: tf.tensor4d(dys, [tc.n, oh, ow, tc.f]) },
          { strides: tc.stride, pad: tc.pad, dataFormat: 'NHWC', filterShape: [tc.k, tc.k, tc.c, tc.f] },
        ) as tf.Tensor,
  );
  const out = (await dw.data()) as Float32Array;
  dw.dispose();
  return out;
}

const cases: ConvCase[] = [];
for (const k of [3, 5]) {
  for (const stride of [1, 2]) {
    for (const pad of ['same', 'valid'] as const) {
      cases.push({ n: 3, h: 7, w: 9, c: 3, f: 4, k, stride, pad });
      cases.push({ n: 3, h: 9, w: 7, c: 5, f: 6, k, stride, pad });
    }
  }
}
// Tiles of 64 rows and columns, several tiles each way, uneven edges; explicit padding.
cases.push({ n: 4, h: 10, w: 10, c: 24, f: 80, k: 3, stride: 1, pad: 'same' });
cases.push({ n: 2, h: 8, w: 7, c: 3, f: 2, k: 3, stride: 2, pad: 2 });

describe('WebGPU Conv2DBackpropFilter', () => {
  const saved = { ...filterGradTuning };
  for (const tc of cases) {
    it(`${tc.n}x${tc.h}x${tc.w}x${tc.c} k${tc.k} f${tc.f} s${tc.stride} ${tc.pad}`, async (ctx) => {
      if (unavailable) ctx.skip(`no WebGPU here: ${unavailable}`);
      registerWebGpuTrainingKernels();
      const ref = await filterGrad('cpu', tc);
      try {
        // One chunk per reduction tile; on some cases also one chunk (no second pass) and a few long
        // ones. (Each variant is a shader to compile: slow on a software adapter.)
        for (const targetGroups of tc.k === 3 && tc.stride === 1 ? [1024, 1, 3] : [1024]) {
          filterGradTuning.targetGroups = targetGroups;
          expectClose(await filterGrad('webgpu', tc), ref, `targetGroups ${targetGroups}`);
        }
      } finally {
        Object.assign(filterGradTuning, saved);
      }
    });
  }

  it('gives the same bits every time', async (ctx) => {
    if (unavailable) ctx.skip(`no WebGPU here: ${unavailable}`);
    const tc: ConvCase = { n: 6, h: 12, w: 12, c: 16, f: 32, k: 3, stride: 1, pad: 'same' };
    const a = await filterGrad('webgpu', tc);
    const b = await filterGrad('webgpu', tc);
    expect(sameBits(a, b)).toBe(true);
  });
});

describe('WebGPU batch norm (fused training kernels)', () => {
  for (const shape of [SHAPE, [3, 7, 9, 12], [6, 4], [2, 40, 40, 70]]) {
    it(`matches moments + batchNorm on cpu, ${shape.join('x')}`, async (ctx) => {
      if (unavailable) ctx.skip(`no WebGPU here: ${unavailable}`);
      registerWebGpuTrainingKernels();
      compare(await runBatchNorm('webgpu', 'ours', shape), await runBatchNorm('cpu', 'stock', shape));
    });
  }

  it('gives the same bits every time', async (ctx) => {
    if (unavailable) ctx.skip(`no WebGPU here: ${unavailable}`);
    const shape = [4, 16, 16, 32];
    const a = await runBatchNorm('webgpu', 'ours', shape);
    const b = await runBatchNorm('webgpu', 'ours', shape);
    for (const k of ['y', 'mean', 'variance', 'dx', 'dgamma', 'dbeta'] as const)
      expect(sameBits(a[k], b[k]), k).toBe(true);
  });
});

describe('WebGPU BatchNormNHWC layer', () => {
  it('updates its moving statistics as the stock layer does on cpu', async (ctx) => {
    if (unavailable) ctx.skip(`no WebGPU here: ${unavailable}`);
    registerWebGpuTrainingKernels();
    const movingStats = async (backend: string, layer: tf.layers.Layer) => {
      await tf.setBackend(backend);
      const x = tf.tensor(randomArray(4 * 5 * 6 * 7, 31, 3, 1), [4, 5, 6, 7]);
      const model = tf.sequential({ layers: [tf.layers.inputLayer({ inputShape: [5, 6, 7] }), layer] });
      for (let i = 0; i < 3; i++) tf.dispose(model.apply(x, { training: true }) as tf.Tensor);
      const weights = await Promise.all(model.getWeights().map((w) => w.data() as Promise<Float32Array>));
      tf.dispose(x);
      model.dispose();
      return weights;
    };
    const ours = await movingStats('webgpu', new BatchNormNHWC({ momentum: 0.9 }));
    const stock = await movingStats('cpu', tf.layers.batchNormalization({ momentum: 0.9 }));
    ours.forEach((w, i) => expectClose(w, stock[i]!, `weight ${i}`));
  });
});

describe('WebGPU ReLU gradient and SGD step', () => {
  it("ReLU's gradient matches cpu", async (ctx) => {
    if (unavailable) ctx.skip(`no WebGPU here: ${unavailable}`);
    registerWebGpuTrainingKernels();
    const grad = async (backend: string) => {
      await tf.setBackend(backend);
      const x = tf.tensor(randomArray(4 * 5 * 7, 3), [4, 5, 7]);
      const dx = tf.grad((a: tf.Tensor) =>
        tf.sum(tf.mul(tf.relu(a), tf.tensor(randomArray(140, 4), [4, 5, 7]))),
      )(x);
      const out = (await dx.data()) as Float32Array;
      tf.dispose([x, dx]);
      return out;
    };
    expectClose(await grad('webgpu'), await grad('cpu'), 'dx');
  });

  for (const settings of [
    { momentum: 0.9, nesterov: true, weightDecay: 5e-4 },
    { momentum: 0.9, nesterov: false, weightDecay: 0 },
    { momentum: 0, nesterov: false, weightDecay: 1e-3 },
  ]) {
    it(`SGD in two dispatches matches the tfjs-ops update (${JSON.stringify(settings)})`, async (ctx) => {
      if (unavailable) ctx.skip(`no WebGPU here: ${unavailable}`);
      await tf.setBackend('webgpu');
      const results = [];
      for (const fused of [true, false]) {
        const w = tf.variable(tf.tensor(randomArray(37, 1)));
        const opt = new Sgd([w], settings, fused);
        for (let step = 0; step < 3; step++) {
          const g = tf.tensor(randomArray(37, 10 + step));
          const { kernelNames } = await tf.profile(() => opt.step([g], 0.05 * (step + 1)));
          // The fused update is our kernel; the ops update never runs it.
          if (fused) expect(kernelNames).toEqual([SGD_UPDATE]);
          else expect(kernelNames).not.toContain(SGD_UPDATE);
          g.dispose();
        }
        results.push([(await w.data()) as Float32Array, (await opt.state()[0]!.data()) as Float32Array]);
        opt.dispose();
        w.dispose();
      }
      expectClose(results[0]![0]!, results[1]![0]!, 'weights', 1e-6);
      expectClose(results[0]![1]!, results[1]![1]!, 'momentum', 1e-6);
    });
  }
});

describe('WebGPU batch assembly', () => {
  it('gives the same bits as assembleBatch on the CPU, augmentation included', async (ctx) => {
    if (unavailable) ctx.skip(`no WebGPU here: ${unavailable}`);
    await tf.setBackend('webgpu');
    const [count, h, w, c] = [9, 5, 7, 3];
    const random = new Random(4);
    const set: ImageSet = {
      images: Uint8Array.from({ length: count * h * w * c }, () => random.int(256)),
      labels: Uint8Array.from({ length: count }, (_, i) => i % 3),
      count,
      height: h,
      width: w,
      channels: c,
    };
    const norm = { mean: [0.4, 0.5, 0.6], std: [0.2, 0.25, 0.3] };
    const order = Int32Array.from([8, 3, 5, 0, 1, 7, 2, 6, 4]);
    const augmentation = { flip: true, crop: 2 };
    const n = 7;
    const cpu = new Float32Array(n * h * w * c);
    assembleBatch(set, order, 1, n, norm, augmentation, new Random(9), cpu, new Int32Array(n));
    const images = GpuImages.upload(set, normalizationTable(norm, c))!;
    const draws = new Random(9);
    const params = new Int32Array(n * PARAMS_PER_IMAGE);
    for (let i = 0; i < n; i++) {
      const { flip, dx, dy } = drawAugmentation(augmentation, draws);
      params.set([order[1 + i]!, flip ? 1 : 0, dx, dy], i * PARAMS_PER_IMAGE);
    }
    const batch = images.batch(params, n);
    const gpu = (await batch.data()) as Float32Array;
    tf.dispose(batch);
    images.dispose();
    expect(sameBits(gpu, cpu)).toBe(true);
  });
});
