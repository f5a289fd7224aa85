// Class-per-folder image datasets, decoded with sharp once and cached as one binary file.
import { createHash } from 'node:crypto';
import type { Dirent } from 'node:fs';
import { open, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import sharp, { type OutputInfo } from 'sharp';

import { selectImages, type Dataset, type ImageSet } from './dataset.js';
import { Random } from './random.js';
import type { ProgressFactory } from '../reports/progress.js';
import { ConfigError, firstLine } from '../errors.js';
import { isDirectory } from '../util/fs.js';
import { readCache, writeCache, type CacheHeader } from './image-cache.js';

export interface ImageFolderOptions {
  /** `<root>/train/<class>/*` (+ optional `<root>/test/<class>/*`), or `<root>/<class>/*`. */
  folder: string;
  imageSize: { height: number; width: number };
  /** Fraction of each class held out as the test split when there is no test/ folder. */
  validationSplitForTest: number;
  /** Seeds that hold-out split. */
  seed: number;
  /** Images decoded at once. */
  numWorkers: number;
  /** Where the decoded images are cached. */
  cacheFolder: string;
  progress: ProgressFactory;
  log: (message: string) => void;
}

/** Extensions of the formats sharp's prebuilt binaries read (no BMP). */
export const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg', '.webp', '.gif', '.tif', '.tiff', '.avif'];

const CHANNELS = 3;
// Bump when the decoding or the cache layout changes so old caches are not reused.
const CACHE_VERSION = 1;

interface Entry {
  /** Relative to the root, with '/' separators: what errors and the cache key name. */
  rel: string;
  abs: string;
  label: number;
  size: number;
  mtimeMs: number;
}

/** Code-unit order, so the class list does not depend on the machine's locale. */
function byCodeUnit(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

async function entriesOf(dir: string): Promise<Dirent[]> {
  try {
    return await readdir(dir, { withFileTypes: true });
  } catch (error) {
    throw new Error(`Could not read folder ${dir}: ${(error as Error).message}`);
  }
}

/** Dirent says 'symlink' for links; follow them so linked class folders and images count. */
async function kindOf(dir: string, dirent: Dirent): Promise<'dir' | 'file' | 'other'> {
  if (dirent.isDirectory()) return 'dir';
  if (dirent.isFile()) return 'file';
  if (dirent.isSymbolicLink()) {
    try {
      const s = await stat(path.join(dir, dirent.name));
      return s.isDirectory() ? 'dir' : s.isFile() ? 'file' : 'other';
    } catch {
      return 'other';
    }
  }
  return 'other';
}

async function classFolders(dir: string): Promise<string[]> {
  const names: string[] = [];
  for (const d of await entriesOf(dir)) {
    if (!d.name.startsWith('.') && (await kindOf(dir, d)) === 'dir') names.push(d.name);
  }
  return names.sort(byCodeUnit);
}

/** Runs `task(0..count-1)` with at most `concurrency` in flight. */
async function promisePool(count: number, concurrency: number, task: (index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) await task(next++);
  };
  const workers = Number.isFinite(concurrency) && concurrency >= 1 ? Math.floor(concurrency) : 1;
  await Promise.all(Array.from({ length: Math.min(workers, count) }, worker));
}

/** Lists one split's images (class order, then file name order), counting skipped non-images. */
async function listSplit(
  root: string,
  splitDir: string,
  classNames: string[],
  skipped: { count: number },
): Promise<Array<Omit<Entry, 'size' | 'mtimeMs'>>> {
  const out: Array<Omit<Entry, 'size' | 'mtimeMs'>> = [];
  for (const [label, className] of classNames.entries()) {
    const dir = path.join(splitDir, className);
    const names: string[] = [];
    for (const d of await entriesOf(dir)) {
      if (d.name.startsWith('.')) continue;
      const kind = await kindOf(dir, d);
      if (kind === 'file' && IMAGE_EXTENSIONS.includes(path.extname(d.name).toLowerCase())) names.push(d.name);
      else skipped.count++;
    }
    names.sort(byCodeUnit);
    for (const name of names) {
      const abs = path.join(dir, name);
      out.push({ abs, rel: path.relative(root, abs).split(path.sep).join('/'), label });
    }
  }
  return out;
}

function sha256(parts: Array<Uint8Array | string>): string {
  const hash = createHash('sha256');
  for (const p of parts) hash.update(p);
  return hash.digest('hex');
}

/** Why a file cannot be read at all (permission, missing, a folder), or null when it can be opened. */
async function whyUnreadable(file: string): Promise<string | null> {
  try {
    const handle = await open(file, 'r');
    await handle.close();
    return (await stat(file)).isDirectory() ? 'is a folder, not an image' : null;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
    if (code === 'ENOENT') return 'no such file';
    if (code === 'EISDIR') return 'is a folder, not an image';
    return code ?? null;
  }
}

/**
 * Decodes one image (a file path or the encoded bytes) to `height * width * 3` RGB bytes (HWC), as
 * training sees it; prediction and serving call this too, so their inputs match training's exactly.
 */
export async function decodeImage(
  input: string | Uint8Array,
  size: { height: number; width: number },
): Promise<Buffer> {
  // removeAlpha drops alpha like PIL's convert('RGB'); srgb makes greyscale 3 channels;
  // resize is skipped by sharp when the size already matches.
  let decoded: { data: Buffer; info: OutputInfo };
  try {
    decoded = await sharp(input)
      .autoOrient()
      .removeAlpha()
      .toColourspace('srgb')
      .resize(size.width, size.height, { fit: 'fill' })
      .raw()
      .toBuffer({ resolveWithObject: true });
  } catch (error) {
    // sharp says "unsupported image format" for a file it may not open: say why it could not.
    const unreadable = typeof input === 'string' ? await whyUnreadable(input) : null;
    throw unreadable ? new Error(unreadable) : error;
  }
  const { data, info } = decoded;
  if (info.channels !== CHANNELS || info.width !== size.width || info.height !== size.height) {
    throw new Error(`decoded to ${info.width}x${info.height}x${info.channels}`);
  }
  return data;
}

async function decodeAll(
  entries: Entry[],
  size: { height: number; width: number },
  numWorkers: number,
  progress: ProgressFactory,
): Promise<{ images: Uint8Array; labels: Uint8Array }> {
  const imageBytes = size.height * size.width * CHANNELS;
  const images = new Uint8Array(entries.length * imageBytes);
  const labels = Uint8Array.from(entries, (e) => e.label);
  const failures: Array<{ rel: string; reason: string }> = [];
  const bar = progress('Decoding images', entries.length, 'images');
  let done = 0;
  // libvips' operation cache only churns when every file is new (about 15% slower); it is
  // process-wide, so its limits are restored afterwards.
  const cacheLimits = sharp.cache();
  sharp.cache(false);
  try {
    await promisePool(entries.length, numWorkers, async (i) => {
      const entry = entries[i]!;
      try {
        images.set(await decodeImage(entry.abs, size), i * imageBytes);
      } catch (error) {
        failures.push({ rel: entry.rel, reason: firstLine(error) });
      }
      done++;
      if (done % 256 === 0 || done === entries.length) bar.update(done);
    });
  } finally {
    sharp.cache({ memory: cacheLimits.memory.max, files: cacheLimits.files.max, items: cacheLimits.items.max });
    bar.stop();
  }
  if (failures.length > 0) {
    failures.sort((a, b) => byCodeUnit(a.rel, b.rel));
    const shown = failures
      .slice(0, 5)
      .map((f) => `${f.rel} (${f.reason})`)
      .join(', ');
    const more = failures.length > 5 ? `, and ${failures.length - 5} more` : '';
    const what = failures.length === 1 ? '1 image could not be read' : `${failures.length} images could not be read`;
    throw new Error(`${what}: ${shown}${more}`);
  }
  return { images, labels };
}

/** Holds out `fraction` of each class (seeded shuffle) as the test split; both keep file order. */
function splitByClass(set: ImageSet, numClasses: number, fraction: number, seed: number): { train: ImageSet; test: ImageSet } {
  // A derived seed, so this split does not mirror a validation split drawn with the plain seed.
  const random = new Random(seed ^ 0x7e57);
  const isTest = new Uint8Array(set.count);
  const byClass = Array.from({ length: numClasses }, () => [] as number[]);
  for (let i = 0; i < set.count; i++) byClass[set.labels[i]!]!.push(i);
  for (const members of byClass) {
    random.shuffle(members);
    const take = Math.round(members.length * fraction);
    for (let k = 0; k < take; k++) isTest[members[k]!] = 1;
  }
  const train: number[] = [];
  const test: number[] = [];
  for (let i = 0; i < set.count; i++) (isTest[i] ? test : train).push(i);
  return { train: selectImages(set, train), test: selectImages(set, test) };
}

/** Loads an image folder: lists it, reads the decode cache or decodes with sharp, splits. */
export async function loadImageFolder(options: ImageFolderOptions): Promise<Dataset> {
  const { imageSize, numWorkers, progress, log } = options;
  const root = path.resolve(options.folder);
  if (!Number.isInteger(imageSize.height) || !Number.isInteger(imageSize.width) || imageSize.height < 1 || imageSize.width < 1) {
    throw new Error(`Image size must be positive integers, got ${imageSize.height}x${imageSize.width}`);
  }
  if (!(await isDirectory(root))) throw new ConfigError(`--dataset-folder ${options.folder}: no such folder (${root})`);

  const trainDir = (await isDirectory(path.join(root, 'train'))) ? path.join(root, 'train') : root;
  const testDir = trainDir !== root && (await isDirectory(path.join(root, 'test'))) ? path.join(root, 'test') : undefined;
  const classNames = await classFolders(trainDir);
  if (classNames.length === 0) throw new Error(`No class folders in ${trainDir} (expected <class>/<image> files)`);
  // Refused before any decoding: with one class there is nothing to tell apart (tfjs would fail later
  // with "oneHot: depth must be >=2").
  if (classNames.length === 1) {
    throw new ConfigError(
      `--dataset-folder ${options.folder}: ${trainDir} has one class folder (${classNames[0]}); a classifier needs at least 2 (<folder>/<class>/<image>)`,
    );
  }
  if (classNames.length > 256) throw new Error(`${trainDir} has ${classNames.length} class folders; at most 256 are supported`);
  if (testDir) {
    const testClasses = await classFolders(testDir);
    const onlyTrain = classNames.filter((c) => !testClasses.includes(c));
    const onlyTest = testClasses.filter((c) => !classNames.includes(c));
    if (onlyTrain.length > 0 || onlyTest.length > 0) {
      throw new Error(
        `train/ and test/ in ${root} must hold the same class folders` +
          (onlyTrain.length ? `; only in train/: ${onlyTrain.join(', ')}` : '') +
          (onlyTest.length ? `; only in test/: ${onlyTest.join(', ')}` : ''),
      );
    }
  } else if (!(options.validationSplitForTest > 0 && options.validationSplitForTest < 1)) {
    throw new Error(`${root} has no test/ folder, so the test split fraction must be between 0 and 1 (got ${options.validationSplitForTest})`);
  }

  const skipped = { count: 0 };
  const trainListed = await listSplit(root, trainDir, classNames, skipped);
  const testListed = testDir ? await listSplit(root, testDir, classNames, skipped) : [];
  const perClass = new Array<number>(classNames.length).fill(0);
  for (const e of trainListed) perClass[e.label]!++;
  const emptyClasses = classNames.filter((_, c) => perClass[c] === 0);
  if (emptyClasses.length > 0) throw new Error(`No images for class ${emptyClasses.join(', ')} in ${trainDir}`);
  if (skipped.count > 0) log(`Skipped ${skipped.count} entries in ${root} that are not ${IMAGE_EXTENSIONS.join('/')} files`);

  const listed = [...trainListed, ...testListed];
  const entries: Entry[] = new Array<Entry>(listed.length);
  await promisePool(listed.length, 64, async (i) => {
    const e = listed[i]!;
    const s = await stat(e.abs);
    entries[i] = { ...e, size: s.size, mtimeMs: s.mtimeMs };
  });

  // Any added, removed, renamed, resized or touched file, or another image size, misses the cache.
  const key = sha256([
    JSON.stringify({ version: CACHE_VERSION, imageSize, trainCount: trainListed.length, classNames }),
    ...entries.map((e) => `${e.rel}\t${e.size}\t${e.mtimeMs}\n`),
  ]);
  const header: CacheHeader = {
    version: CACHE_VERSION,
    key,
    count: entries.length,
    height: imageSize.height,
    width: imageSize.width,
    channels: CHANNELS,
  };
  // One cache file per folder and size: a changed folder overwrites its old cache, never piles up.
  const cacheFile = path.join(
    path.resolve(options.cacheFolder),
    'image-folder-cache',
    `${sha256([root]).slice(0, 16)}-${imageSize.height}x${imageSize.width}.bin`,
  );

  const started = Date.now();
  let decoded = await readCache(cacheFile, header);
  if (decoded) {
    log(`Read ${entries.length} decoded images of ${root} from the cache ${cacheFile} in ${Date.now() - started} ms`);
  } else {
    decoded = await decodeAll(entries, imageSize, numWorkers, progress);
    const seconds = (Date.now() - started) / 1000;
    log(`Decoded ${entries.length} images of ${root} in ${seconds.toFixed(1)} s (${Math.round(entries.length / seconds)} images/s)`);
    try {
      await writeCache(cacheFile, header, decoded.labels, decoded.images);
    } catch (error) {
      // The cache only saves time; a read-only or full disk must not stop training.
      log(`Could not write the decode cache ${cacheFile}: ${(error as Error).message}`);
    }
  }

  const all: ImageSet = {
    images: decoded.images,
    labels: decoded.labels,
    count: entries.length,
    height: imageSize.height,
    width: imageSize.width,
    channels: CHANNELS,
  };
  const trainCount = trainListed.length;
  const range = (from: number, to: number) => Array.from({ length: to - from }, (_, k) => from + k);
  const { train, test } = testDir
    ? { train: selectImages(all, range(0, trainCount)), test: selectImages(all, range(trainCount, all.count)) }
    : splitByClass(all, classNames.length, options.validationSplitForTest, options.seed);

  const checksums = {
    decoded: sha256([train.images, train.labels, test.images, test.labels]),
    listing: sha256(entries.map((e) => `${e.rel}\t${e.size}\n`)),
  };
  return { kind: 'image-folder', classNames, train, test, source: root, checksums };
}
