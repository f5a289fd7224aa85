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
  /** Side of the square blanked (to the mean) at a random place; 0: none. */
  cutout?: number;
  /** Brightness, contrast and saturation factors drawn from [1 - j, 1 + j]; 0: none. */
  colorJitter?: number;
}

export const NO_AUGMENTATION: Augmentation = { flip: false, crop: 0 };

export interface ImageAugmentation {
  flip: boolean;
  dx: number;
  dy: number;
  /** The cutout square's centre (output pixels), when there is one. */
  cutout?: { x: number; y: number };
  /** Brightness, contrast and saturation factors, when jittered. */
  jitter?: { brightness: number; contrast: number; saturation: number };
}

/**
 * One image's augmentation, drawn in a fixed order (flip, dx, dy, then the cutout's x and y, then
 * brightness, contrast and saturation), each only when it is on: the same seed gives the same batches,
 * and runs without cutout or jitter draw exactly what they drew before these existed.
 */
export function drawAugmentation(augmentation: Augmentation, random: Random): ImageAugmentation {
  const flip = augmentation.flip && random.next() < 0.5;
  const dx = augmentation.crop > 0 ? random.int(2 * augmentation.crop + 1) - augmentation.crop : 0;
  const dy = augmentation.crop > 0 ? random.int(2 * augmentation.crop + 1) - augmentation.crop : 0;
  const drawn: ImageAugmentation = { flip, dx, dy };
  if ((augmentation.cutout ?? 0) > 0) drawn.cutout = { x: random.next(), y: random.next() };
  const j = augmentation.colorJitter ?? 0;
  if (j > 0) {
    const factor = () => 1 - j + 2 * j * random.next();
    drawn.jitter = { brightness: factor(), contrast: factor(), saturation: factor() };
  }
  return drawn;
}

/** Whether the augmentation needs the CPU path (the GPU batch assembly does flips and shifts only). */
export function needsCpuAssembly(augmentation: Augmentation): boolean {
  return (augmentation.cutout ?? 0) > 0 || (augmentation.colorJitter ?? 0) > 0;
}

/**
 * Colour jitter of one image's pixels in [0, 1] (RGB, `c` channels), in place: brightness scales, contrast
 * pulls towards the image's mean grey, saturation towards each pixel's grey; clipped to [0, 1].
 */
function jitterColours(pixels: Float32Array, c: number, jitter: NonNullable<ImageAugmentation['jitter']>): void {
  const grey = (p: number) =>
    c === 3 ? 0.299 * pixels[p]! + 0.587 * pixels[p + 1]! + 0.114 * pixels[p + 2]! : pixels[p]!;
  let mean = 0;
  for (let p = 0; p < pixels.length; p += c) mean += grey(p);
  mean = (mean / (pixels.length / c)) * jitter.brightness;
  for (let p = 0; p < pixels.length; p += c) {
    for (let k = 0; k < c; k++) pixels[p + k]! *= jitter.brightness;
    for (let k = 0; k < c; k++) pixels[p + k] = mean + (pixels[p + k]! - mean) * jitter.contrast;
    const g = grey(p);
    for (let k = 0; k < c; k++) {
      const v = g + (pixels[p + k]! - g) * jitter.saturation;
      pixels[p + k] = v < 0 ? 0 : v > 1 ? 1 : v;
    }
  }
}

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
  const lut = normalizationTable(norm, c);
  const augment =
    random !== undefined && (augmentation.flip || augmentation.crop > 0 || needsCpuAssembly(augmentation));
  for (let i = 0; i < count; i++) {
    const index = order[start + i]!;
    labels[i] = set.labels[index]!;
    const src = index * size;
    const dst = i * size;
    if (!augment) {
      for (let p = 0; p < size; p += c) {
        for (let k = 0; k < c; k++) out[dst + p + k] = lut[(k << 8) | images[src + p + k]!]!;
      }
      continue;
    }
    const drawn = drawAugmentation(augmentation, random);
    const { flip, dx, dy } = drawn;
    // Colour jitter works on the whole image before it is shifted: its pixels in [0, 1], jittered,
    // then normalised (the lookup table's job for the others).
    let jittered: Float32Array | undefined;
    if (drawn.jitter) {
      jittered = new Float32Array(size);
      for (let p = 0; p < size; p++) jittered[p] = images[src + p]! / 255;
      jitterColours(jittered, c, drawn.jitter);
      for (let p = 0; p < size; p++) jittered[p] = (jittered[p]! - norm.mean[p % c]!) / norm.std[p % c]!;
    }
    // Output columns whose source column (x + dx, mirrored when flipped) lies inside the image; the
    // rest, and rows shifted out, are the mean (0 after normalising).
    const x0 = flip ? Math.max(0, dx) : Math.max(0, -dx);
    const x1 = flip ? Math.min(w, w + dx) : Math.min(w, w - dx);
    out.fill(0, dst, dst + size);
    for (let y = Math.max(0, -dy); y < Math.min(h, h - dy); y++) {
      const row = src + (y + dy) * w * c;
      for (let x = x0; x < x1; x++) {
        const o = dst + (y * w + x) * c;
        const s = row + ((flip ? w - 1 - x : x) + dx) * c;
        for (let k = 0; k < c; k++)
          out[o + k] = jittered ? jittered[s - src + k]! : lut[(k << 8) | images[s + k]!]!;
      }
    }
    if (drawn.cutout) {
      // A square of the mean (0) centred anywhere in the image, clipped at its edges (DeVries & Taylor).
      const side = augmentation.cutout!;
      const cx = Math.floor(drawn.cutout.x * w) - (side >> 1);
      const cy = Math.floor(drawn.cutout.y * h) - (side >> 1);
      for (let y = Math.max(0, cy); y < Math.min(h, cy + side); y++)
        out.fill(0, dst + (y * w + Math.max(0, cx)) * c, dst + (y * w + Math.min(w, cx + side)) * c);
    }
  }
}

/**
 * What the GPU needs to assemble the batch assembleBatch would (src/backends/webgpu/batches.ts): per
 * image its index, flip (0/1), dx and dy, `perImage` numbers apart in `params`, drawn from `random`
 * exactly as assembleBatch draws them; and the labels.
 */
export function batchParams(
  set: ImageSet,
  order: ArrayLike<number>,
  start: number,
  count: number,
  augmentation: Augmentation,
  random: Random | undefined,
  params: Int32Array,
  perImage: number,
  labels: Int32Array,
): void {
  const augment = random !== undefined && (augmentation.flip || augmentation.crop > 0);
  for (let i = 0; i < count; i++) {
    const index = order[start + i]!;
    labels[i] = set.labels[index]!;
    const { flip, dx, dy } = augment ? drawAugmentation(augmentation, random) : { flip: false, dx: 0, dy: 0 };
    params[i * perImage] = index;
    params[i * perImage + 1] = flip ? 1 : 0;
    params[i * perImage + 2] = dx;
    params[i * perImage + 3] = dy;
  }
}

/**
 * The normalised value of every uint8 level, per channel (`lut[(k << 8) | v]`): one lookup per pixel
 * instead of a multiply-add, the same float32 values. Cached for the last normalisation seen.
 */
let cachedTable: { norm: Normalization; channels: number; table: Float32Array } | undefined;
export function normalizationTable(norm: Normalization, channels: number): Float32Array {
  if (cachedTable?.norm === norm && cachedTable.channels === channels) return cachedTable.table;
  const table = new Float32Array(channels << 8);
  for (let k = 0; k < channels; k++) {
    const scale = 1 / (255 * norm.std[k]!);
    const offset = -norm.mean[k]! / norm.std[k]!;
    for (let v = 0; v < 256; v++) table[(k << 8) | v] = v * scale + offset;
  }
  cachedTable = { norm, channels, table };
  return table;
}
