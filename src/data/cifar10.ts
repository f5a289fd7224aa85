// CIFAR-10 from disk (binary or Python version) or downloaded once into the cache folder.
import { createHash, randomBytes } from 'node:crypto';
import { constants, readFileSync, unlinkSync } from 'node:fs';
import { access, mkdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as tar from 'tar';

import { formatBytes } from '../util/bounded-read.js';
import { isRedactedUrl, redactUrl } from '../util/redact.js';
import { downloadResumable } from './download.js';
import type { Dataset, ImageSet } from './dataset.js';
import { NumpyArray, PickleDict, readPickle } from './pickle.js';
import type { PickleValue } from './pickle.js';
import type { ProgressFactory } from '../reports/progress.js';
import { ConfigError, NetworkError, DownloadInterrupted, DownloadTooLarge } from '../errors.js';

export type Log = (message: string) => void;

export interface Cifar10Metadata {
  classNames: string[];
  url: string;
  md5: string;
  bytes: number;
}

let metadataCache: Cifar10Metadata | undefined;

/** data/metadata.json at the package root: two levels up from both src/data and dist/data. */
export function cifar10Metadata(): Cifar10Metadata {
  if (!metadataCache) {
    const file = new URL('../../data/metadata.json', import.meta.url);
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

async function isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch {
    return false;
  }
}

async function isDirectory(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

/** What marks a folder as a batches folder; any one file suffices so that a partial copy is
 * still found and then reported file by file rather than silently ignored. */
async function batchesFormat(folder: string): Promise<Cifar10Format | undefined> {
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

// ---------------------------------------------------------------------------------------------
// Download

/** A download of unknown size (another MD5 than the known archive's) stops here: CIFAR-10 archives are 163-175 MB. */
export const MAX_UNKNOWN_DOWNLOAD_BYTES = 512 * 2 ** 20;
/** What an archive may unpack to: the binary version is 185 MB; a gzip bomb stops here. */
export const MAX_EXTRACTED_BYTES = 2 ** 30;

export interface DownloadCifar10Options {
  url: string;
  cacheFolder: string;
  md5: string;
  /** The archive's exact size when known: shown in the progress bar, and never exceeded. */
  bytes?: number;
  /** The most that is downloaded when `bytes` is not known (default 512 MiB). */
  maxBytes?: number;
  /** Retries of transient failures (default 4), and the first wait, doubled each time (default 1 s). */
  retries?: number;
  retryDelayMs?: number;
  /** Aborting stops the download at once; its bytes stay in the cache for the next call to continue. */
  signal?: AbortSignal;
  progress: ProgressFactory;
  log: Log;
}

function tempName(prefix: string): string {
  return `.${prefix}-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** The archive being downloaded: one name per expected MD5, so a later run continues the same file. */
export function partialDownloadPath(cacheFolder: string, md5: string): string {
  return path.join(path.resolve(cacheFolder), `cifar-10-${md5.toLowerCase().slice(0, 12)}.tar.gz.partial`);
}

/** Only http(s) can be downloaded; anything else is refused before any work. */
export function checkDownloadUrl(url: string, what: string): void {
  let protocol: string;
  try {
    protocol = new URL(url).protocol;
  } catch {
    throw new ConfigError(`${what} is not a valid URL`);
  }
  if (protocol !== 'http:' && protocol !== 'https:') {
    throw new ConfigError(`${what} must be an http:// or https:// URL (got ${protocol})`);
  }
}

function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes the lock of the shared `.partial` file (a `.lock` beside it holding our pid); a lock left by a
 * process that died is taken over. False when a live process holds it.
 */
async function lockPartial(lock: string): Promise<boolean> {
  for (let tries = 0; tries < 3; tries++) {
    try {
      await writeFile(lock, String(process.pid), { flag: 'wx' });
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = Number((await readFile(lock, 'utf8').catch(() => '')).trim());
    if (holder !== process.pid && pidAlive(holder)) return false;
    await unlink(lock).catch(() => undefined);
  }
  return false;
}

async function ensureWritableFolder(folder: string): Promise<void> {
  try {
    await mkdir(folder, { recursive: true });
    await access(folder, constants.W_OK | constants.X_OK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'EACCES' || code === 'EPERM' ? 'permission denied' : code === 'EROFS' ? 'read-only file system' : (code ?? (error as Error).message);
    throw new ConfigError(`--data-folder ${folder} is not writable (${why}): CIFAR-10 cannot be downloaded there; choose another --data-folder`);
  }
}

function isUnsafeEntryPath(p: string): boolean {
  if (p.startsWith('/') || p.startsWith('\\') || /^[a-zA-Z]:/.test(p)) return true;
  return p.split(/[\\/]+/).some((part) => part === '..');
}

/** Extracts a .tar.gz into `into`, writing only plain files and folders with relative paths
 * inside it; anything else is skipped and then reported by throwing, so the caller discards the
 * whole extraction. `label` names the archive in that error. */
export async function extractTarGzSafely(
  archive: string,
  into: string,
  label = path.basename(archive),
  maxBytes = MAX_EXTRACTED_BYTES,
): Promise<void> {
  const problems: string[] = [];
  let unpacked = 0;
  await tar.x({
    file: archive,
    cwd: into,
    strict: true,
    preservePaths: false,
    filter: (entryPath, entry) => {
      const type = 'type' in entry ? String(entry.type) : 'unknown';
      if (isUnsafeEntryPath(entryPath)) {
        problems.push(`${entryPath} (path outside the target folder)`);
        return false;
      }
      if (!['File', 'OldFile', 'ContiguousFile', 'Directory'].includes(type)) {
        problems.push(`${entryPath} (${type} entries are not allowed)`);
        return false;
      }
      // Entries past the bound are not written: a small archive must not fill the disk.
      unpacked += 'size' in entry && typeof entry.size === 'number' ? entry.size : 0;
      if (unpacked > maxBytes) {
        problems.push(`${entryPath} (the archive unpacks to more than ${formatBytes(maxBytes)})`);
        return false;
      }
      return true;
    },
  });
  if (problems.length > 0) {
    const shown = problems.slice(0, 3).join(', ');
    const more = problems.length > 3 ? `, and ${problems.length - 3} more` : '';
    throw new Error(`Refusing to extract ${label}: unsafe entries ${shown}${more}`);
  }
}

/**
 * Downloads and unpacks CIFAR-10 into `cacheFolder`; returns where it landed. The archive is written
 * to `cifar-10-<md5>.tar.gz.partial` in the cache: a download that is cut off, fails or is aborted
 * leaves it there and the next call continues it (HTTP Range); it is removed once unpacked, or when
 * its MD5 is wrong. The extraction uses a temporary folder, removed on any failure.
 */
export async function downloadCifar10(options: DownloadCifar10Options): Promise<Cifar10Location> {
  const { url, md5, bytes, progress, log } = options;
  const shown = redactUrl(url);
  checkDownloadUrl(url, `the download URL ${shown}`);
  const cacheFolder = path.resolve(options.cacheFolder);
  await ensureWritableFolder(cacheFolder);
  const shared = partialDownloadPath(cacheFolder, md5);
  const lock = `${shared}.lock`;
  // Another live process downloading the same file: download a private copy rather than share bytes.
  const locked = await lockPartial(lock);
  // A process that exits in the middle (a second Ctrl-C exits at once) leaves no lock behind.
  const unlock = () => {
    try {
      unlinkSync(lock);
    } catch {
      // Already gone.
    }
  };
  if (locked) process.once('exit', unlock);
  const archive = locked ? shared : path.join(cacheFolder, tempName('cifar10-download') + '.tar.gz');
  const extractDir = path.join(cacheFolder, tempName('cifar10-extract'));
  let keepArchive = locked;
  try {
    log(`Downloading CIFAR-10 from ${shown} into ${cacheFolder}`);
    const result = await downloadResumable({
      url,
      partialFile: archive,
      maxBytes: bytes ?? options.maxBytes ?? MAX_UNKNOWN_DOWNLOAD_BYTES,
      expectedBytes: bytes,
      retries: options.retries,
      retryDelayMs: options.retryDelayMs,
      signal: options.signal,
      progress,
      label: 'Downloading CIFAR-10',
      log,
    });
    // Complete: from here on it is never continued, whatever happens to it.
    keepArchive = false;
    if (result.md5.toLowerCase() !== md5.toLowerCase()) {
      throw new Error(`Downloaded ${shown} has MD5 ${result.md5}, expected ${md5}; the download was deleted`);
    }
    log('Download verified (MD5); extracting');
    await mkdir(extractDir);
    await extractTarGzSafely(archive, extractDir, `the archive from ${shown}`);
    for (const [sub, format] of [
      ['cifar-10-batches-bin', 'binary'],
      ['cifar-10-batches-py', 'python'],
    ] as const) {
      const from = path.join(extractDir, sub);
      if (!(await isDirectory(from))) continue;
      const to = path.join(cacheFolder, sub);
      try {
        await rename(from, to);
      } catch (error) {
        // Another process may have finished the same download first; its copy is as good.
        const code = (error as NodeJS.ErrnoException).code;
        if ((code !== 'ENOTEMPTY' && code !== 'EEXIST') || !(await batchesFormat(to))) throw error;
        log(`${to} appeared meanwhile; using it`);
      }
      log(`CIFAR-10 unpacked into ${to}`);
      return { format, folder: to };
    }
    throw new Error(`The archive from ${shown} holds no cifar-10-batches-bin/ (or cifar-10-batches-py/) folder`);
  } catch (error) {
    // A private copy cannot be continued by anyone: it goes, whatever happened.
    if (error instanceof DownloadInterrupted && !keepArchive) {
      throw new DownloadInterrupted('download interrupted; the partial download was deleted', archive, 0);
    }
    throw error;
  } finally {
    await rm(extractDir, { recursive: true, force: true });
    if (!keepArchive) await unlink(archive).catch(() => undefined);
    if (locked) {
      process.off('exit', unlock);
      unlock();
    }
  }
}

// ---------------------------------------------------------------------------------------------

export interface LoadCifar10Options {
  /** An explicit --dataset-folder: searched first. */
  folder?: string;
  /** Where CIFAR-10 is looked for next and downloaded to (the caller's default is ./data). */
  cacheFolder: string;
  /** Overrides the URL from metadata.json (and IMAGE_CLASSIFIER_CIFAR10_URL). */
  url?: string;
  /** Overrides the MD5 from metadata.json (and IMAGE_CLASSIFIER_CIFAR10_MD5). */
  md5?: string;
  download: boolean;
  /** Aborting stops a download at once (its bytes are kept for the next run to continue). */
  signal?: AbortSignal;
  /** Passed to downloadCifar10 (tests). */
  retryDelayMs?: number;
  progress: ProgressFactory;
  log: Log;
}

/** Loads CIFAR-10 from `folder` or `cacheFolder`, downloading it into `cacheFolder` when absent. */
export async function loadCifar10(options: LoadCifar10Options): Promise<Dataset> {
  const { cacheFolder, progress, log } = options;
  const searched = [options.folder, cacheFolder].filter((f): f is string => f !== undefined);
  for (const folder of searched) {
    const found = await locateCifar10(folder);
    if (found) {
      log(`Reading CIFAR-10 (${found.format} version) from ${found.folder}`);
      return readCifar10(found);
    }
    if (folder === options.folder) log(`CIFAR-10 not found in ${folder}`);
  }

  const metadata = cifar10Metadata();
  const where = searched.join(' or ');
  const help =
    `Put cifar-10-binary.tar.gz's cifar-10-batches-bin/ (or cifar-10-batches-py/) there, ` +
    `point --dataset-folder at a folder that has it, download it from a mirror with --download-url URL ` +
    `(or $${CIFAR10_URL_ENV}; behind a proxy, set HTTPS_PROXY), or train with --dataset synthetic.`;
  const envUrl = process.env[CIFAR10_URL_ENV] || undefined;
  // A URL read back from run.json lost its credentials there: it cannot download anything.
  if (options.url && isRedactedUrl(options.url) && !envUrl && options.download) {
    throw new ConfigError(
      `CIFAR-10 not found in ${where}, and the run's --download-url ${options.url} had credentials, which are never stored: ` +
        `give the URL again with $${CIFAR10_URL_ENV}, or put the data there yourself. ${help}`,
    );
  }
  const url = (options.url && !isRedactedUrl(options.url) ? options.url : undefined) || envUrl || metadata.url;
  const md5 = options.md5 || process.env[CIFAR10_MD5_ENV] || metadata.md5;
  const shown = redactUrl(url);
  if (!options.download) {
    throw new Error(`CIFAR-10 not found in ${where} and downloading is disabled. ${help}`);
  }
  checkDownloadUrl(url, url === envUrl ? `$${CIFAR10_URL_ENV}` : '--download-url');
  let location: Cifar10Location;
  try {
    location = await downloadCifar10({
      url,
      cacheFolder,
      md5,
      // The known size belongs to the known file only.
      bytes: md5.toLowerCase() === metadata.md5 ? metadata.bytes : undefined,
      signal: options.signal,
      retryDelayMs: options.retryDelayMs,
      progress,
      log,
    });
  } catch (error) {
    if (error instanceof NetworkError) {
      throw new Error(`CIFAR-10 not found in ${where} and it could not be downloaded from ${shown} (${error.message}). ${help}`);
    }
    if (error instanceof DownloadTooLarge) throw new Error(`CIFAR-10 from ${shown}: ${error.message}`);
    throw error;
  }
  return readCifar10(location);
}
