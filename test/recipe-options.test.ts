// The recipe options beyond SGD and flips/shifts: --optimizer adamw, --cutout N and --color-jitter J.
// Each is seeded (the same seed, the same bits), off by default (the batches of a run without them are
// what they were: test/weights-regression.test.ts), and resumes to the same bytes.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { assembleBatch } from '../src/data/batches.js';
import type { ImageSet } from '../src/data/dataset.js';
import { Random } from '../src/data/random.js';
import { train, TrainingInterrupted, type RunConfigInput } from '../src/index.js';
import { AdamW } from '../src/training/adamw.js';
import { tempFolder } from './helpers/cli.js';

const W = 16;
const C = 3;
/** Four 16x16 images of a smooth colour gradient. */
const set: ImageSet = {
  images: Uint8Array.from({ length: 4 * W * W * C }, (_, i) => 40 + ((i * 7) % 180)),
  labels: new Uint8Array([0, 1, 2, 3]),
  count: 4,
  height: W,
  width: W,
  channels: C,
};
const norm = { mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] };
const order = [0, 1, 2, 3];

function batch(augmentation: Parameters<typeof assembleBatch>[5], seed = 1): Float32Array {
  const out = new Float32Array(4 * W * W * C);
  assembleBatch(set, order, 0, 4, norm, augmentation, new Random(seed), out, new Int32Array(4));
  return out;
}

describe('cutout and colour jitter', () => {
  it('cutout blanks one square (to the mean, 0) of at most N x N pixels in every image', () => {
    const plain = batch({ flip: false, crop: 0 });
    const cut = batch({ flip: false, crop: 0, cutout: 6 });
    for (let i = 0; i < 4; i++) {
      const blanked: Array<[number, number]> = [];
      for (let y = 0; y < W; y++)
        for (let x = 0; x < W; x++) {
          const o = ((i * W + y) * W + x) * C;
          if (cut[o] === 0 && plain[o] !== 0) blanked.push([x, y]);
          else expect(cut[o]).toBe(plain[o]);
        }
      const xs = blanked.map(([x]) => x);
      const ys = blanked.map(([, y]) => y);
      const width = Math.max(...xs) - Math.min(...xs) + 1;
      const height = Math.max(...ys) - Math.min(...ys) + 1;
      expect(blanked.length, `image ${i}`).toBe(width * height); // a filled rectangle
      expect(width).toBeLessThanOrEqual(6);
      expect(height).toBeLessThanOrEqual(6);
      expect(blanked.length).toBeGreaterThanOrEqual(9); // clipped at a corner at worst
    }
  });

  it('colour jitter changes the colours, is seeded, and 0 is off', () => {
    const plain = batch({ flip: false, crop: 0 });
    expect(batch({ flip: false, crop: 0, colorJitter: 0 })).toEqual(plain);
    const jittered = batch({ flip: false, crop: 0, colorJitter: 0.3 });
    expect(jittered).not.toEqual(plain);
    expect(batch({ flip: false, crop: 0, colorJitter: 0.3 })).toEqual(jittered);
    expect(batch({ flip: false, crop: 0, colorJitter: 0.3 }, 2)).not.toEqual(jittered);
    // Clipped to [0, 1] before normalising.
    // (With mean 0.5 and std 0.25: [-2, 2].)
    expect(Math.min(...jittered)).toBeGreaterThanOrEqual(-2 - 1e-6);
    expect(Math.max(...jittered)).toBeLessThanOrEqual(2 + 1e-6);
  });
});

describe('AdamW', () => {
  it("takes PyTorch's steps (decoupled weight decay, bias-corrected moments)", () => {
    tf.setBackend('cpu');
    const w = tf.variable(tf.tensor1d([0.5, -1, 2]));
    const opt = new AdamW([w], { weightDecay: 0.1 });
    const grads = [
      [0.1, -0.2, 0.3],
      [0.05, 0.4, -0.1],
      [-0.3, 0.1, 0.2],
    ];
    // The same arithmetic in float64, as torch.optim.AdamW(lr=0.01, weight_decay=0.1) does it.
    const ref = [0.5, -1, 2];
    const m = [0, 0, 0];
    const v = [0, 0, 0];
    grads.forEach((g, t) => {
      opt.step([tf.tensor1d(g)], 0.01);
      for (let i = 0; i < 3; i++) {
        ref[i] = ref[i]! * (1 - 0.01 * 0.1);
        m[i] = 0.9 * m[i]! + 0.1 * g[i]!;
        v[i] = 0.999 * v[i]! + 0.001 * g[i]! ** 2;
        const denominator = Math.sqrt(v[i]!) / Math.sqrt(1 - 0.999 ** (t + 1)) + 1e-8;
        ref[i] = ref[i]! - (0.01 / (1 - 0.9 ** (t + 1))) * (m[i]! / denominator);
      }
    });
    const got = w.dataSync();
    ref.forEach((r, i) => expect(got[i]).toBeCloseTo(r, 6));
    opt.dispose();
  });
});

describe('training with them', () => {
  const folder = tempFolder('ic-recipe-');
  const sha = (run: string) =>
    createHash('sha256')
      .update(readFileSync(join(folder, 'r', run, 'model/weights.bin')))
      .digest('hex');
  const input = (runName: string): RunConfigInput => ({
    experimentName: 'r',
    runName,
    experimentsFolder: folder,
    dataset: 'synthetic',
    model: 'net',
    epochs: 2,
    batchSize: 64,
    optimizer: 'adamw',
    learningRate: 0.002,
    cutout: 8,
    colorJitter: 0.2,
    backend: 'wasm',
    threads: 1,
  });

  it('learns, and an interrupted run resumes to the same bytes', async () => {
    const whole = await train(input('whole'));
    expect(whole.manifest.config).toMatchObject({ optimizer: 'adamw', cutout: 8, colorJitter: 0.2 });
    // Ten classes: chance is 10%.
    expect(whole.manifest.results.validationAccuracy).toBeGreaterThan(0.3);
    const controller = new AbortController();
    await expect(
      train(input('cut'), { signal: controller.signal, onEpoch: () => controller.abort() }),
    ).rejects.toThrow(TrainingInterrupted);
    await train(input('cut'), { resume: true });
    expect(sha('cut')).toBe(sha('whole'));
  }, 180_000);
});
