// The child process of one sweep trial: trains one run with train() and tells the sweep how it ended
// over the IPC channel, so that the sweep never reads a CLI's output. A process of its own, so that
// a crash or out-of-memory in one trial cannot take the sweep down (sweeps/run-sweep.ts spawns it).
// The sweep passes each of its signals on as one SIGINT: the first stops after the step (a
// checkpoint is saved), the second at once.
import type { RunConfigInput } from '../config.js';
import { EXIT, firstLine, UserError } from '../errors.js';
import type { TrialReport, TrialRequest } from '../sweeps/run-sweep.js';
import { handleSignals } from './signals.js';

function report(message: TrialReport): Promise<void> {
  return new Promise((done) => {
    if (!process.send) return done();
    process.send(message, () => done());
  });
}

// Listening before the trainer (and tfjs) is imported: a message that comes with no listener is lost.
const request = await new Promise<TrialRequest>((done) =>
  process.once('message', (message) => done(message as TrialRequest)),
);
const { train } = await import('../training/train.js');
// Quiet: the sweep reports the trials; each run's own lines are in its train.log.
const interrupts = handleSignals({ first: () => {}, second: () => {} });
let exitCode: number = EXIT.failed;
try {
  const result = await train(request.config as RunConfigInput, {
    resume: request.resume,
    signal: interrupts.signal,
    stopNow: interrupts.stopNow,
  });
  exitCode = 0;
  await report({ status: 'completed', exitCode, runPath: result.runPath });
} catch (error) {
  exitCode = error instanceof UserError ? error.exitCode : EXIT.failed;
  await report({
    status: exitCode === EXIT.interrupted ? 'interrupted' : 'failed',
    exitCode,
    error: firstLine(error),
  });
} finally {
  interrupts.done();
}
process.disconnect?.();
process.exitCode = exitCode;
