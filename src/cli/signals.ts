// Ctrl-C and SIGTERM, for every command that runs until it is done or stopped. The first signal asks
// to stop gracefully (train, reproduce, sweep: after the current step, a checkpoint saved; serve: no
// new connections, the requests in flight finished); the second to stop at once (the last checkpoint
// written is kept, or the run's folder removed when it has none; serve quits); a third exits on the
// spot (by then the folders are settled).
import { EXIT } from '../errors.js';
import { notice } from '../reports/progress.js';

export interface SignalReactions {
  /** Says what the first signal does (besides aborting `signal`). */
  first(name: NodeJS.Signals): void;
  /** Says or does what the second does (besides aborting `stopNow`). */
  second(name: NodeJS.Signals): void;
  /**
   * Signals closer together than this (ms) count as one: one Ctrl-C can arrive twice, from the
   * terminal to the whole process group and forwarded by a parent such as npm (npx).
   */
  sameWithinMs?: number;
}

export interface Interrupts {
  /** Aborted by the first signal. */
  signal: AbortSignal;
  /** Aborted by the second. */
  stopNow: AbortSignal;
  /** The first signal, once it comes. */
  first: Promise<NodeJS.Signals>;
  /** Removes the handlers. */
  done(): void;
}

export function handleSignals(reactions: SignalReactions): Interrupts {
  const stop = new AbortController();
  const now = new AbortController();
  let firstCame: (name: NodeJS.Signals) => void = () => {};
  const first = new Promise<NodeJS.Signals>((resolve) => (firstCame = resolve));
  let count = 0;
  let last: number | undefined;
  const onSignal = (name: NodeJS.Signals) => {
    const at = performance.now();
    if (reactions.sameWithinMs !== undefined && last !== undefined && at - last <= reactions.sameWithinMs)
      return;
    last = at;
    count++;
    if (count === 1) {
      reactions.first(name);
      stop.abort();
      firstCame(name);
    } else if (count === 2) {
      reactions.second(name);
      now.abort();
    } else {
      process.exit(EXIT.interrupted);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: stop.signal,
    stopNow: now.signal,
    first,
    done: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}

/**
 * The commands that train say what each signal does, on a line of its own (never into a progress
 * bar). Every signal counts: a second Ctrl-C pressed right after the first still stops at once.
 */
export function trainingSignals(messages: { first: string; second: string }): Interrupts {
  return handleSignals({
    first: (name) => notice(`${name}: ${messages.first}`),
    second: (name) => notice(`${name} again: ${messages.second}`),
  });
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
