// CIFAR-10 from disk (binary or Python version) or downloaded once into the cache folder.

import { isRedactedUrl, redactUrl } from '../../util/redact.js';
import type { Dataset } from '../dataset.js';
import type { ProgressFactory } from '../../reports/progress.js';
import { ConfigError, NetworkError, DownloadTooLarge } from '../../errors.js';
import { checkDownloadUrl, downloadCifar10 } from './fetch.js';
import { CIFAR10_MD5_ENV, CIFAR10_URL_ENV, cifar10Metadata, locateCifar10, readCifar10, type Cifar10Location, type Log } from './read.js';

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
