// The native backend's kernels (our Node-API addon: convolutions and matrix products with AVX2/AVX-512
// fused multiply-adds) against the cpu backend, and their determinism: the same bits for 1 and 2
// threads and for the AVX2 and AVX-512 builds. Skipped where the addon was not built (no compiler at
// install time); `.ci/run` builds it.
import { existsSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { batchNormTraining } from '../src/backends/batch-norm.js';
import { NATIVE_ADDON_PATH, loadNativeAddon, type NativeAddon } from '../src/backends/native/addon.js';
import { registerNativeKernels } from '../src/backends/native/kernels.js';
import { registerWasmTrainingKernels } from '../src/backends/wasm/kernels.js';
import { expectClose, randomArray, sameBits, type ConvCase as BaseConvCase } from './helpers/numeric.js';

const built = existsSync(NATIVE_ADDON_PATH);

interface ConvCase extends BaseConvCase {
  pad: 'same' | 'valid';
  activation: 'relu' | 'linear';
}

/** y, dx, dw, dbias of sum(fusedConv(x, w, bias) * pattern): forward, both gradients, the bias add. */
async function convResults(backend: string, tc: ConvCase): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  const results = tf.tidy(() => {
    const x = tf.tensor4d(randomArray(tc.n * tc.h * tc.w * tc.c, 1), [tc.n, tc.h, tc.w, tc.c]);
    const w = tf.tensor4d(randomArray(tc.k * tc.k * tc.c * tc.f, 2), [tc.k, tc.k, tc.c, tc.f]);
    const bias = tf.tensor1d(randomArray(tc.f, 3));
    const conv = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor): tf.Tensor =>
      tf.fused.conv2d({
        x: a as tf.Tensor4D,
        filter: b as tf.Tensor4D,
        strides: tc.stride,
        pad: tc.pad,
        bias: c,
        activation: tc.activation,
      });
    const y = conv(x, w, bias);
    const pattern = tf.tensor(randomArray(y.size, 4), y.shape);
    const grads = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
      tf.sum(tf.mul(conv(a, b, c), pattern)),
    )([x, w, bias]);
    return [y, ...grads];
  });
  const out = await Promise.all(results.map(async (t) => (await t.data()) as Float32Array));
  tf.dispose(results);
  return out;
}

/** a·b with every transpose combination we serve, plus a dense layer (bias + ReLU). */
async function matMulResults(backend: string, m: number, k: number, n: number): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  const results = tf.tidy(() => {
    const a = tf.tensor2d(randomArray(m * k, 5), [m, k]);
    const b = tf.tensor2d(randomArray(k * n, 6), [k, n]);
    const aT = tf.tensor2d(randomArray(m * k, 5), [k, m]);
    const bT = tf.tensor2d(randomArray(k * n, 6), [n, k]);
    const bias = tf.tensor1d(randomArray(n, 7));
    return [
      tf.matMul(a, b),
      tf.matMul(a, bT, false, true),
      tf.matMul(aT, b, true, false),
      tf.fused.matMul({ a, b, bias, activation: 'relu' }),
    ];
  });
  const out = await Promise.all(results.map(async (t) => (await t.data()) as Float32Array));
  tf.dispose(results);
  return out;
}

/** y, mean, variance, dx, dgamma, dbeta of batchNormTraining (the fused kernels on wasm/native). */
async function batchNormResults(backend: string, shape: number[]): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  const size = shape.reduce((a, b) => a * b, 1);
  const c = shape[shape.length - 1]!;
  const results = tf.tidy(() => {
    // A non-zero mean per channel, so centring matters.
    const x = tf.tensor(randomArray(size, 11, 4, 1.5), shape);
    const gamma = tf.tensor1d(randomArray(c, 12, 1, 1));
    const beta = tf.tensor1d(randomArray(c, 13));
    const pattern = tf.tensor(randomArray(size, 14), shape);
    const bn = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) =>
      batchNormTraining(a, g as tf.Tensor1D, b as tf.Tensor1D);
    const { y, mean, variance } = bn(x, gamma, beta);
    const grads = tf.grads((a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) =>
      tf.sum(tf.mul(bn(a, g, b).y, pattern)),
    )([x, gamma, beta]);
    return [y, mean, variance, ...grads];
  });
  const out = await Promise.all(results.map(async (t) => (await t.data()) as Float32Array));
  tf.dispose(results);
  return out;
}

/** relu(x) and the gradient of sum(relu(x) * pattern), x with exact zeros. */
async function reluResults(backend: string, n: number): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  const results = tf.tidy(() => {
    const x = tf.tensor1d(randomArray(n, 15).map((v, i) => (i % 7 === 0 ? 0 : v)));
    const pattern = tf.tensor1d(randomArray(n, 16));
    return [tf.relu(x), tf.grad((a: tf.Tensor) => tf.sum(tf.mul(tf.relu(a), pattern)))(x)];
  });
  const out = await Promise.all(results.map(async (t) => (await t.data()) as Float32Array));
  tf.dispose(results);
  return out;
}

/** maxPool(x) and the gradient of sum(maxPool(x) * pattern); x with ties (values on a coarse grid). */
async function poolResults(
  backend: string,
  shape: [number, number, number, number],
  size: number,
  stride: number,
  pad: 'same' | 'valid',
): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  const n = shape.reduce((a, b) => a * b, 1);
  const results = tf.tidy(() => {
    const x = tf.tensor4d(
      // + 0: no negative zeros, whose ordering against +0 the kernels may resolve differently.
      randomArray(n, 17).map((v) => Math.round(v * 8) / 8 + 0),
      shape,
    );
    const pool = (a: tf.Tensor): tf.Tensor => tf.maxPool(a as tf.Tensor4D, size, stride, pad);
    const y = pool(x);
    const pattern = tf.tensor(randomArray(y.size, 18), y.shape);
    return [y, tf.grad((a: tf.Tensor) => tf.sum(tf.mul(pool(a), pattern)))(x)];
  });
  const out = await Promise.all(results.map(async (t) => (await t.data()) as Float32Array));
  tf.dispose(results);
  return out;
}

const convCases: ConvCase[] = [];
for (const k of [1, 3, 5]) {
  for (const stride of [1, 2]) {
    for (const pad of ['same', 'valid'] as const) {
      // Odd sizes; channel counts below, at and above one vector; filters not a multiple of 16.
      convCases.push({ n: 3, h: 9, w: 7, c: 8, f: 16, k, stride, pad, activation: 'relu' });
      convCases.push({ n: 3, h: 9, w: 7, c: 16, f: 17, k, stride, pad, activation: 'relu' });
      convCases.push({ n: 2, h: 7, w: 11, c: 13, f: 20, k, stride, pad, activation: 'linear' });
      convCases.push({ n: 2, h: 8, w: 8, c: 32, f: 48, k, stride, pad, activation: 'relu' });
    }
  }
}
// net's layers: an RGB 5x5 'valid' layer (row mode: a kernel row as one tap of 15 channels) and a
// 6-channel one, whose input gradient stays on the wasm kernels (backpropInputFits).
convCases.push({ n: 2, h: 32, w: 32, c: 3, f: 6, k: 5, stride: 1, pad: 'valid', activation: 'relu' });
convCases.push({ n: 2, h: 14, w: 14, c: 6, f: 16, k: 5, stride: 1, pad: 'valid', activation: 'relu' });
convCases.push({ n: 2, h: 9, w: 9, c: 3, f: 16, k: 3, stride: 1, pad: 'same', activation: 'relu' });

const big: ConvCase = { n: 4, h: 16, w: 16, c: 32, f: 64, k: 3, stride: 1, pad: 'same', activation: 'relu' };

describe.skipIf(!built)('native kernels', () => {
  let addon: NativeAddon;
  const useNative = (threads: number): void => registerNativeKernels({ addon, threads });

  beforeAll(async () => {
    // Quiets tfjs's advice to install tfjs-node when the cpu backend starts.
    tf.env().set('PROD', true);
    addon = loadNativeAddon().addon;
    await import('@tensorflow/tfjs-backend-wasm');
    useNative(2);
  });
  afterAll(() => {
    addon.useIsa(-1);
    registerWasmTrainingKernels();
  });

  it.each(convCases)(
    'conv $k x $k, stride $stride, $pad, c=$c f=$f, $activation: matches cpu',
    async (tc) => {
      const expected = await convResults('cpu', tc);
      const actual = await convResults('wasm', tc);
      for (const [i, what] of ['y', 'dx', 'dw', 'dbias'].entries())
        expectClose(actual[i]!, expected[i]!, what);
    },
  );

  it.each([
    [7, 13, 20],
    [64, 400, 120],
    [1, 5, 1],
  ])('matMul %i x %i x %i, all transposes and bias + ReLU: matches cpu', async (m, k, n) => {
    const expected = await matMulResults('cpu', m, k, n);
    const actual = await matMulResults('wasm', m, k, n);
    for (const [i, what] of ['ab', 'ab^T', 'a^Tb', 'relu(ab + bias)'].entries())
      expectClose(actual[i]!, expected[i]!, what);
  });

  it.each([[[3, 7, 9, 5]], [[4, 8, 8, 32]], [[2, 5, 5, 130]]])(
    'batch norm %j: forward and gradients match cpu',
    async (shape) => {
      const expected = await batchNormResults('cpu', shape);
      const actual = await batchNormResults('wasm', shape);
      for (const [i, what] of ['y', 'mean', 'variance', 'dx', 'dgamma', 'dbeta'].entries())
        expectClose(actual[i]!, expected[i]!, what);
    },
  );

  it.each([[1000], [300_001]])('relu of %i values and its gradient: the same bits as cpu', async (n) => {
    const expected = await reluResults('cpu', n);
    const actual = await reluResults('wasm', n);
    for (const [i, r] of actual.entries()) expect(sameBits(r, expected[i]!), `result ${i}`).toBe(true);
  });

  it.each([
    [[2, 8, 8, 32], 2, 2, 'valid'],
    [[3, 28, 28, 6], 2, 2, 'valid'],
    [[2, 9, 7, 17], 2, 2, 'valid'],
    [[2, 9, 7, 17], 3, 2, 'same'],
    [[2, 7, 7, 20], 3, 1, 'valid'],
  ] as const)('max pool %j, window %i, stride %i, %s: forward and gradient match cpu', async (...tc) => {
    const [shape, size, stride, pad] = tc;
    const expected = await poolResults('cpu', [...shape], size, stride, pad);
    const actual = await poolResults('wasm', [...shape], size, stride, pad);
    expect(sameBits(actual[0]!, expected[0]!), 'y').toBe(true);
    expectClose(actual[1]!, expected[1]!, 'dx');
  });

  it('refuses a call with another number of arguments, naming the function', () => {
    const heap = new Uint8Array(64);
    // Cast: calls the typed interface forbids, as a mistaken caller would make them.
    const untyped = addon as unknown as Record<string, (...args: unknown[]) => unknown>;
    for (const name of Object.keys(addon)) {
      const call = (): unknown => untyped[name]!(heap, ...new Array<number>(30).fill(0));
      expect(call, name).toThrow(TypeError);
      expect(call, name).toThrow(`image-classifier native: ${name}: takes`);
    }
    expect(() => untyped['relu']!(heap, 0, 0, 0)).toThrow(
      'image-classifier native: relu: takes 5 arguments, got 4',
    );
    expect(() => untyped['useIsa']!()).toThrow(TypeError);
  });

  it('runs a VGG-like layer and a dense layer on the addon, not on the fallbacks', async () => {
    const calls: Record<string, number> = {};
    const counting = Object.fromEntries(
      Object.entries(addon).map(([name, fn]: [string, (...args: unknown[]) => unknown]) => [
        name,
        (...args: unknown[]) => {
          calls[name] = (calls[name] ?? 0) + 1;
          return fn(...args);
        },
      ]),
    ) as unknown as NativeAddon;
    registerNativeKernels({ addon: counting, threads: 2 });
    try {
      await convResults('wasm', big);
      await matMulResults('wasm', 64, 400, 120);
      await batchNormResults('wasm', [4, 8, 8, 32]);
      await reluResults('wasm', 1000);
      await poolResults('wasm', [2, 8, 8, 32], 2, 2, 'valid');
    } finally {
      useNative(2);
    }
    expect(calls).toEqual({
      convForward: 2,
      convBackpropInput: 1,
      convBackpropFilter: 1,
      matMul: 4,
      // batchNormResults runs the forward pass twice (once under tf.grads).
      bnStats: 2,
      bnApply: 2,
      bnGradStats: 1,
      bnGradApply: 1,
      // reluResults runs relu twice and its gradient once; the convolution's ReLU under tf.grads
      // is not fused into it (tfjs fuses activations only outside gradients).
      relu: 3,
      reluGrad: 2,
      // poolResults pools twice and takes the gradient once.
      maxPool: 2,
      maxPoolGrad: 1,
    });
  });

  // Large enough for the kernels to use both threads (small ones run on one).
  const all = async (): Promise<Float32Array[]> => [
    ...(await convResults('wasm', big)),
    ...(await matMulResults('wasm', 256, 400, 120)),
    ...(await batchNormResults('wasm', [64, 32, 32, 32])),
    ...(await reluResults('wasm', 300_001)),
    ...(await poolResults('wasm', [64, 32, 32, 32], 2, 2, 'valid')),
  ];

  it('gives the same bits with 1 and 2 threads', async () => {
    useNative(1);
    const one = await all();
    useNative(2);
    const two = await all();
    for (const [i, r] of one.entries()) expect(sameBits(r, two[i]!), `result ${i}`).toBe(true);
  });

  it('gives the same bits with AVX2 and AVX-512', async (ctx) => {
    if (addon.isa() < 2) ctx.skip();
    expect(addon.useIsa(1)).toBe(1);
    const avx2 = await all();
    expect(addon.useIsa(2)).toBe(2);
    const avx512 = await all();
    for (const [i, r] of avx2.entries()) expect(sameBits(r, avx512[i]!), `result ${i}`).toBe(true);
  });
});
