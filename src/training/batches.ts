// Batch assembly: uint8 images -> normalised float32, with the random flip and translation done in
// the same pass. Doing it in one loop over a reused buffer keeps it to a few ms per 256-image batch,
// and full CIFAR-10 stays in memory as uint8.
import type { ImageSet } from '../data/dataset.js';
import type { Random } from '../data/random.js';

/** Per-channel mean and standard deviation of pixel values scaled to [0, 1]. */
export interface Normalization {
  mean: number[];
  std: number[];
}

export function channelStatistics(set: ImageSet): Normalization {
  const c = set.channels;
  const sum = new Float64Array(c);
  const sumSq = new Float64Array(c);
  const { images } = set;
  for (let i = 0; i < images.length; i++) {
    const v = images[i]! / 255;
    sum[i % c]! += v;
    sumSq[i % c]! += v * v;
  }
  const n = images.length / c;
  const mean = Array.from(sum, (s) => s / n);
  const std = Array.from(sumSq, (s, k) => Math.sqrt(Math.max(s / n - mean[k]! ** 2, 1e-12)));
  return { mean, std };
}

export interface Augmentation {
  flip: boolean;
  /** Maximum translation in pixels; the uncovered border is filled with the mean (0 after normalising). */
  crop: number;
}

export const NO_AUGMENTATION: Augmentation = { flip: false, crop: 0 };

/**
 * Writes images `order[start..start+count)` of `set` into `out` (NHWC float32) and their labels into
 * `labels`. `random` draws the augmentation; it is consumed in a fixed order (per image: flip, dx, dy)
 * so the same seed gives the same batches.
 */
export function assembleBatch(
  set: ImageSet,
  order: ArrayLike<number>,
  start: number,
  count: number,
  norm: Normalization,
  augmentation: Augmentation,
  random: Random | undefined,
  out: Float32Array,
  labels: Int32Array,
): void {
  const { height: h, width: w, channels: c, images } = set;
  const size = h * w * c;
  const scale = norm.std.map((s) => 1 / (255 * s));
  const offset = norm.mean.map((m, k) => -m / norm.std[k]!);
  const augment = random !== undefined && (augmentation.flip || augmentation.crop > 0);
  for (let i = 0; i < count; i++) {
    const index = order[start + i]!;
    labels[i] = set.labels[index]!;
    const src = index * size;
    const dst = i * size;
    if (!augment) {
      for (let p = 0; p < size; p += c) {
        for (let k = 0; k < c; k++) out[dst + p + k] = images[src + p + k]! * scale[k]! + offset[k]!;
      }
      continue;
    }
    const flip = augmentation.flip && random.next() < 0.5;
    const dx = augmentation.crop > 0 ? random.int(2 * augmentation.crop + 1) - augmentation.crop : 0;
    const dy = augmentation.crop > 0 ? random.int(2 * augmentation.crop + 1) - augmentation.crop : 0;
    for (let y = 0; y < h; y++) {
      const sy = y + dy;
      for (let x = 0; x < w; x++) {
        const o = dst + (y * w + x) * c;
        const sx = (flip ? w - 1 - x : x) + dx;
        if (sy < 0 || sy >= h || sx < 0 || sx >= w) {
          for (let k = 0; k < c; k++) out[o + k] = 0;
        } else {
          const s = src + (sy * w + sx) * c;
          for (let k = 0; k < c; k++) out[o + k] = images[s + k]! * scale[k]! + offset[k]!;
        }
      }
    }
  }
}
