// Where a training run's folder stands, and how it is settled when the run stops or fails. The stop
// handlers act synchronously (between two awaits), so that the folder is always in exactly one of
// three places: the finished run, `.<run>.partial` with a checkpoint, or gone.
import type { RunConfig } from '../config.js';
import { lineWithoutPath, TrainingDiverged, TrainingFailed, TrainingInterrupted } from '../errors.js';
import { clearProgressLine, type Progress } from '../reports/progress.js';
import { describeCheckpoint } from '../runs/checkpoint.js';
import { abandonRunFolder, suspendRunFolder, type RunFolder } from '../runs/run-folder.js';
import { resumeCommandFor } from './resume.js';

/** Where a run stands, for the stop handlers (which act synchronously, between two awaits). */
export interface RunState {
  /** The run's folder while this call holds it (cleared once it is renamed, kept or removed). */
  folder: RunFolder | undefined;
  /** The folder was claimed from an interrupted run (it is given back, never removed). */
  resumed: boolean;
  /**
   * preparing: loading, no training yet; training: the epochs; finishing: test evaluation and files;
   * done: the folder is being put in its last place (renamed into place, kept to resume, removed),
   * and a stop changes nothing any more.
   */
  phase: 'preparing' | 'training' | 'finishing' | 'done';
  /** Set when a stop settled the folder at once: what the promise rejected with. */
  stopped: TrainingInterrupted | undefined;
  /** The live progress bar of the epoch in progress. */
  bar: Progress | undefined;
}

export function newRunState(): RunState {
  return { folder: undefined, resumed: false, phase: 'preparing', stopped: undefined, bar: undefined };
}

/**
 * A stop at once (a second Ctrl-C, or a stop before training began): settles the folder now, in one
 * synchronous pass, and returns (and records in `run.stopped`) the error that says what was kept.
 */
export function settleAtOnce(run: RunState, config: RunConfig): TrainingInterrupted {
  run.bar?.stop();
  clearProgressLine();
  const folder = run.folder;
  run.folder = undefined;
  const what = run.phase === 'preparing' ? 'interrupted before training started' : 'stopped at once';
  let error: TrainingInterrupted;
  const kept = folder ? describeCheckpoint(folder.tmpPath) : null;
  try {
    if (folder && kept !== null) {
      const partial = suspendRunFolder(folder, config.runName);
      const resumeCommand = resumeCommandFor(config);
      error = new TrainingInterrupted(
        `${what}; ${kept} is kept in ${partial}; resume with: ${resumeCommand}`,
        resumeCommand,
        partial,
      );
    } else if (folder) {
      abandonRunFolder(folder);
      error = new TrainingInterrupted(
        `${what} before the first checkpoint (end of epoch 1); nothing was kept`,
      );
    } else {
      error = new TrainingInterrupted(`${what}; no run was written`);
    }
  } catch (moveError) {
    // Inside a signal handler: say where the folder still is rather than throw.
    error = new TrainingInterrupted(
      `${what}; the run's folder could not be ${kept !== null ? 'kept for --resume' : 'removed'} (${lineWithoutPath(moveError)}): it is still ${folder!.tmpPath}`,
    );
  }
  run.stopped = error;
  return error;
}

/**
 * After a stop between two steps and the checkpoint written for it (or not: `problem` says why): the
 * folder is kept as `.<run>.partial` when it holds a checkpoint, removed otherwise. Returns the error.
 */
export function keepInterrupted(
  run: RunState,
  config: RunConfig,
  epoch: number,
  problem: string,
): TrainingInterrupted {
  const folder = run.folder!;
  const resumeCommand = resumeCommandFor(config);
  const kept = describeCheckpoint(folder.tmpPath);
  run.phase = 'done';
  run.folder = undefined;
  if (kept === null) {
    abandonRunFolder(folder);
    return new TrainingInterrupted(`interrupted in epoch ${epoch}; ${problem}; nothing was kept`);
  }
  const partial = suspendRunFolder(folder, config.runName);
  return new TrainingInterrupted(
    problem
      ? `interrupted in epoch ${epoch}; ${problem}; ${kept} is kept in ${partial}; resume with: ${resumeCommand}`
      : `interrupted in epoch ${epoch}; checkpoint saved in ${partial}; resume with: ${resumeCommand}`,
    resumeCommand,
    partial,
  );
}

/**
 * After a failure: the run's folder is kept as `.<run>.partial` when it holds a checkpoint (work is
 * never thrown away) or was claimed to resume, and removed otherwise. Returns the error to throw,
 * which says where the run was kept.
 */
export function releaseFolder(run: RunState, config: RunConfig, error: unknown): unknown {
  const folder = run.folder;
  const phase = run.phase;
  run.phase = 'done';
  run.folder = undefined;
  if (!folder) return error;
  const kept = describeCheckpoint(folder.tmpPath);
  const diverged = error instanceof TrainingDiverged;
  // Resuming a diverged run would take the same steps to the same NaN: only a claimed one is kept.
  if (kept === null || (diverged && !run.resumed)) {
    abandonRunFolder(folder);
    return diverged
      ? new TrainingDiverged(
          `${error.message}; nothing was kept (resuming would repeat the same steps)`,
          error.epoch,
          error.step,
          error.loss,
        )
      : error;
  }
  const partial = suspendRunFolder(folder, config.runName);
  // Refused before training (other data on --resume, ...): the run is just given back as it was.
  if (phase === 'preparing') return error;
  if (diverged) {
    return new TrainingDiverged(
      `${error.message}; ${kept} is back in ${partial}`,
      error.epoch,
      error.step,
      error.loss,
    );
  }
  const resumeCommand = resumeCommandFor(config);
  return new TrainingFailed(
    `${lineWithoutPath(error)}; ${kept} is kept in ${partial}; resume with: ${resumeCommand}`,
    resumeCommand,
    partial,
    { cause: error },
  );
}
