// The SGD update as one wasm SIMD call per variable (src/backends/wasm-sgd.ts) gives the same bits
// as the same update in tfjs ops, alone and over training steps of both models.
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { wasmSgdStep } from '../src/backends/wasm-sgd.js';
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
    it(`matches the tfjs-ops update bit for bit (${JSON.stringify(settings)})`, () => {
      const results = [true, false].map((fused) => {
        // 37 values: the four-wide loop and the one-by-one tail.
        const w = tf.variable(tf.tensor(randomArray(37, 1)));
        const opt = new Sgd([w], settings, fused);
        for (let step = 0; step < 3; step++) {
          const g = tf.tensor(randomArray(37, 10 + step));
          if (fused) expect(wasmSgdStep([w], [g], opt.state(), settings, 0.05)).toBe(true);
          else opt.step([g], 0.05);
          g.dispose();
        }
        const values = Float32Array.from(w.dataSync());
        const momentum = Float32Array.from(opt.state()[0]!.dataSync());
        opt.dispose();
        w.dispose();
        return [values, momentum];
      });
      expect(sameBits(results[0]![0]!, results[1]![0]!)).toBe(true);
      expect(sameBits(results[0]![1]!, results[1]![1]!)).toBe(true);
    });
  }

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
