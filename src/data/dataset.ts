// The in-memory form every data source produces: images stay uint8 (NHWC) so full CIFAR-10 is
// 150 MB, not 600 MB of float32; batches are normalised as they are assembled.
import { ConfigError } from '../errors.js';
import { Random } from './random.js';

export interface ImageSet {
  /** count * height * width * channels bytes, NHWC, RGB. */
  images: Uint8Array;
  /** One class index per image. */
  labels: Uint8Array;
  count: number;
  height: number;
  width: number;
  channels: number;
}

export interface Dataset {
  /** 'cifar10', 'image-folder' or 'synthetic'. */
  kind: string;
  classNames: string[];
  train: ImageSet;
  /** The split the final metrics (metrics.png, metrics.json) are measured on. */
  test: ImageSet;
  /** Where it came from, for the manifest: a folder, a URL, or 'generated'. */
  source: string;
  /** sha256 of each file the data was read from (relative name -> hex), or of the decoded data. */
  checksums: Record<string, string>;
}

/** Copies the images at `indices` of `set` into a new ImageSet (used for splits and subsets). */
export function selectImages(set: ImageSet, indices: ArrayLike<number>): ImageSet {
  const size = set.height * set.width * set.channels;
  const images = new Uint8Array(indices.length * size);
  const labels = new Uint8Array(indices.length);
  for (let i = 0; i < indices.length; i++) {
    const from = indices[i]!;
    images.set(set.images.subarray(from * size, (from + 1) * size), i * size);
    labels[i] = set.labels[from]!;
  }
  return { images, labels, count: indices.length, height: set.height, width: set.width, channels: set.channels };
}

/**
 * Holds out a seeded random `fraction` of the training images for validation (round(count * fraction)
 * of them, as before), stratified: each class gives its share, rounded by largest remainder (ties: the
 * lower class), so a rare class is validated on as often as it is trained on, and the validation
 * accuracy does not depend on which classes the draw favoured.
 */
export function splitValidation(
  set: ImageSet,
  fraction: number,
  seed: number,
): { train: ImageSet; validation?: ImageSet } {
  const total = Math.round(set.count * fraction);
  if (total === 0) return { train: set };
  const byClass: number[][] = [];
  for (let i = 0; i < set.count; i++) (byClass[set.labels[i]!] ??= []).push(i);
  const classes = [...byClass.keys()].filter((c) => byClass[c] !== undefined);
  const quota = new Map(classes.map((c) => [c, byClass[c]!.length * fraction]));
  const share = new Map(classes.map((c) => [c, Math.floor(quota.get(c)!)]));
  const left = total - [...share.values()].reduce((a, b) => a + b, 0);
  const byRemainder = [...classes].sort(
    (a, b) => quota.get(b)! - share.get(b)! - (quota.get(a)! - share.get(a)!) || a - b,
  );
  for (const c of byRemainder.slice(0, left)) share.set(c, share.get(c)! + 1);
  // A generator of its own, so the split does not depend on what else draws random numbers.
  const random = new Random(seed ^ 0x5eed);
  const validation: number[] = [];
  for (const c of classes) {
    const members = random.shuffle(byClass[c]!);
    validation.push(...members.slice(0, share.get(c)));
  }
  if (validation.length === 0) return { train: set };
  if (validation.length >= set.count)
    throw new ConfigError(`--validation-split ${fraction} leaves no training images`);
  const held = new Uint8Array(set.count);
  for (const i of validation) held[i] = 1;
  const validationIdx = Int32Array.from(validation).sort();
  const trainIdx = Int32Array.from({ length: set.count }, (_, i) => i).filter((i) => held[i] === 0);
  return { train: selectImages(set, trainIdx), validation: selectImages(set, validationIdx) };
}

