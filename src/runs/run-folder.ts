// A run is written into a hidden temporary folder next to its final place and renamed into place only
// when complete, so a crash or Ctrl-C never leaves a half-written run under the run's name, and an
// existing run is never overwritten.
import { existsSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ConfigError } from '../config.js';

export interface RunFolder {
  experimentPath: string;
  /** Where the run is written while it trains. */
  tmpPath: string;
  /** Where it ends up. */
  finalPath: string;
}

export function runPath(experimentsFolder: string, experiment: string, run: string): string {
  return resolve(experimentsFolder, experiment, run);
}

/** Fails (before any work is done) when the run already exists. */
export function assertRunIsNew(experimentsFolder: string, experiment: string, run: string): void {
  const path = runPath(experimentsFolder, experiment, run);
  if (existsSync(path)) {
    throw new ConfigError(
      `--run-name ${run}: ${experiment}/${run} already exists in ${experimentsFolder}; runs are never overwritten, choose another name`,
    );
  }
}

export async function createRunFolder(
  experimentsFolder: string,
  experiment: string,
  run: string,
): Promise<RunFolder> {
  assertRunIsNew(experimentsFolder, experiment, run);
  const experimentPath = resolve(experimentsFolder, experiment);
  await mkdir(experimentPath, { recursive: true });
  const tmpPath = join(experimentPath, `.${run}.tmp-${process.pid}-${Date.now()}`);
  await mkdir(tmpPath);
  return { experimentPath, tmpPath, finalPath: join(experimentPath, run) };
}

export async function commitRunFolder(folder: RunFolder): Promise<void> {
  // Another process may have finished a run of the same name meanwhile: refuse rather than merge.
  if (existsSync(folder.finalPath)) {
    throw new ConfigError(
      `${folder.finalPath} appeared while training; this run was left in ${folder.tmpPath}`,
    );
  }
  await rename(folder.tmpPath, folder.finalPath);
}

export async function abandonRunFolder(folder: RunFolder): Promise<void> {
  await rm(folder.tmpPath, { recursive: true, force: true });
}
