// MaxPoolGrad, BatchMatMul, broadcasting Equal, bias Add and the zero-copy Identity on wasm.
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { registerWasmTrainingKernels } from '../src/backends/wasm/kernels.js';
import { maxAbsDifference, randomArray } from './helpers/numeric.js';

interface PoolCase {
  shape: [number, number, number, number];
  size: number;
  stride: number;
  pad: 'same' | 'valid';
  relu: boolean;
}

async function poolGrad(backend: string, tc: PoolCase): Promise<Float32Array> {
  await tf.setBackend(backend);
  const n = tc.shape.reduce((a, b) => a * b, 1);
  const dx = tf.tidy(() => {
    let x: tf.Tensor4D = tf.tensor4d(randomArray(n, 5, 2), tc.shape);
    // After a ReLU many window values tie at 0: both backends must route the
    // gradient to the first maximum.
    if (tc.relu) x = tf.relu(x);
    const f = (a: tf.Tensor): tf.Scalar => {
      const y = tf.maxPool(a as tf.Tensor4D, tc.size, tc.stride, tc.pad);
      return tf.sum(tf.mul(y, tf.tensor(randomArray(y.size, 6), y.shape)));
    };
    return tf.grad(f)(x);
  });
  const data = (await dx.data()) as Float32Array;
  dx.dispose();
  return data;
}

describe('wasm MaxPoolGrad', () => {
  beforeAll(() => registerWasmTrainingKernels());
  const cases: PoolCase[] = [
    { shape: [3, 8, 8, 5], size: 2, stride: 2, pad: 'valid', relu: false },
    { shape: [3, 8, 8, 5], size: 2, stride: 2, pad: 'valid', relu: true },
    { shape: [2, 7, 9, 3], size: 2, stride: 2, pad: 'same', relu: false },
    { shape: [2, 7, 9, 3], size: 3, stride: 2, pad: 'same', relu: true },
    { shape: [2, 7, 9, 4], size: 3, stride: 1, pad: 'same', relu: false },
    { shape: [2, 7, 9, 4], size: 3, stride: 2, pad: 'valid', relu: false },
    // Channels a multiple of 4: four a vector (the others: one at a time).
    { shape: [3, 8, 8, 8], size: 2, stride: 2, pad: 'valid', relu: true },
    { shape: [2, 7, 9, 8], size: 3, stride: 2, pad: 'same', relu: false },
    { shape: [2, 7, 9, 12], size: 3, stride: 1, pad: 'same', relu: true },
  ];
  for (const tc of cases) {
    it(`${tc.shape.join('x')} pool ${tc.size} s${tc.stride} ${tc.pad}${tc.relu ? ' after relu' : ''}`, async () => {
      const ref = await poolGrad('cpu', tc);
      const got = await poolGrad('wasm', tc);
      expect(got.length).toBe(ref.length);
      expect(maxAbsDifference(got, ref)).toBeLessThan(1e-6);
    });
  }
});

describe('wasm Add of a per-channel bias', () => {
  beforeAll(() => registerWasmTrainingKernels());
  const cases: Array<{ x: number[]; bias: number[]; biasFirst: boolean }> = [
    { x: [64, 9, 9, 6], bias: [6], biasFirst: false },
    { x: [5, 7, 7, 3], bias: [1, 1, 1, 3], biasFirst: true },
    // 5 * 13 * 13 = 845 rows of 10: not a whole number of 20-float periods (a tail).
    { x: [5, 13, 13, 10], bias: [10], biasFirst: false },
    { x: [300, 16], bias: [16], biasFirst: true },
    { x: [4100, 1], bias: [1], biasFirst: false },
  ];
  for (const tc of cases) {
    it(`${tc.biasFirst ? 'bias + ' : ''}${tc.x.join('x')}${tc.biasFirst ? '' : ' + bias'} ${tc.bias.join('x')}`, async () => {
      const run = async (backend: string): Promise<Float32Array> => {
        await tf.setBackend(backend);
        const size = tc.x.reduce((a, b) => a * b, 1);
        const x = tf.tensor(randomArray(size, 7), tc.x);
        const bias = tf.tensor(
          randomArray(
            tc.bias.reduce((a, b) => a * b, 1),
            8,
          ),
          tc.bias,
        );
        const y = tc.biasFirst ? tf.add(bias, x) : tf.add(x, bias);
        expect(y.shape).toEqual(tc.x);
        const data = (await y.data()) as Float32Array;
        tf.dispose([x, bias, y]);
        return data;
      };
      const ref = await run('cpu');
      const got = await run('wasm');
      expect(Buffer.from(got.buffer).equals(Buffer.from(ref.buffer))).toBe(true);
    });
  }
});

describe('wasm Identity', () => {
  it('shares the buffer and keeps it alive until the last user is disposed', async () => {
    registerWasmTrainingKernels();
    await tf.setBackend('wasm');
    const before = tf.memory().numDataBuffers;
    const a = tf.tensor1d([1, 2, 3, 4]);
    const b = tf.clone(a);
    expect(tf.memory().numDataBuffers - before).toBe(1); // one buffer, two tensors
    a.dispose();
    expect(Array.from(await b.data())).toEqual([1, 2, 3, 4]);
    const c = tf.add(b, 1);
    expect(Array.from(await c.data())).toEqual([2, 3, 4, 5]);
    b.dispose();
    c.dispose();
    expect(tf.memory().numDataBuffers).toBe(before);
  });
});

describe('wasm Cast', () => {
  it('shares the buffer for a same-dtype cast and converts otherwise', async () => {
    registerWasmTrainingKernels();
    await tf.setBackend('wasm');
    const before = tf.memory().numDataBuffers;
    const a = tf.tensor1d([1.5, -2, 3, 0]);
    const b = tf.cast(a, 'float32');
    expect(tf.memory().numDataBuffers - before).toBe(1);
    a.dispose();
    expect(Array.from(await b.data())).toEqual([1.5, -2, 3, 0]);
    const i = tf.cast(b, 'int32');
    expect(i.dtype).toBe('int32');
    expect(Array.from(await i.data())).toEqual([1, -2, 3, 0]);
    const x = tf.tensor1d([-1, 2, 0, 3]);
    const r = tf.grad((t: tf.Tensor) => tf.sum(tf.relu(t)))(x);
    expect(Array.from(await r.data())).toEqual([0, 1, 0, 1]);
    tf.dispose([b, i, x, r]);
    expect(tf.memory().numDataBuffers).toBe(before);
  });
});

describe('wasm BatchMatMul', () => {
  const cases: Array<{ a: number[]; b: number[]; ta: boolean; tb: boolean }> = [
    { a: [5, 7], b: [7, 3], ta: false, tb: false },
    { a: [7, 5], b: [7, 3], ta: true, tb: false },
    { a: [5, 7], b: [3, 7], ta: false, tb: true },
    { a: [7, 5], b: [3, 7], ta: true, tb: true },
    { a: [33, 70], b: [70, 41], ta: false, tb: false },
    { a: [70, 33], b: [41, 70], ta: true, tb: true },
    // Batched: handed back to the stock kernel.
    { a: [2, 5, 7], b: [2, 7, 3], ta: false, tb: false },
    { a: [2, 7, 5], b: [2, 3, 7], ta: true, tb: true },
  ];
  async function matmul(backend: string, tc: (typeof cases)[number]): Promise<Float32Array> {
    await tf.setBackend(backend);
    const size = (s: number[]): number => s.reduce((p, d) => p * d, 1);
    const out = tf.tidy(() => {
      const a: tf.Tensor = tf.tensor(randomArray(size(tc.a), 7), tc.a);
      const b: tf.Tensor = tf.tensor(randomArray(size(tc.b), 8), tc.b);
      // matMul's typings say 2-D; it takes batched 3-D operands as well.
      return tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D, tc.ta, tc.tb);
    });
    const data = (await out.data()) as Float32Array;
    out.dispose();
    return data;
  }
  beforeAll(() => registerWasmTrainingKernels());
  for (const tc of cases) {
    it(`${tc.a.join('x')}${tc.ta ? 'ᵀ' : ''} * ${tc.b.join('x')}${tc.tb ? 'ᵀ' : ''}`, async () => {
      const ref = await matmul('cpu', tc);
      const got = await matmul('wasm', tc);
      expect(got.length).toBe(ref.length);
      expect(maxAbsDifference(got, ref)).toBeLessThan(1e-5);
    });
  }
});

describe('wasm Equal', () => {
  const cases: Array<{ a: number[]; b: number[]; dtype: 'float32' | 'int32' }> = [
    { a: [2, 3, 4, 5], b: [2, 1, 1, 5], dtype: 'float32' }, // max-pool gradient pattern
    { a: [2, 1, 1, 5], b: [2, 3, 4, 5], dtype: 'float32' },
    { a: [2, 3, 4, 5], b: [1, 3, 1, 1], dtype: 'int32' },
    { a: [3, 4], b: [3, 1], dtype: 'float32' },
    // Handed back to the stock kernel.
    { a: [2, 3, 4], b: [2, 3, 4], dtype: 'float32' },
    { a: [3, 4], b: [4], dtype: 'float32' },
    { a: [3, 1], b: [1, 4], dtype: 'float32' },
  ];
  async function equal(backend: string, tc: (typeof cases)[number]): Promise<Uint8Array> {
    await tf.setBackend(backend);
    const size = (s: number[]): number => s.reduce((p, d) => p * d, 1);
    // Few distinct values, so that many elements compare equal.
    const values = (n: number, seed: number): number[] =>
      Array.from(randomArray(n, seed), (v) => Math.round(v * 4));
    const out = tf.tidy(() =>
      tf.equal(
        tf.tensor(values(size(tc.a), 9), tc.a, tc.dtype),
        tf.tensor(values(size(tc.b), 10), tc.b, tc.dtype),
      ),
    );
    expect(out.dtype).toBe('bool');
    const data = (await out.data()) as Uint8Array;
    out.dispose();
    return data;
  }
  beforeAll(() => registerWasmTrainingKernels());
  for (const tc of cases) {
    it(`${tc.a.join('x')} == ${tc.b.join('x')} (${tc.dtype})`, async () => {
      const ref = await equal('cpu', tc);
      const got = await equal('wasm', tc);
      expect(Array.from(got)).toEqual(Array.from(ref));
    });
  }
});
