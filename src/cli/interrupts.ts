// Ctrl-C and SIGTERM for the commands that train (train, reproduce, sweep). The first signal asks to
// stop after the current step (a checkpoint is saved); the second to stop at once (the last checkpoint
// written is kept, or the run's folder removed when it has none); a third exits on the spot (by then
// the folders are settled). Notices go on a line of their own, never into a progress bar.
import { notice } from '../reports/progress.js';

export interface Interrupts {
  /** Aborted by the first signal. */
  signal: AbortSignal;
  /** Aborted by the second. */
  stopNow: AbortSignal;
  /** Removes the handlers. */
  done(): void;
}

export const EXIT_INTERRUPTED = 130;

export function handleInterrupts(messages: { first: string; second: string }): Interrupts {
  const stop = new AbortController();
  const now = new AbortController();
  let count = 0;
  const onSignal = (name: NodeJS.Signals) => {
    count++;
    if (count === 1) {
      notice(`${name}: ${messages.first}`);
      stop.abort();
    } else if (count === 2) {
      notice(`${name} again: ${messages.second}`);
      now.abort();
    } else {
      process.exit(EXIT_INTERRUPTED);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: stop.signal,
    stopNow: now.signal,
    done: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}

/** What a training command says on the first and second signal. */
export const TRAIN_INTERRUPT_MESSAGES = {
  first: 'stopping after this step to save a checkpoint (press Ctrl-C again to stop at once)',
  second: 'stopping at once (the last checkpoint written, if any, is kept)',
};

/** What a sweep says: its trials (child processes) get the same signals, one each. */
export const SWEEP_INTERRUPT_MESSAGES = {
  first:
    'stopping the running trials after their current step to save checkpoints (press Ctrl-C again to stop them at once)',
  second: 'stopping the running trials at once; their last checkpoints are kept',
};
