import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { ImageSet } from '../src/data/dataset.js';
import { loadDataset } from '../src/data/load.js';
import { Random } from '../src/data/random.js';
import { makeSyntheticDataset } from '../src/data/synthetic.js';
import { silentProgress } from '../src/reports/progress.js';

describe('Random', () => {
  it('is deterministic per seed and resumable from its state', () => {
    const a = new Random(42);
    const b = new Random(42);
    const first = Array.from({ length: 5 }, () => a.next());
    expect(Array.from({ length: 5 }, () => b.next())).toEqual(first);
    expect(new Random(43).next()).not.toBe(first[0]);

    const saved = a.state;
    const continued = [a.next(), a.int(10), a.normal()];
    const resumed = new Random(0);
    resumed.setState(saved);
    expect([resumed.next(), resumed.int(10), resumed.normal()]).toEqual(continued);
    expect(() => resumed.setState(-1)).toThrow(/uint32/);
  });

  it('draws in range, and shuffles arrays and typed arrays into permutations', () => {
    const r = new Random(1);
    const counts = new Array<number>(4).fill(0);
    for (let i = 0; i < 4000; i++) {
      const x = r.next();
      expect(x).toBeGreaterThanOrEqual(0);
      expect(x).toBeLessThan(1);
      counts[r.int(4)]!++;
    }
    for (const c of counts) expect(c).toBeGreaterThan(850);
    const list = Array.from({ length: 50 }, (_, i) => i);
    expect(r.shuffle(list)).toBe(list);
    expect([...list].sort((x, y) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(list).not.toEqual(Array.from({ length: 50 }, (_, i) => i));
    const typed = r.shuffle(Int32Array.from({ length: 20 }, (_, i) => i));
    expect(Array.from(typed).sort((x, y) => x - y)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    // Seeds above 2^32 still differ from their low bits alone.
    expect(new Random(2 ** 32 + 5).next()).not.toBe(new Random(5).next());
  });
});

/** Per-image mean colour: enough to separate the classes if the colours are distinct. */
function meanColours(set: ImageSet): number[][] {
  const size = set.height * set.width;
  return Array.from({ length: set.count }, (_, n) => {
    const sum = [0, 0, 0];
    for (let p = 0; p < size; p++) for (let k = 0; k < 3; k++) sum[k]! += set.images[(n * size + p) * 3 + k]!;
    return sum.map((s) => s / size);
  });
}

describe('makeSyntheticDataset', () => {
  it('is deterministic for a seed and different for another', () => {
    const a = makeSyntheticDataset({ seed: 5, trainCount: 200, testCount: 50 });
    const b = makeSyntheticDataset({ seed: 5, trainCount: 200, testCount: 50 });
    const c = makeSyntheticDataset({ seed: 6, trainCount: 200, testCount: 50 });
    expect(a.checksums).toEqual(b.checksums);
    expect(Buffer.compare(a.train.images, b.train.images)).toBe(0);
    expect(a.checksums.generated).not.toBe(c.checksums.generated);
    const expected = createHash('sha256')
      .update(a.train.images)
      .update(a.train.labels)
      .update(a.test.images)
      .update(a.test.labels)
      .digest('hex');
    expect(a.checksums.generated).toBe(expected);
  });

  it('has the promised shape, balanced labels and class names', () => {
    const d = makeSyntheticDataset({ seed: 1 });
    expect(d.kind).toBe('synthetic');
    expect(d.source).toBe('generated');
    expect(d.classNames).toEqual(Array.from({ length: 10 }, (_, c) => `class-${c}`));
    expect(d.train).toMatchObject({ count: 2000, height: 32, width: 32, channels: 3 });
    expect(d.test).toMatchObject({ count: 500, height: 32, width: 32, channels: 3 });
    expect(d.train.images.length).toBe(2000 * 32 * 32 * 3);
    const perClass = new Array<number>(10).fill(0);
    for (const l of d.train.labels) perClass[l]!++;
    expect(perClass).toEqual(new Array<number>(10).fill(200));
    // Images vary within a class (noise, phase), so it is not a lookup table.
    const size = 32 * 32 * 3;
    const [i, j] = [d.train.labels.indexOf(0), d.train.labels.indexOf(0, d.train.labels.indexOf(0) + 1)];
    const image = (n: number) => d.train.images.subarray(n * size, (n + 1) * size);
    expect(Buffer.compare(image(i), image(j))).not.toBe(0);
  });

  it('honours size and class count options', () => {
    const d = makeSyntheticDataset({
      seed: 2,
      trainCount: 30,
      testCount: 9,
      imageSize: { height: 12, width: 20 },
      numClasses: 3,
    });
    expect(d.train).toMatchObject({ count: 30, height: 12, width: 20 });
    expect(d.test.count).toBe(9);
    expect(Math.max(...d.train.labels)).toBe(2);
    expect(() => makeSyntheticDataset({ seed: 1, numClasses: 1 })).toThrow(/numClasses/);
  });

  it('is learnable: even nearest mean colour classifies most test images', () => {
    const d = makeSyntheticDataset({ seed: 3, trainCount: 1000, testCount: 300 });
    const train = meanColours(d.train);
    const centroids = Array.from({ length: 10 }, () => [0, 0, 0]);
    const counts = new Array<number>(10).fill(0);
    train.forEach((m, i) => {
      const c = d.train.labels[i]!;
      counts[c]!++;
      for (let k = 0; k < 3; k++) centroids[c]![k]! += m[k]!;
    });
    centroids.forEach((m, c) => m.forEach((_, k) => (m[k]! /= counts[c]!)));
    let correct = 0;
    meanColours(d.test).forEach((m, i) => {
      let best = 0;
      let bestDistance = Infinity;
      centroids.forEach((centre, c) => {
        const distance = centre.reduce((s, v, k) => s + (v - m[k]!) ** 2, 0);
        if (distance < bestDistance) [best, bestDistance] = [c, distance];
      });
      if (best === d.test.labels[i]) correct++;
    });
    expect(correct / d.test.count).toBeGreaterThan(0.8);
  });
});

describe('loadDataset', () => {
  const base = {
    cacheFolder: '/nonexistent',
    seed: 4,
    numWorkers: 1,
    progress: silentProgress,
    log: () => {},
  };

  it('makes the synthetic dataset at the requested size', async () => {
    const d = await loadDataset({ ...base, dataset: 'synthetic', imageSize: { height: 16, width: 16 } });
    expect(d.kind).toBe('synthetic');
    expect(d.train).toMatchObject({ height: 16, width: 16, channels: 3 });
    expect(d.checksums.generated).toBe(
      makeSyntheticDataset({ seed: 4, imageSize: { height: 16, width: 16 } }).checksums.generated,
    );
  });

  it('refuses CIFAR-10 at another image size', async () => {
    await expect(
      loadDataset({ ...base, dataset: 'cifar10', imageSize: { height: 64, width: 64 } }),
    ).rejects.toThrow(/32x32/);
  });
});
