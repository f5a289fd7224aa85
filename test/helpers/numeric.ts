// Shared by the kernel tests: seeded inputs and comparisons.
import { expect } from 'vitest';
import { Random } from '../../src/data/random.js';

/** Seeded uniform values in [-0.5, 0.5) * scale + offset: identical on every run. */
export function randomArray(n: number, seed: number, scale = 1, offset = 0): Float32Array {
  const random = new Random(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (random.next() - 0.5) * scale + offset;
  return out;
}

/** Largest absolute element-wise difference. */
export function maxAbsDifference(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!));
  return worst;
}

/** Max abs difference, relative to the reference's largest magnitude, below tol. */
export function expectClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  what: string,
  tol = 1e-4,
): void {
  expect(actual.length, what).toBe(expected.length);
  let scale = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]!));
  expect(maxAbsDifference(actual, expected) / Math.max(scale, 1e-6), what).toBeLessThan(tol);
}

export function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
    Buffer.from(b.buffer, b.byteOffset, b.byteLength),
  );
}

/** A convolution test case: NHWC input, f filters of k x k, stride and padding. */
export interface ConvCase {
  n: number;
  h: number;
  w: number;
  c: number;
  f: number;
  k: number;
  stride: number;
  pad: 'same' | 'valid' | number;
}
