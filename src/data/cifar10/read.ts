// Reading CIFAR-10's batches from disk: the binary version or the Python (pickle) version.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import type { Dataset, ImageSet } from '../dataset.js';
import { NumpyArray, PickleDict, readPickle } from './pickle.js';
import type { PickleValue } from './pickle.js';
import { isDirectory, isFile } from '../../util/fs.js';

export type Log = (message: string) => void;

export interface Cifar10Metadata {
  classNames: string[];
  url: string;
  md5: string;
  bytes: number;
}

let metadataCache: Cifar10Metadata | undefined;

/** data/metadata.json at the package root: three levels up from both src/data/cifar10 and dist/data/cifar10. */
export function cifar10Metadata(): Cifar10Metadata {
  if (!metadataCache) {
    const file = new URL('../../../data/metadata.json', import.meta.url);
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as { cifar10: Cifar10Metadata };
    metadataCache = parsed.cifar10;
  }
  return metadataCache;
}

export const CIFAR10_URL_ENV = 'IMAGE_CLASSIFIER_CIFAR10_URL';
export const CIFAR10_MD5_ENV = 'IMAGE_CLASSIFIER_CIFAR10_MD5';

const SIDE = 32;
const PIXELS = SIDE * SIDE;
const RECORD = 1 + 3 * PIXELS;
const TRAIN_BATCHES = [1, 2, 3, 4, 5].map((i) => `data_batch_${i}`);

export type Cifar10Format = 'binary' | 'python';
export interface Cifar10Location {
  format: Cifar10Format;
  /** The batches folder itself (cifar-10-batches-bin or cifar-10-batches-py). */
  folder: string;
}

/** What marks a folder as a batches folder; any one file suffices so that a partial copy is
 * still found and then reported file by file rather than silently ignored. */
export async function batchesFormat(folder: string): Promise<Cifar10Format | undefined> {
  for (const name of ['batches.meta.txt', 'test_batch.bin', 'data_batch_1.bin']) {
    if (await isFile(path.join(folder, name))) return 'binary';
  }
  for (const name of ['batches.meta', 'test_batch', 'data_batch_1']) {
    if (await isFile(path.join(folder, name))) return 'python';
  }
  return undefined;
}

/** Finds CIFAR-10 in `folder`: the batches folder itself, or a folder holding cifar-10-batches-bin/
 * (preferred) or cifar-10-batches-py/. */
export async function locateCifar10(folder: string): Promise<Cifar10Location | undefined> {
  const root = path.resolve(folder);
  if (!(await isDirectory(root))) return undefined;
  const own = await batchesFormat(root);
  if (own) return { format: own, folder: root };
  for (const [sub, format] of [
    ['cifar-10-batches-bin', 'binary'],
    ['cifar-10-batches-py', 'python'],
  ] as const) {
    const candidate = path.join(root, sub);
    if (await isDirectory(candidate)) return { format, folder: candidate };
  }
  return undefined;
}

async function readRequired(folder: string, name: string): Promise<Buffer> {
  try {
    return await readFile(path.join(folder, name));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new Error(`CIFAR-10 file missing: ${path.join(folder, name)}`);
    throw new Error(`Could not read CIFAR-10 file ${path.join(folder, name)}: ${(error as Error).message}`);
  }
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function emptySet(count: number): ImageSet {
  return {
    images: new Uint8Array(count * 3 * PIXELS),
    labels: new Uint8Array(count),
    count,
    height: SIDE,
    width: SIDE,
    channels: 3,
  };
}

/** Copies one CHW image (1024 R, 1024 G, 1024 B) into HWC order at image `index` of `set`. */
function putPlanes(set: ImageSet, index: number, planes: Uint8Array): void {
  const out = set.images;
  let o = index * 3 * PIXELS;
  for (let p = 0; p < PIXELS; p++) {
    out[o++] = planes[p]!;
    out[o++] = planes[PIXELS + p]!;
    out[o++] = planes[2 * PIXELS + p]!;
  }
}

function checkLabel(label: number, numClasses: number, file: string): number {
  if (!Number.isInteger(label) || label < 0 || label >= numClasses) {
    throw new Error(`CIFAR-10 file ${file} has label ${String(label)} outside 0..${numClasses - 1}`);
  }
  return label;
}

function parseBinaryBatches(files: Array<{ name: string; bytes: Buffer }>, numClasses: number): ImageSet {
  for (const { name, bytes } of files) {
    if (bytes.length === 0 || bytes.length % RECORD !== 0) {
      throw new Error(`CIFAR-10 file ${name} is ${bytes.length} bytes, not a multiple of ${RECORD}-byte records`);
    }
  }
  const set = emptySet(files.reduce((n, f) => n + f.bytes.length / RECORD, 0));
  let index = 0;
  for (const { name, bytes } of files) {
    for (let at = 0; at < bytes.length; at += RECORD, index++) {
      set.labels[index] = checkLabel(bytes[at]!, numClasses, name);
      putPlanes(set, index, bytes.subarray(at + 1, at + RECORD));
    }
  }
  return set;
}

function parseClassNamesText(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line.length > 0);
}

function textOf(value: PickleValue | undefined): string | undefined {
  if (typeof value === 'string') return value;
  if (value instanceof Uint8Array) return Buffer.from(value).toString('utf8');
  return undefined;
}

function pickleDict(bytes: Buffer, name: string): PickleDict {
  const value = readPickle(bytes, name);
  if (!(value instanceof PickleDict)) throw new Error(`CIFAR-10 file ${name} does not hold a dict`);
  return value;
}

function parsePythonBatches(files: Array<{ name: string; bytes: Buffer }>, numClasses: number): ImageSet {
  const batches = files.map(({ name, bytes }) => {
    const dict = pickleDict(bytes, name);
    const data = dict.get('data');
    const labels = dict.get('labels') ?? dict.get('fine_labels');
    if (!(data instanceof NumpyArray)) throw new Error(`CIFAR-10 file ${name} has no numpy 'data' array`);
    const [rows, cols] = data.shape;
    const dtype = data.dtype?.str;
    if (data.shape.length !== 2 || cols !== 3 * PIXELS || (dtype !== 'u1' && dtype !== '|u1')) {
      throw new Error(
        `CIFAR-10 file ${name}: 'data' is ${dtype ?? '?'} of shape [${data.shape.join(', ')}], expected uint8 [N, ${3 * PIXELS}]`,
      );
    }
    if (data.fortranOrder) throw new Error(`CIFAR-10 file ${name}: Fortran-ordered 'data' is not supported`);
    if (data.data.length !== rows! * cols) throw new Error(`CIFAR-10 file ${name}: 'data' has the wrong byte size`);
    if (!Array.isArray(labels) || labels.length !== rows) {
      throw new Error(`CIFAR-10 file ${name}: 'labels' is not a list of ${rows} integers`);
    }
    return { name, rows: rows!, data: data.data, labels };
  });
  const set = emptySet(batches.reduce((n, b) => n + b.rows, 0));
  let index = 0;
  for (const batch of batches) {
    for (let r = 0; r < batch.rows; r++, index++) {
      const label = batch.labels[r];
      set.labels[index] = checkLabel(typeof label === 'number' ? label : NaN, numClasses, batch.name);
      putPlanes(set, index, batch.data.subarray(r * 3 * PIXELS, (r + 1) * 3 * PIXELS));
    }
  }
  return set;
}

/** Reads a located CIFAR-10 folder into a Dataset; every expected file must be present. */
export async function readCifar10(location: Cifar10Location): Promise<Dataset> {
  const { folder, format } = location;
  const suffix = format === 'binary' ? '.bin' : '';
  const metaName = format === 'binary' ? 'batches.meta.txt' : 'batches.meta';
  const names = [metaName, ...TRAIN_BATCHES.map((b) => b + suffix), 'test_batch' + suffix];
  // Check presence first so a missing file is reported before a long read.
  for (const name of names) {
    if (!(await isFile(path.join(folder, name)))) throw new Error(`CIFAR-10 file missing: ${path.join(folder, name)}`);
  }
  const checksums: Record<string, string> = {};
  const read = async (name: string) => {
    const bytes = await readRequired(folder, name);
    checksums[name] = sha256(bytes);
    return { name, bytes };
  };

  const meta = await read(metaName);
  let classNames: string[];
  if (format === 'binary') {
    classNames = parseClassNamesText(meta.bytes.toString('utf8'));
  } else {
    const names = pickleDict(meta.bytes, metaName).get('label_names');
    classNames = Array.isArray(names) ? names.map(textOf).filter((n): n is string => n !== undefined) : [];
  }
  if (classNames.length === 0 || classNames.length > 256) {
    throw new Error(`CIFAR-10 file ${path.join(folder, metaName)} does not list the class names`);
  }

  const trainFiles: Array<{ name: string; bytes: Buffer }> = [];
  for (const b of TRAIN_BATCHES) trainFiles.push(await read(b + suffix));
  const testFiles = [await read('test_batch' + suffix)];
  const parse = format === 'binary' ? parseBinaryBatches : parsePythonBatches;
  const train = parse(trainFiles, classNames.length);
  const test = parse(testFiles, classNames.length);
  return { kind: 'cifar10', classNames, train, test, source: folder, checksums };
}

