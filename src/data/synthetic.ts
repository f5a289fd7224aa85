// A generated, easily learnable dataset for smoke tests and demos without downloads: each class is
// a stripe pattern with its own angle and colour, varied per image by frequency, phase, contrast,
// background, colour jitter and pixel noise, all from one seed.
import { createHash } from 'node:crypto';
import type { Dataset, ImageSet } from './dataset.js';
import { Random } from './random.js';

export interface SyntheticOptions {
  trainCount?: number;
  testCount?: number;
  imageSize?: { height: number; width: number };
  numClasses?: number;
  seed: number;
}

const CHANNELS = 3;

/** Fully saturated-ish colour for hue in [0, 1). */
function hueToRgb(hue: number): [number, number, number] {
  const h = hue * 6;
  const x = 1 - Math.abs((h % 2) - 1);
  const [r, g, b] =
    h < 1 ? [1, x, 0] : h < 2 ? [x, 1, 0] : h < 3 ? [0, 1, x] : h < 4 ? [0, x, 1] : h < 5 ? [x, 0, 1] : [1, 0, x];
  const low = 40; // keep colours bright but away from pure 0 so jitter and noise are symmetric
  return [low + (235 - low) * r, low + (235 - low) * g, low + (235 - low) * b];
}

function generate(count: number, height: number, width: number, numClasses: number, random: Random): ImageSet {
  const images = new Uint8Array(count * height * width * CHANNELS);
  // Balanced classes in shuffled order.
  const labels = random.shuffle(Uint8Array.from({ length: count }, (_, i) => i % numClasses));
  let o = 0;
  for (let n = 0; n < count; n++) {
    const c = labels[n]!;
    const angle = (Math.PI * c) / numClasses + random.uniform(-0.08, 0.08);
    const dx = Math.cos(angle);
    const dy = Math.sin(angle);
    const frequency = random.uniform(0.1, 0.2) * 2 * Math.PI; // radians per pixel
    const phase = random.uniform(0, 2 * Math.PI); // the random offset of the stripes
    const contrast = random.uniform(0.6, 1);
    const fg = hueToRgb(c / numClasses).map((v) => v + random.uniform(-25, 25));
    const grey = random.uniform(10, 90);
    const bg = [0, 1, 2].map(() => grey + random.uniform(-10, 10));
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const s = 0.5 + 0.5 * contrast * Math.sin(frequency * (x * dx + y * dy) + phase);
        for (let k = 0; k < CHANNELS; k++) {
          // Uint8Array wraps out-of-range values instead of clamping them.
          const v = bg[k]! * (1 - s) + fg[k]! * s + random.normal(0, 12);
          images[o++] = v < 0 ? 0 : v > 255 ? 255 : Math.round(v);
        }
      }
    }
  }
  return { images, labels, count, height, width, channels: CHANNELS };
}

/** Deterministic for a given seed and options. */
export function makeSyntheticDataset(options: SyntheticOptions): Dataset {
  const { trainCount = 2000, testCount = 500, imageSize = { height: 32, width: 32 }, numClasses = 10, seed } = options;
  if (!Number.isInteger(numClasses) || numClasses < 2 || numClasses > 256) {
    throw new Error(`Synthetic numClasses must be an integer in 2..256, got ${numClasses}`);
  }
  for (const [name, value] of [
    ['trainCount', trainCount],
    ['testCount', testCount],
    ['height', imageSize.height],
    ['width', imageSize.width],
  ] as const) {
    if (!Number.isInteger(value) || value < 1) throw new Error(`Synthetic ${name} must be a positive integer, got ${value}`);
  }
  const random = new Random(seed);
  const train = generate(trainCount, imageSize.height, imageSize.width, numClasses, random);
  const test = generate(testCount, imageSize.height, imageSize.width, numClasses, random);
  const generated = createHash('sha256')
    .update(train.images)
    .update(train.labels)
    .update(test.images)
    .update(test.labels)
    .digest('hex');
  return {
    kind: 'synthetic',
    classNames: Array.from({ length: numClasses }, (_, c) => `class-${c}`),
    train,
    test,
    source: 'generated',
    checksums: { generated },
  };
}
