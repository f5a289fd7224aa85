// Downloading CIFAR-10 once into the cache folder: resumable, locked against a second process,
// checked by MD5, and unpacked safely (no paths out of the folder, no gzip bomb).
import { randomBytes } from 'node:crypto';
import { constants, unlinkSync } from 'node:fs';
import { access, mkdir, readFile, rename, rm, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as tar from 'tar';

import { formatBytes } from '../../util/bounded-read.js';
import { redactUrl } from '../../util/redact.js';
import { downloadResumable } from '../download.js';
import type { ProgressFactory } from '../../reports/progress.js';
import { ConfigError, DownloadInterrupted } from '../../errors.js';
import { isDirectory, pidAlive } from '../../util/fs.js';
import { batchesFormat, type Cifar10Location, type Log } from './read.js';

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

