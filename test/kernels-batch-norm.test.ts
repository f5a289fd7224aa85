// Training-mode batch norm (batchNormTraining / BatchNormNHWC) against the
// stock tfjs formulation (moments + batchNorm) on the cpu backend.
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { BatchNormNHWC } from '../src/models/layers/batch-norm.js';
import { registerWasmTrainingKernels } from '../src/backends/wasm/kernels.js';
import { compare, runBatchNorm, SHAPE, type Result } from './helpers/batch-norm.js';
import { randomArray, expectClose, sameBits } from './helpers/numeric.js';

const C = SHAPE[3]!;

describe('batchNormTraining', () => {
  let ref: Result;
  beforeAll(async () => {
    registerWasmTrainingKernels();
    ref = await runBatchNorm('cpu', 'stock');
  });

  it('matches moments + batchNorm on cpu (tf-op fallback path)', async () => {
    compare(await runBatchNorm('cpu', 'ours'), ref);
  });

  it('matches on wasm with the fused kernels (JS loops: channels not a multiple of 4)', async () => {
    compare(await runBatchNorm('wasm', 'ours'), ref);
  });

  it('matches on wasm with the fused kernels (SIMD loops: channels a multiple of 4)', async () => {
    const shape = [3, 7, 9, 12];
    compare(await runBatchNorm('wasm', 'ours', shape), await runBatchNorm('cpu', 'stock', shape));
  });

  it('matches on a rank-2 input (dense layers)', async () => {
    const shape = [6, 4];
    compare(await runBatchNorm('wasm', 'ours', shape), await runBatchNorm('cpu', 'stock', shape));
  });

  it('is deterministic on wasm', async () => {
    for (const shape of [SHAPE, [4, 5, 6, 8]]) {
      const a = await runBatchNorm('wasm', 'ours', shape);
      const b = await runBatchNorm('wasm', 'ours', shape);
      for (const k of ['y', 'dx', 'dgamma', 'dbeta'] as const) expect(sameBits(a[k], b[k]), k).toBe(true);
    }
  });
});

describe('BatchNormNHWC layer', () => {
  function build(layer: tf.layers.Layer): tf.Sequential {
    const model = tf.sequential();
    model.add(
      tf.layers.conv2d({ inputShape: [7, 9, 3], filters: C, kernelSize: 3, padding: 'same', useBias: false }),
    );
    model.add(layer);
    return model;
  }

  it('trains like tf.layers.batchNormalization and saves as one', async () => {
    await tf.setBackend('wasm');
    const x = tf.tensor(randomArray(3 * 7 * 9 * 3, 21, 2), [3, 7, 9, 3]);
    const stock = build(tf.layers.batchNormalization({ momentum: 0.9 }));
    const ours = build(new BatchNormNHWC({ momentum: 0.9 }));
    ours.setWeights(stock.getWeights());

    // One training-mode forward each: same outputs, same moving statistics.
    const yStock = stock.apply(x, { training: true }) as tf.Tensor;
    const yOurs = ours.apply(x, { training: true }) as tf.Tensor;
    expectClose(await yOurs.data(), await yStock.data(), 'training output');
    const wStock = stock.getWeights();
    const wOurs = ours.getWeights();
    expect(wOurs.map((w) => w.shape)).toEqual(wStock.map((w) => w.shape));
    for (let i = 0; i < wStock.length; i++)
      expectClose(await wOurs[i]!.data(), await wStock[i]!.data(), `weight ${i}`);
    expect(ours.layers[1]!.weights.map((w) => w.name.split('/').pop())).toEqual([
      'gamma',
      'beta',
      'moving_mean',
      'moving_variance',
    ]);
    expectClose(
      await (ours.predict(x) as tf.Tensor).data(),
      await (stock.predict(x) as tf.Tensor).data(),
      'inference output',
    );

    // The saved topology names the stock class, so a program without our
    // code loads it as tf.layers' BatchNormalization.
    let artifacts: tf.io.ModelArtifacts | undefined;
    await ours.save(
      tf.io.withSaveHandler(async (a) => {
        artifacts = a;
        return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
      }),
    );
    expect(JSON.stringify(artifacts!.modelTopology)).toContain('"class_name":"BatchNormalization"');
    expect(JSON.stringify(artifacts!.modelTopology)).not.toContain('BatchNormNHWC');
    const loaded = await tf.loadLayersModel(tf.io.fromMemory(artifacts!));
    expect(loaded.layers[1]!.getClassName()).toBe('BatchNormalization');
    expect(loaded.layers[1]).not.toBeInstanceOf(BatchNormNHWC);
    expectClose(
      await (loaded.predict(x) as tf.Tensor).data(),
      await (ours.predict(x) as tf.Tensor).data(),
      'loaded model output',
    );
  });

  it('gives the same gradients as the stock layer inside a model', async () => {
    const grads = async (backend: string, useOurs: boolean): Promise<Float32Array[]> => {
      await tf.setBackend(backend);
      const model = build(useOurs ? new BatchNormNHWC() : tf.layers.batchNormalization());
      model.setWeights(
        model.getWeights().map((w, i) => tf.tensor(randomArray(w.size, 30 + i, 1, i === 1 ? 1 : 0), w.shape)),
      );
      const x = tf.tensor(randomArray(3 * 7 * 9 * 3, 22, 2), [3, 7, 9, 3]);
      const pattern = tf.tensor(randomArray(3 * 7 * 9 * C, 23), [3, 7, 9, C]);
      const { grads: g } = tf.variableGrads(
        () => tf.sum(tf.mul(model.apply(x, { training: true }) as tf.Tensor, pattern)) as tf.Scalar,
        model.trainableWeights.map((w) => (w as unknown as { val: tf.Variable }).val),
      );
      return Promise.all(Object.values(g).map((t) => t.data() as Promise<Float32Array>));
    };
    const ref = await grads('cpu', false);
    const got = await grads('wasm', true);
    expect(got.length).toBe(ref.length);
    for (let i = 0; i < ref.length; i++) expectClose(got[i]!, ref[i]!, `grad ${i}`);
  });
});

describe('training with our kernels', () => {
  it('is bit-for-bit reproducible (conv, BatchNormNHWC, relu, pools, dense)', async () => {
    registerWasmTrainingKernels();
    await tf.setBackend('wasm');
    const train = async (): Promise<Float32Array[]> => {
      const model = tf.sequential();
      model.add(
        tf.layers.conv2d({
          inputShape: [12, 12, 3],
          filters: 8,
          kernelSize: 3,
          padding: 'same',
          useBias: false,
        }),
      );
      model.add(new BatchNormNHWC());
      model.add(tf.layers.reLU());
      model.add(tf.layers.maxPooling2d({ poolSize: 2 }));
      model.add(tf.layers.conv2d({ filters: 16, kernelSize: 3, padding: 'valid', activation: 'relu' }));
      model.add(tf.layers.globalMaxPooling2d({}));
      model.add(tf.layers.dense({ units: 5 }));
      model.setWeights(
        model.getWeights().map((w, i) => tf.tensor(randomArray(w.size, 40 + i, 0.5), w.shape)),
      );
      const x = tf.tensor(randomArray(6 * 12 * 12 * 3, 50, 2), [6, 12, 12, 3]);
      const y = tf.oneHot(tf.tensor1d([0, 1, 2, 3, 4, 0], 'int32'), 5);
      const optimizer = tf.train.momentum(0.05, 0.9);
      for (let step = 0; step < 3; step++) {
        optimizer.minimize(() =>
          tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }) as tf.Tensor),
        );
      }
      const weights = await Promise.all(model.getWeights().map((w) => w.data() as Promise<Float32Array>));
      tf.dispose([x, y]);
      model.dispose();
      optimizer.dispose();
      return weights;
    };
    const a = await train();
    const b = await train();
    expect(a.length).toBe(b.length);
    a.forEach((w, i) => expect(sameBits(w, b[i]!), `weight ${i}`).toBe(true));
  });
});
