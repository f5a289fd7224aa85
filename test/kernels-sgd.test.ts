// The SGD update as one wasm SIMD call per variable (the SGD_UPDATE kernel, src/backends/wasm/sgd.ts)
// gives the same bits as the same update in tfjs ops, alone and over training steps of both models.
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { SGD_UPDATE } from '../src/backends/sgd.js';
import { registerWasmTrainingKernels } from '../src/backends/wasm/kernels.js';
import { buildModel, INPUT_SHAPE } from '../src/models/index.js';
import { Sgd, type SgdOptions } from '../src/training/sgd.js';
import { trainStep } from '../src/training/step.js';
import { randomArray, sameBits } from './helpers/numeric.js';

const SETTINGS: SgdOptions[] = [
  { momentum: 0.9, nesterov: true, weightDecay: 5e-4 },
  { momentum: 0.9, nesterov: false, weightDecay: 0 },
  { momentum: 0, nesterov: false, weightDecay: 1e-3 },
];

describe('fused wasm SGD', () => {
  beforeAll(async () => {
    registerWasmTrainingKernels();
    await tf.setBackend('wasm');
  });

  for (const settings of SETTINGS) {
    it(`matches the tfjs-ops update bit for bit (${JSON.stringify(settings)})`, async () => {
      const results: Float32Array[][] = [];
      for (const fused of [true, false]) {
        // 37 values: the four-wide loop and the one-by-one tail.
        const w = tf.variable(tf.tensor(randomArray(37, 1)));
        const opt = new Sgd([w], settings, fused);
        for (let step = 0; step < 3; step++) {
          const g = tf.tensor(randomArray(37, 10 + step));
          const { kernelNames } = await tf.profile(() => opt.step([g], 0.05));
          // The fused update is one kernel; the ops update never runs it.
          if (fused) expect(kernelNames).toEqual([SGD_UPDATE]);
          else expect(kernelNames).not.toContain(SGD_UPDATE);
          g.dispose();
        }
        const values = Float32Array.from(w.dataSync());
        const momentum = Float32Array.from(opt.state()[0]!.dataSync());
        opt.dispose();
        w.dispose();
        results.push([values, momentum]);
      }
      expect(sameBits(results[0]![0]!, results[1]![0]!)).toBe(true);
      expect(sameBits(results[0]![1]!, results[1]![1]!)).toBe(true);
    });
  }

  it('updates a momentum buffer that another tensor shares in a copy, leaving the sharer as it was', () => {
    const w = tf.variable(tf.tensor(randomArray(37, 1)));
    const opt = new Sgd([w], SETTINGS[0]!, true);
    const g = tf.tensor(randomArray(37, 10));
    opt.step([g], 0.05);
    // A clone shares the buffer's memory on wasm (Identity): the next update must not write there.
    const before = opt.state()[0]!.clone();
    const saved = Float32Array.from(before.dataSync());
    opt.step([g], 0.05);
    expect(sameBits(Float32Array.from(before.dataSync()), saved)).toBe(true);
    expect(sameBits(Float32Array.from(opt.state()[0]!.dataSync()), saved)).toBe(false);
    tf.dispose([before, g, w]);
    opt.dispose();
  });

  for (const name of ['net', 'vgg'] as const) {
    it(`trains ${name} to the same weights as the ops update`, async () => {
      const weights: Float32Array[][] = [];
      for (const fused of [true, false]) {
        const model = buildModel(name, { inputShape: INPUT_SHAPE, numClasses: 10, seed: 3 });
        const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
        const opt = new Sgd(variables, SETTINGS[0]!, fused);
        const x = randomArray(8 * 3072, 5);
        const y = Int32Array.from({ length: 8 }, (_, i) => i % 10);
        const learner = { model, variables, optimizer: opt, numClasses: 10, labelSmoothing: 0.2 };
        for (let step = 0; step < 3; step++) await trainStep(learner, { x, y, n: 8 }, 0.05);
        weights.push(model.getWeights().map((w) => Float32Array.from(w.dataSync())));
        opt.dispose();
        model.dispose();
      }
      weights[0]!.forEach((w, i) => expect(sameBits(w, weights[1]![i]!), `weight ${i}`).toBe(true));
    });
  }
});
