// The threaded wasm build (registerThreadedWasmBackend) with our kernels:
// same gradients as the cpu backend, same bits as the single-threaded build.
import * as tf from '@tensorflow/tfjs';
import { getThreadsCount } from '@tensorflow/tfjs-backend-wasm';
import { afterAll, describe, expect, it } from 'vitest';
import { BatchNormNHWC } from '../src/models/layers/batch-norm.js';
import { convGradTuning } from '../src/backends/wasm/conv-grad.js';
import { maxPoolGradTuning } from '../src/backends/wasm/max-pool-grad.js';
import { registerThreadedWasmBackend } from '../src/backends/wasm/threads.js';
import { registerWasmTrainingKernels } from '../src/backends/wasm/kernels.js';
import { expectClose, randomArray } from './helpers/numeric.js';

/** Gradients of a conv + BatchNormNHWC + relu + pool + dense model, on the current backend. */
async function modelGrads(): Promise<Float32Array[]> {
  const model = tf.sequential();
  model.add(
    tf.layers.conv2d({ inputShape: [9, 9, 3], filters: 16, kernelSize: 3, padding: 'same', useBias: false }),
  );
  model.add(new BatchNormNHWC());
  model.add(tf.layers.reLU());
  model.add(tf.layers.maxPooling2d({ poolSize: 2 }));
  model.add(tf.layers.conv2d({ filters: 8, kernelSize: 3, strides: 2, padding: 'same' }));
  model.add(tf.layers.flatten());
  model.add(tf.layers.dense({ units: 4 }));
  model.setWeights(model.getWeights().map((w, i) => tf.tensor(randomArray(w.size, 60 + i, 0.5), w.shape)));
  const x = tf.tensor(randomArray(5 * 9 * 9 * 3, 70, 2), [5, 9, 9, 3]);
  const pattern = tf.tensor(randomArray(5 * 4, 71), [5, 4]);
  const { value, grads } = tf.variableGrads(
    () => tf.sum(tf.mul(model.apply(x, { training: true }) as tf.Tensor, pattern)) as tf.Scalar,
    model.trainableWeights.map((w) => (w as unknown as { val: tf.Variable }).val),
  );
  const out = await Promise.all(Object.values(grads).map((g) => g.data() as Promise<Float32Array>));
  tf.dispose([x, pattern, value, ...Object.values(grads)]);
  model.dispose();
  return out;
}

describe('threaded wasm backend', () => {
  afterAll(() => {
    // Ends the pthread workers.
    if (tf.engine().registryFactory['wasm'] !== undefined) tf.removeBackend('wasm');
  });

  it('trains with our kernels, matching cpu and the single-threaded build bit for bit', async () => {
    registerWasmTrainingKernels();
    await tf.setBackend('cpu');
    const ref = await modelGrads();
    await tf.setBackend('wasm');
    const single = await modelGrads();

    // Our filter gradient hands even these small jobs to its worker threads.
    convGradTuning.poolMinMacs = 0;
    maxPoolGradTuning.poolMinElements = 0;
    const threads = await registerThreadedWasmBackend({ threads: 2 });
    expect(threads).toBe(2);
    expect(await tf.setBackend('wasm')).toBe(true);
    expect(getThreadsCount()).toBe(2);
    const threaded = await modelGrads();
    const again = await modelGrads();

    expect(threaded.length).toBe(ref.length);
    for (let i = 0; i < ref.length; i++) {
      expectClose(threaded[i]!, ref[i]!, `grad ${i} vs cpu`);
      expect(
        Buffer.from(threaded[i]!.buffer).equals(Buffer.from(single[i]!.buffer)),
        `grad ${i} vs 1 thread`,
      ).toBe(true);
      expect(Buffer.from(threaded[i]!.buffer).equals(Buffer.from(again[i]!.buffer)), `grad ${i} rerun`).toBe(
        true,
      );
    }
  });
});
