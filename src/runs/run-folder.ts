// A run is written into a hidden temporary folder next to its final place and renamed into place only
// when complete, so a crash or Ctrl-C never leaves a half-written run under the run's name, and an
// existing run is never overwritten. An interrupted run's folder (with its checkpoint) is kept as
// `.<run>.partial` until `--resume` claims it.
// Every change of a folder's place is one synchronous call: a signal handler that stops a run at once
// (src/training/train.ts) then never sees a folder half-way between two places.
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { pidAlive } from '../util/fs.js';
import { assertWritableFolder } from '../util/writable.js';
import { hasCheckpoint } from './checkpoint.js';
import {
  duplicateName,
  partialName,
  partialPath,
  runPath,
  temporaryName,
  temporaryPrefix,
} from './layout.js';
import { InputError, RunNameTaken } from '../errors.js';

export interface RunFolder {
  experimentPath: string;
  /** Where the run is written while it trains. */
  tmpPath: string;
  /** Where it ends up. */
  finalPath: string;
}

/**
 * Fails (before any work is done) when the run already exists, finished or interrupted, or when
 * another live process is training it.
 */
export function assertRunIsNew(experimentsFolder: string, experiment: string, run: string): void {
  const path = runPath(experimentsFolder, experiment, run);
  if (existsSync(path)) {
    throw new InputError(
      `--run-name ${run}: ${experiment}/${run} already exists in ${experimentsFolder}; runs are never overwritten, choose another name`,
    );
  }
  const partial = findResumable(experimentsFolder, experiment, run);
  if (partial !== null) {
    throw new InputError(
      `--run-name ${run}: ${experiment}/${run} was interrupted and can be resumed: add --resume (or delete ${partial} to start over)`,
    );
  }
  const live = temporaryFolders(resolve(experimentsFolder, experiment), run).find(
    (t) => t.pid !== process.pid && pidAlive(t.pid),
  );
  if (live) {
    throw new InputError(
      `--run-name ${run}: ${experiment}/${run} is being trained by process ${live.pid} (its folder: ${live.path}); choose another name`,
    );
  }
  assertWritableFolder(resolve(experimentsFolder, experiment), '--experiments-folder', experimentsFolder);
}

/** The `.<run>.tmp-<pid>-<time>` folders of `run`, oldest first. */
function temporaryFolders(experimentPath: string, run: string): Array<{ path: string; pid: number }> {
  if (!existsSync(experimentPath)) return [];
  const prefix = temporaryPrefix(run);
  return readdirSync(experimentPath)
    .filter((name) => name.startsWith(prefix))
    .sort()
    .map((name) => ({
      path: join(experimentPath, name),
      pid: Number(name.slice(prefix.length).split('-')[0]),
    }));
}

/**
 * The folder an interrupted run left to resume from: `.<run>.partial`, or else the temporary
 * folder of a run whose process died (killed, crashed) after writing an epoch checkpoint.
 */
export function findResumable(experimentsFolder: string, experiment: string, run: string): string | null {
  const partial = partialPath(experimentsFolder, experiment, run);
  if (existsSync(partial)) return partial;
  const stale = temporaryFolders(resolve(experimentsFolder, experiment), run).filter(
    ({ path, pid }) => !pidAlive(pid) && hasCheckpoint(path),
  );
  return stale.length > 0 ? stale[stale.length - 1]!.path : null;
}

function temporaryPath(experimentPath: string, run: string): string {
  return join(experimentPath, temporaryName(run, process.pid, Date.now()));
}

/** Takes over an interrupted run's folder for this process (a rename: two resumes cannot both win). */
export function claimResumable(experimentsFolder: string, experiment: string, run: string): RunFolder {
  const path = runPath(experimentsFolder, experiment, run);
  if (existsSync(path)) {
    throw new InputError(`--resume: ${experiment}/${run} is already complete in ${experimentsFolder}`);
  }
  const from = findResumable(experimentsFolder, experiment, run);
  if (from === null) {
    throw new InputError(
      `--resume: ${experiment}/${run} has no interrupted run to resume in ${experimentsFolder}`,
    );
  }
  const experimentPath = resolve(experimentsFolder, experiment);
  const tmpPath = temporaryPath(experimentPath, run);
  try {
    renameSync(from, tmpPath);
  } catch {
    throw new InputError(`--resume: ${experiment}/${run} is being resumed by another process`);
  }
  return { experimentPath, tmpPath, finalPath: path };
}

/** Keeps an interrupted run's folder (with its checkpoint) as `.<run>.partial`; returns that path. */
export function suspendRunFolder(folder: RunFolder, run: string): string {
  const target = join(folder.experimentPath, partialName(run));
  // Only this process holds the run (it claimed it or created it new), so nothing is there to lose.
  rmSync(target, { recursive: true, force: true });
  renameSync(folder.tmpPath, target);
  return target;
}

export function createRunFolder(experimentsFolder: string, experiment: string, run: string): RunFolder {
  assertRunIsNew(experimentsFolder, experiment, run);
  const experimentPath = resolve(experimentsFolder, experiment);
  mkdirSync(experimentPath, { recursive: true });
  const tmpPath = temporaryPath(experimentPath, run);
  mkdirSync(tmpPath);
  return { experimentPath, tmpPath, finalPath: join(experimentPath, run) };
}

/**
 * Renames the complete run into place. When another process completed a run of the same name
 * meanwhile, that run is left alone and this one is kept as `<run>-duplicate-<n>` (RunNameTaken):
 * a finished run is never deleted.
 */
export function commitRunFolder(folder: RunFolder): void {
  try {
    // rename() never replaces a folder with files in it: the other run cannot be overwritten.
    renameSync(folder.tmpPath, folder.finalPath);
    return;
  } catch (error) {
    if (!existsSync(folder.finalPath)) throw error;
  }
  const run = folder.finalPath.slice(folder.experimentPath.length + 1);
  for (let n = 1; ; n++) {
    const kept = join(folder.experimentPath, duplicateName(run, n));
    if (existsSync(kept)) continue;
    try {
      renameSync(folder.tmpPath, kept);
    } catch (error) {
      if (existsSync(kept)) continue;
      throw error;
    }
    throw new RunNameTaken(
      `another process completed a run named ${run} in ${folder.experimentPath} while this one trained; this run is complete too and was kept as ${kept}`,
      kept,
    );
  }
}

export function abandonRunFolder(folder: RunFolder): void {
  rmSync(folder.tmpPath, { recursive: true, force: true });
}
