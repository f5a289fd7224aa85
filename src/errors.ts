// Every error a user is meant to read, with the exit code the CLI ends with. One base, UserError:
// its message is one line for the terminal (no stack), its exitCode a property, so the CLI's single
// handler (`main().catch(handleError)` in cli/main.ts) needs no list of classes. Anything that is not
// a UserError is a bug or an unexpected failure: exit 1 with its first line.
// A leaf: it imports nothing of ours, so every layer can throw these.

/** The program's name: the CLI, its messages, the commands written into run.json and sweeps. */
export const PROGRAM = 'image-classifier-trainer';

/** Exit codes besides 0 (success): documented in --help and the README. */
export const EXIT = {
  failed: 1,
  /** Bad input or refused; nothing was written. */
  badInput: 2,
  /** reproduce/verify found differences. */
  differs: 3,
  /** Stopped by a signal (128 + SIGINT). */
  interrupted: 130,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export class UserError extends Error {
  readonly exitCode: ExitCode = EXIT.failed;
}

/** A flag, a config file or an option of the library that is not valid: nothing was done. */
export class ConfigError extends UserError {
  override name = 'ConfigError';
  override readonly exitCode = EXIT.badInput;
}

/**
 * A file, folder or run that the command was pointed at is missing, unreadable or not what it should
 * be (a run without run.json, a model.json that is not one, a run name already taken): refused
 * before anything was written.
 */
export class InputError extends UserError {
  override name = 'InputError';
  override readonly exitCode = EXIT.badInput;
}

/** The backend asked for does not load or work here. */
export class BackendError extends UserError {
  override name = 'BackendError';
  override readonly exitCode = EXIT.badInput;
}

/** A run.json that does not match the manifest schema. */
export class ManifestError extends UserError {
  override name = 'ManifestError';
}

export class TrainingInterrupted extends UserError {
  override name = 'TrainingInterrupted';
  override readonly exitCode = EXIT.interrupted;
  constructor(
    message: string,
    /** The command that resumes the run (absent when nothing was saved). */
    readonly resumeCommand?: string,
    /** Where the interrupted run and its checkpoint wait. */
    readonly partialPath?: string,
  ) {
    super(message);
  }
}

/** Training failed after a checkpoint was written: the run waits in `partialPath` to be resumed. */
export class TrainingFailed extends UserError {
  override name = 'TrainingFailed';
  constructor(
    message: string,
    readonly resumeCommand: string,
    readonly partialPath: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** The loss became NaN or infinite: training stopped (more steps cannot bring it back). */
export class TrainingDiverged extends UserError {
  override name = 'TrainingDiverged';
  constructor(
    message: string,
    readonly epoch: number,
    /** The step (1-based) of `epoch` whose loss was not finite; 0 for the validation after it. */
    readonly step: number,
    readonly loss: number,
  ) {
    super(message);
  }
}

/** Another process finished a run of the same name first: this complete run was kept at `keptAt`. */
export class RunNameTaken extends UserError {
  override name = 'RunNameTaken';
  constructor(
    message: string,
    /** Where this (complete) run was kept instead. */
    readonly keptAt: string,
  ) {
    super(message);
  }
}

export class NetworkError extends UserError {
  override name = 'NetworkError';
  constructor(
    message: string,
    /** Worth trying again: a reset, a timeout, a cut-off body, a 5xx. */
    readonly transient = false,
  ) {
    super(message);
  }
}

/** The caller aborted a download: the bytes so far stay in `partialFile` for a later call to continue. */
export class DownloadInterrupted extends UserError {
  override name = 'DownloadInterrupted';
  override readonly exitCode = EXIT.interrupted;
  constructor(
    message: string,
    readonly partialFile: string,
    readonly bytes: number,
  ) {
    super(message);
  }
}

/** The server sent (or announced) more than the file can be. */
export class DownloadTooLarge extends UserError {
  override name = 'DownloadTooLarge';
}

/** A file refused by a bounded read: not a regular file, or larger than allowed. */
export class UnreadableFileError extends UserError {
  override name = 'UnreadableFileError';
}

/** An image that cannot be decoded: `input` is its path, or its index in the request. */
export class ImageDecodeError extends UserError {
  override name = 'ImageDecodeError';
  constructor(
    readonly input: string | number,
    readonly reason: string,
  ) {
    super(`${typeof input === 'number' ? `image ${input}` : input}: cannot be read as an image (${reason})`);
  }
}

/** An error's first line, for one-line messages. */
export function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0]!.trim();
}

/** The error's first line, without the path a failed system call names (the path may have moved since). */
export function lineWithoutPath(error: unknown): string {
  const line = firstLine(error);
  return (error as NodeJS.ErrnoException).syscall ? line.replace(/, \w+ '[^']*'( -> '[^']*')?$/, '') : line;
}

/** Why a file could not be read, in words where the code is common ("no such file"), else its code. */
export function fileProblem(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  return code ?? firstLine(error);
}
