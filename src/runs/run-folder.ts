// A run is written into a hidden temporary folder next to its final place and renamed into place only
// when complete, so a crash or Ctrl-C never leaves a half-written run under the run's name, and an
// existing run is never overwritten. An interrupted run's folder (with its checkpoint) is kept as
// `.<run>.partial` until `--resume` claims it.
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ConfigError } from '../config.js';
import { hasCheckpoint } from './checkpoint.js';

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

/** Where an interrupted run waits to be resumed. */
export function partialPath(experimentsFolder: string, experiment: string, run: string): string {
  return resolve(experimentsFolder, experiment, `.${run}.partial`);
}

/** Fails (before any work is done) when the run already exists, finished or interrupted. */
export function assertRunIsNew(experimentsFolder: string, experiment: string, run: string): void {
  const path = runPath(experimentsFolder, experiment, run);
  if (existsSync(path)) {
    throw new ConfigError(
      `--run-name ${run}: ${experiment}/${run} already exists in ${experimentsFolder}; runs are never overwritten, choose another name`,
    );
  }
  const partial = findResumable(experimentsFolder, experiment, run);
  if (partial !== null) {
    throw new ConfigError(
      `--run-name ${run}: ${experiment}/${run} was interrupted and can be resumed: add --resume (or delete ${partial} to start over)`,
    );
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The folder an interrupted run left to resume from: `.<run>.partial`, or else the temporary
 * folder of a run whose process died (killed, crashed) after writing an epoch checkpoint.
 */
export function findResumable(experimentsFolder: string, experiment: string, run: string): string | null {
  const partial = partialPath(experimentsFolder, experiment, run);
  if (existsSync(partial)) return partial;
  const experimentPath = resolve(experimentsFolder, experiment);
  if (!existsSync(experimentPath)) return null;
  const prefix = `.${run}.tmp-`;
  const stale = readdirSync(experimentPath)
    .filter((name) => name.startsWith(prefix))
    .map((name) => ({ name, pid: Number(name.slice(prefix.length).split('-')[0]) }))
    .filter(({ name, pid }) => !pidAlive(pid) && hasCheckpoint(join(experimentPath, name)))
    .map(({ name }) => name)
    .sort();
  return stale.length > 0 ? join(experimentPath, stale[stale.length - 1]!) : null;
}

/** Takes over an interrupted run's folder for this process (a rename: two resumes cannot both win). */
export async function claimResumable(
  experimentsFolder: string,
  experiment: string,
  run: string,
): Promise<RunFolder> {
  const path = runPath(experimentsFolder, experiment, run);
  if (existsSync(path)) {
    throw new ConfigError(`--resume: ${experiment}/${run} is already complete in ${experimentsFolder}`);
  }
  const from = findResumable(experimentsFolder, experiment, run);
  if (from === null) {
    throw new ConfigError(
      `--resume: ${experiment}/${run} has no interrupted run to resume in ${experimentsFolder}`,
    );
  }
  const experimentPath = resolve(experimentsFolder, experiment);
  const tmpPath = join(experimentPath, `.${run}.tmp-${process.pid}-${Date.now()}`);
  try {
    await rename(from, tmpPath);
  } catch {
    throw new ConfigError(`--resume: ${experiment}/${run} is being resumed by another process`);
  }
  return { experimentPath, tmpPath, finalPath: path };
}

/** Keeps an interrupted run's folder (with its checkpoint) as `.<run>.partial`; returns that path. */
export async function suspendRunFolder(folder: RunFolder, run: string): Promise<string> {
  const target = join(folder.experimentPath, `.${run}.partial`);
  await rm(target, { recursive: true, force: true });
  await rename(folder.tmpPath, target);
  return target;
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
