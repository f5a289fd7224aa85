// A small seeded PRNG (mulberry32). Its whole state is one uint32, so a training checkpoint can save
// it as a plain number and resume the exact same sequence.

export class Random {
  private s: number;

  constructor(seed: number) {
    this.s = Random.mixSeed(seed);
  }

  /** Folds any finite number (also seeds above 2^32) into a uint32 start state. */
  private static mixSeed(seed: number): number {
    if (!Number.isFinite(seed)) throw new Error(`Random seed must be a finite number, got ${seed}`);
    const whole = Math.trunc(seed);
    const lo = whole >>> 0;
    const hi = Math.floor(whole / 2 ** 32) >>> 0;
    return (lo ^ Math.imul(hi, 0x9e3779b1)) >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    if (!(n > 0)) throw new Error(`Random.int needs n > 0, got ${n}`);
    return Math.floor(this.next() * n);
  }

  /** Uniform in [min, max). */
  uniform(min: number, max: number): number {
    return min + (max - min) * this.next();
  }

  /** Normal(mean, std) by Box-Muller; draws two uniforms and keeps no spare so `state` stays complete. */
  normal(mean = 0, std = 1): number {
    const u = 1 - this.next(); // (0, 1]: log(0) would be -Infinity
    const v = this.next();
    return mean + std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  /** Fisher-Yates shuffle in place; returns the same array. */
  shuffle<A extends { length: number; [index: number]: unknown }>(array: A): A {
    for (let i = array.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const tmp = array[i];
      array[i] = array[j];
      array[j] = tmp;
    }
    return array;
  }

  /** The complete generator state (a uint32), for checkpoints. */
  get state(): number {
    return this.s;
  }

  /** Restores a state read from `state`. */
  setState(state: number): void {
    if (!Number.isInteger(state) || state < 0 || state > 0xffffffff) {
      throw new Error(`Random state must be a uint32, got ${state}`);
    }
    this.s = state >>> 0;
  }
}
