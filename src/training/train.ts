// train(): one run from configuration to a complete run folder. Read it top to bottom:
// config -> backend -> data -> model -> epochs of SGD (checkpoint after each) -> test evaluation ->
// files -> rename into place. Interrupted, it saves a checkpoint that `--resume` continues from.
//
// Stopping: `signal` stops after the current step and saves a checkpoint; `stopNow` stops at once and
// keeps the last checkpoint written (or removes the run's folder when it has none yet). Either way
// the run's folder ends up in one of three places and nowhere else: the finished run, `.<run>.partial`
// with a checkpoint, or gone. A failure after a checkpoint was written keeps it in `.<run>.partial`.
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { flagName, parseRunConfig, type RunConfig, type RunConfigInput } from '../config.js';
import { selectBackend, type BackendInfo } from '../backends/select.js';
import { selectImages, type Dataset, type ImageSet } from '../data/dataset.js';
import { datasetOptions, loadDataset } from '../data/load.js';
import { Random } from '../data/random.js';
import { buildModel, INPUT_SHAPE } from '../models/index.js';
import { loadModelFile, MODEL_FILE, saveModel } from '../models/io.js';
import { renderAccuracyChart, renderCurves } from '../reports/charts.js';
import {
  clearProgressLine,
  silentProgress,
  type Progress,
  type ProgressFactory,
} from '../reports/progress.js';
import {
  describeCheckpoint,
  loadCheckpoint,
  removeCheckpoint,
  saveCheckpoint,
  tensorValues,
  type Checkpoint,
  type LoopState,
} from '../runs/checkpoint.js';
import {
  gitState,
  MANIFEST_FILE,
  manifestText,
  rerunCommand,
  sha256File,
  shellWord,
  systemInfo,
  versions,
  type Manifest,
} from '../runs/manifest.js';
import { RunLog } from '../runs/run-log.js';
import { createTracker, type Tracker, type TrackerFactory } from '../tracking/wandb.js';
import {
  abandonRunFolder,
  assertRunIsNew,
  claimResumable,
  commitRunFolder,
  createRunFolder,
  suspendRunFolder,
  type RunFolder,
} from '../runs/run-folder.js';
import { GpuImages, PARAMS_PER_IMAGE } from '../backends/webgpu/batches.js';
import {
  assembleBatch,
  batchParams,
  channelStatistics,
  normalizationTable,
  type Normalization,
} from '../data/batches.js';
import { checkValidationImages, describeTest, evaluateModel } from './evaluate.js';
import { learningRateSchedule } from './schedule.js';
import { Sgd } from './sgd.js';
import type { EpochMetrics, Metrics } from '../runs/metrics.js';
import { measureTrainingStep, trainStep } from './step.js';
import {
  ConfigError,
  TrainingInterrupted,
  TrainingFailed,
  TrainingDiverged,
  RunNameTaken,
} from '../errors.js';

export type { EpochMetrics, Metrics } from '../runs/metrics.js';

export const METRICS_FILE = 'metrics.json';
export const LOG_FILE = 'train.log';

export interface TrainOptions {
  /** Receives each log line (they also go to the run's train.log). */
  log?: (line: string) => void;
  /** Progress bars for long work (download, decode, epochs). */
  progress?: ProgressFactory;
  /**
   * Aborting stops training after the current step: the run's state is saved as a checkpoint in
   * `<experiment>/.<run>.partial/` and the promise rejects with a TrainingInterrupted that says how
   * to resume. Aborted before training starts (while the data loads), the promise rejects at once
   * and nothing is left behind. Aborted after the last step, the run is completed as usual.
   */
  signal?: AbortSignal;
  /**
   * Aborting stops at once (a second Ctrl-C): the promise rejects with a TrainingInterrupted without
   * waiting for the step in progress. The last checkpoint written (end of the last epoch, or of an
   * earlier stop) is kept in `<experiment>/.<run>.partial/` and the error's resumeCommand continues
   * from it; with no checkpoint yet, the run's folder is removed. Ignored once the finished run is
   * being renamed into place.
   */
  stopNow?: AbortSignal;
  /**
   * Continue the interrupted run `<experiment>/<run>` from its checkpoint. Its configuration comes
   * from the checkpoint; options given in `input` besides the names and folders must agree with it.
   */
  resume?: boolean;
  /** Called with the dataset's checksums once it is loaded, before training; throw to refuse. */
  checkData?: (checksums: Record<string, string>) => void;
  /** Recorded in run.json: the run this one reproduces (`<experiment>/<run>`). */
  reproductionOf?: string;
  /** Experiment tracking (default: W&B with `wandb: true`, else none). */
  tracker?: TrackerFactory;
  /**
   * Called after each epoch trained by this call, once its checkpoint is written, with its metrics
   * (awaited before the next epoch starts). A throw fails the run; the checkpoint stays resumable.
   */
  onEpoch?: (metrics: EpochMetrics) => void | Promise<void>;
}

export interface TrainResult {
  /** Absolute path of the finished run folder. */
  runPath: string;
  manifest: Manifest;
  metrics: Metrics;
}

/** Thrown inside the training loop when the signal aborts: the state after the last step done. */
class StopRequested extends Error {
  constructor(readonly state: LoopState) {
    super('stop requested');
  }
}

/**
 * Keys that name a run, say where things go or how it is watched, rather than what is trained: a
 * resumed run may set them anew (the thread count does not change the bits either).
 */
export const LOCATION_KEYS: ReadonlySet<string> = new Set([
  'experimentName',
  'runName',
  'experimentsFolder',
  'dataFolder',
  // Where the data comes from (its checksums are checked on resume); the checkpoint keeps it redacted.
  'downloadUrl',
  'threads',
  'wandb',
  'wandbProject',
  'wandbEntity',
]);

/**
 * Below this an epoch has too few SGD steps for the recipe (warm-up, then decay, over the run's steps)
 * to train a network from scratch: e.g. 1,620 images in batches of 256 give 6 steps an epoch, and VGG
 * ends near chance. Such a run gets a warning.
 */
export const MIN_STEPS_PER_EPOCH = 16;

/** Where a run stands, for the stop handlers (which act synchronously, between two awaits). */
interface RunState {
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

export async function train(input: RunConfigInput, options: TrainOptions = {}): Promise<TrainResult> {
  const echo = options.log;
  // A log line on its own line, not after a live progress bar.
  const runLog = new RunLog(
    echo
      ? (line) => {
          clearProgressLine();
          echo(line);
        }
      : undefined,
  );

  // Everything that can be refused is refused before any work, and before a folder exists.
  let config: RunConfig;
  let checkpoint: Checkpoint | undefined;
  const run: RunState = {
    folder: undefined,
    resumed: false,
    phase: 'preparing',
    stopped: undefined,
    bar: undefined,
  };
  if (options.resume) {
    const named = parseRunConfig(input);
    const claimed = claimResumable(named.experimentsFolder, named.experimentName, named.runName);
    try {
      checkpoint = await loadCheckpoint(claimed.tmpPath);
      config = resumedConfig(input, named, checkpoint.config);
    } catch (error) {
      suspendRunFolder(claimed, named.runName);
      throw error;
    }
    run.folder = claimed;
    run.resumed = true;
  } else {
    config = parseRunConfig(input);
    assertRunIsNew(config.experimentsFolder, config.experimentName, config.runName);
  }

  let rejectStopped: (error: TrainingInterrupted) => void = () => {};
  const stopped = new Promise<never>((_, reject) => (rejectStopped = reject));
  // Rejected maybe before it is raced (stopped before the run began): never an unhandled rejection.
  stopped.catch(() => {});
  // Settles the folder now, in one synchronous pass, and rejects the call with what was kept.
  const stopAtOnce = () => {
    if (run.stopped) return;
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
        `${what}; the run's folder could not be ${kept !== null ? 'kept for --resume' : 'removed'} (${firstLine(moveError)}): it is still ${folder!.tmpPath}`,
      );
    }
    run.stopped = error;
    rejectStopped(error);
  };
  const onStop = () => {
    // Before training there is no step to finish; after the last one the run is seconds from done.
    if (run.phase === 'preparing') stopAtOnce();
  };
  const onStopNow = () => {
    if (run.phase !== 'done') stopAtOnce();
  };
  options.signal?.addEventListener('abort', onStop);
  options.stopNow?.addEventListener('abort', onStopNow);
  try {
    if (options.stopNow?.aborted) onStopNow();
    else if (options.signal?.aborted) onStop();
    if (run.stopped) throw run.stopped;
    const work = trainRun(config, checkpoint, run, runLog, options);
    // Whatever it ends with after a stop settled the run is already said.
    work.catch(() => {});
    return await Promise.race([work, stopped]);
  } finally {
    options.signal?.removeEventListener('abort', onStop);
    options.stopNow?.removeEventListener('abort', onStopNow);
  }
}

/** The run itself; every folder change goes through `run` so a stop at once can take over. */
async function trainRun(
  config: RunConfig,
  checkpoint: Checkpoint | undefined,
  run: RunState,
  runLog: RunLog,
  options: TrainOptions,
): Promise<TrainResult> {
  const progress = options.progress ?? silentProgress;
  const log = runLog.line;
  /** After an await: a stop at once may have settled the run meanwhile. */
  const stillOurs = () => {
    if (run.stopped) throw run.stopped;
  };
  const startedAt = checkpoint ? new Date(checkpoint.startedAt) : new Date();
  let model: tf.LayersModel | undefined;
  let tracker: Tracker | undefined;
  try {
    const pretrainedPath = config.pretrainedModel ? resolvePretrained(config) : undefined;
    // auto on a machine with a GPU: the GPU backend only if a step of this model at this batch size
    // is faster there than on the best CPU backend (measured, a few seconds).
    const backend = await selectBackend({
      ...config,
      measureStep: () => measureTrainingStep(config.model, config.batchSize),
    });
    stillOurs();
    log(
      `backend: ${backend.name} (${backend.package}, ${backend.device}${backend.adapter ? `: ${backend.adapter}` : ''}, ${backend.threads} thread${backend.threads > 1 ? 's' : ''})`,
    );
    if (backend.measuredStepMs) {
      const times = Object.entries(backend.measuredStepMs).map(([name, ms]) => `${name} ${ms.toFixed(1)} ms`);
      log(`auto: one training step takes ${times.join(', ')}: ${backend.name} is faster`);
    }

    const dataset = await loadDataset({
      ...datasetOptions(config, { height: INPUT_SHAPE[0], width: INPUT_SHAPE[1] }),
      download: true,
      signal: options.signal,
      progress,
      log,
    });
    stillOurs();
    if (checkpoint) assertSameData(checkpoint.dataChecksums, dataset.checksums);
    options.checkData?.(dataset.checksums);
    const { train: trainSet, validation: validationSet } = splitValidation(
      dataset.train,
      config.validationSplit,
      config.seed,
    );
    const validation = validationSet ?? dataset.test;
    checkValidationImages(validation.count, trainSet.count, config.validationSplit);
    const numClasses = dataset.classNames.length;
    log(
      `data: ${dataset.kind} from ${dataset.source}: ${trainSet.count} train, ` +
        `${validationSet ? `${validationSet.count} validation` : 'validating on the test split'}, ${dataset.test.count} test, ${numClasses} classes`,
    );
    const fewSteps = fewStepsWarning(trainSet.count, config.batchSize, config.epochs);
    if (fewSteps) log(fewSteps);

    const normalization = channelStatistics(trainSet);
    model = buildModel(config.model, { inputShape: INPUT_SHAPE, numClasses, seed: config.seed });
    let pretrained: Manifest['pretrained'] = null;
    if (pretrainedPath) {
      pretrained = await loadPretrainedWeights(model, pretrainedPath, config);
      stillOurs();
      log(`pretrained: weights from ${pretrained.path}`);
    }
    // The training state: fresh, or exactly as the checkpoint left it.
    const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
    const optimizer = new Sgd(variables, config);
    const random = new Random(config.seed);
    let start: LoopState | null = null;
    const resumes = checkpoint ? [...checkpoint.resumes] : [];
    if (checkpoint) {
      restoreWeights(model, checkpoint.weights);
      optimizer.setState(checkpoint.momentum);
      random.setState(checkpoint.state.randomState);
      start = checkpoint.state;
      resumes.push({ at: new Date().toISOString(), epoch: start.epoch, step: start.step });
      log(`resumed: epoch ${start.epoch}, ${start.step} steps done (checkpoint of ${checkpoint.savedAt})`);
    }

    // From here the run has a folder; created in one synchronous step, so a stop sees it or not.
    run.folder ??= createRunFolder(config.experimentsFolder, config.experimentName, config.runName);
    const folder = run.folder;
    const tmpPath = folder.tmpPath;
    run.phase = 'training';
    runLog.open(join(tmpPath, LOG_FILE), checkpoint !== undefined);
    tracker = (options.tracker ?? createTracker)(config, log);
    await tracker.start(config);
    stillOurs();
    // A resumed run is a new tracked run: it gets the epochs done before the interruption too.
    for (const done of start?.history ?? []) tracker.logEpoch(done);
    const save = async (state: LoopState, reason: Checkpoint['reason']) =>
      saveCheckpoint(tmpPath, {
        schemaVersion: 1,
        reason,
        savedAt: new Date().toISOString(),
        startedAt: startedAt.toISOString(),
        config,
        dataChecksums: dataset.checksums,
        resumes,
        state,
        weights: await tensorValues(model!.weights.map((w) => w.read())),
        momentum: await tensorValues(optimizer.state()),
      });

    let history: EpochMetrics[];
    try {
      history = await trainEpochs(
        { model, variables, optimizer, random, config, trainSet, validation, normalization, numClasses },
        start,
        {
          signal: options.signal,
          stopNow: options.stopNow,
          progress,
          log,
          run,
          onEpochEnd: async (state) => {
            const metrics = state.history[state.history.length - 1]!;
            tracker!.logEpoch(metrics);
            try {
              await save(state, 'epoch-end');
            } catch (error) {
              throw new Error(`cannot write the checkpoint of epoch ${state.epoch} (${firstLine(error)})`, {
                cause: error,
              });
            }
            stillOurs();
            await options.onEpoch?.(metrics);
          },
        },
      );
    } catch (error) {
      if (!(error instanceof StopRequested)) throw error;
      stillOurs();
      const { epoch, step } = error.state;
      let problem = '';
      try {
        await save(error.state, 'interrupted');
      } catch (saveError) {
        // A full disk: the epoch checkpoint before it is still there (or nothing, in epoch 1).
        problem = `its checkpoint could not be written (${firstLine(saveError)})`;
      }
      stillOurs();
      const resumeCommand = resumeCommandFor(config);
      const kept = describeCheckpoint(tmpPath);
      log(`interrupted in epoch ${epoch} after ${step} steps; ${problem || 'checkpoint saved'}`);
      run.phase = 'done';
      run.folder = undefined;
      if (kept === null) {
        abandonRunFolder(folder);
        throw new TrainingInterrupted(`interrupted in epoch ${epoch}; ${problem}; nothing was kept`);
      }
      const partial = suspendRunFolder(folder, config.runName);
      throw new TrainingInterrupted(
        problem
          ? `interrupted in epoch ${epoch}; ${problem}; ${kept} is kept in ${partial}; resume with: ${resumeCommand}`
          : `interrupted in epoch ${epoch}; checkpoint saved in ${partial}; resume with: ${resumeCommand}`,
        resumeCommand,
        partial,
      );
    } finally {
      optimizer.dispose();
    }
    run.phase = 'finishing';
    if (options.signal?.aborted) log('stop asked for after the last step: the run is completed');
    const trainSeconds = history.reduce((sum, h) => sum + h.seconds, 0);
    const test = await evaluateModel(model, dataset.test, normalization, numClasses);
    stillOurs();
    log(describeTest(test));
    const metrics: Metrics = { history, test: { ...test, classNames: dataset.classNames } };
    let manifest: Manifest;
    try {
      manifest = await writeRun(folder, model, config, {
        backend,
        dataset,
        counts: { train: trainSet.count, validation: validationSet?.count ?? 0 },
        normalization,
        pretrained,
        metrics,
        startedAt,
        trainSeconds,
        resumes,
        reproductionOf: options.reproductionOf ?? null,
        tracker,
        log,
      });
    } catch (error) {
      throw new Error(`cannot write the run's files (${firstLine(error)})`, { cause: error });
    }
    stillOurs();
    await runLog.close();
    stillOurs();
    // The run is complete: from here a stop changes nothing and the folder is never removed.
    run.phase = 'done';
    try {
      commitRunFolder(folder);
    } catch (error) {
      if (error instanceof RunNameTaken) {
        run.folder = undefined;
        await removeCheckpoint(error.keptAt).catch(() => {});
      }
      throw error;
    }
    run.folder = undefined;
    // Kept until the run was in place: a kill before that leaves it resumable.
    await removeCheckpoint(folder.finalPath).catch((error: unknown) =>
      log(`warning: could not remove the checkpoint from ${folder.finalPath} (${firstLine(error)})`),
    );
    options.log?.(`run written to ${folder.finalPath}`);
    return { runPath: folder.finalPath, manifest, metrics };
  } catch (error) {
    const thrown = run.stopped ?? releaseFolder(run, config, error);
    await tracker?.abort(thrown instanceof TrainingInterrupted ? 'interrupted' : 'failed');
    await runLog.close();
    throw thrown;
  } finally {
    model?.dispose();
  }
}

/**
 * After a failure: the run's folder is kept as `.<run>.partial` when it holds a checkpoint (work is
 * never thrown away) or was claimed to resume, and removed otherwise. Returns the error to throw,
 * which says where the run was kept.
 */
function releaseFolder(run: RunState, config: RunConfig, error: unknown): unknown {
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
    `${firstLine(error)}; ${kept} is kept in ${partial}; resume with: ${resumeCommand}`,
    resumeCommand,
    partial,
    { cause: error },
  );
}

/** The error's first line, without the path a failed system call names (it may have moved since). */
function firstLine(error: unknown): string {
  const line = (error instanceof Error ? error.message : String(error)).split('\n')[0]!;
  return (error as NodeJS.ErrnoException).syscall ? line.replace(/, \w+ '[^']*'( -> '[^']*')?$/, '') : line;
}

/** A warning when the recipe gets too few steps to learn, with a batch size that would give enough. */
export function fewStepsWarning(images: number, batchSize: number, epochs: number): string | null {
  const perEpoch = Math.ceil(images / batchSize);
  const total = perEpoch * epochs;
  if (perEpoch >= MIN_STEPS_PER_EPOCH) return null;
  // A power of two that gives about 40 steps an epoch.
  const smaller = 2 ** Math.floor(Math.log2(images / 40));
  const advice =
    smaller >= 8 && smaller < batchSize
      ? `a smaller --batch-size (e.g. ${smaller}: ${Math.ceil(images / smaller)} steps an epoch) or more --epochs`
      : 'more images, or more --epochs';
  return (
    `warning: ${perEpoch} step${perEpoch === 1 ? '' : 's'} an epoch (${images} training images, --batch-size ${batchSize}), ${total} in all: ` +
    `too few for this recipe to train the model (it may end near chance); try ${advice}`
  );
}

/**
 * The configuration of a resumed run: the checkpoint's, with the names and folders of this call.
 * Other options that the caller set and that differ from the checkpoint's are refused.
 */
function resumedConfig(input: RunConfigInput, named: RunConfig, saved: RunConfig): RunConfig {
  const given = input as Record<string, unknown>;
  const differing = Object.keys(given).filter(
    (key) =>
      !LOCATION_KEYS.has(key) &&
      given[key] !== undefined &&
      JSON.stringify((named as Record<string, unknown>)[key]) !==
        JSON.stringify((saved as Record<string, unknown>)[key]),
  );
  if (differing.length > 0) {
    const key = differing[0]!;
    throw new ConfigError(
      `--resume continues the run as it was configured: --${flagName(key)} is ${JSON.stringify((saved as Record<string, unknown>)[key])} in its checkpoint (got ${JSON.stringify(given[key])})`,
    );
  }
  // Names and folders always come from this call; the other such keys only when given.
  const resumed: Record<string, unknown> = {
    ...saved,
    experimentName: named.experimentName,
    runName: named.runName,
    experimentsFolder: named.experimentsFolder,
    dataFolder: named.dataFolder,
  };
  for (const key of LOCATION_KEYS) {
    if (given[key] !== undefined) resumed[key] = (named as Record<string, unknown>)[key];
  }
  return resumed as RunConfig;
}

function assertSameData(recorded: Record<string, string>, now: Record<string, string>): void {
  const changed = Object.keys(recorded).filter((k) => recorded[k] !== now[k]);
  if (changed.length > 0) {
    throw new ConfigError(
      `--resume: the data changed since the run started (${changed.join(', ')} checksum differs); it cannot continue on other data`,
    );
  }
}

function resumeCommandFor(config: RunConfig): string {
  const words = [
    'image-classifier-trainer',
    `--${flagName('experimentName')}`,
    config.experimentName,
    `--${flagName('runName')}`,
    config.runName,
  ];
  const defaults = parseRunConfig({ experimentName: 'x', runName: 'x' });
  for (const key of ['experimentsFolder', 'dataFolder'] as const) {
    if (config[key] !== defaults[key]) words.push(`--${flagName(key)}`, config[key]);
  }
  words.push('--resume');
  return words.map(shellWord).join(' ');
}

function restoreWeights(model: tf.LayersModel, values: Float32Array[]): void {
  const weights = model.weights;
  if (values.length !== weights.length || values.some((v, i) => v.length !== weights[i]!.read().size)) {
    throw new Error('the checkpoint does not fit this model (other layer shapes)');
  }
  tf.tidy(() => weights.forEach((w, i) => w.write(tf.tensor(values[i]!, w.read().shape))));
}

interface TrainingSetup {
  model: tf.LayersModel;
  variables: tf.Variable[];
  optimizer: Sgd;
  random: Random;
  config: RunConfig;
  trainSet: ImageSet;
  validation: ImageSet;
  normalization: Normalization;
  numClasses: number;
}

interface LoopHooks {
  signal?: AbortSignal;
  stopNow?: AbortSignal;
  progress: ProgressFactory;
  log: (line: string) => void;
  /** Holds the live bar, for a stop at once to close it. */
  run: Pick<RunState, 'bar'>;
  onEpochEnd: (state: LoopState) => Promise<void>;
}

/** The epochs of SGD, from the start or from `start` (a checkpoint's state). */
async function trainEpochs(
  setup: TrainingSetup,
  start: LoopState | null,
  hooks: LoopHooks,
): Promise<EpochMetrics[]> {
  const { model, variables, optimizer, random, config, trainSet, validation, normalization, numClasses } =
    setup;
  const { batchSize, epochs } = config;
  const { progress, log } = hooks;
  const stepsPerEpoch = Math.ceil(trainSet.count / batchSize);
  const schedule = learningRateSchedule(config, stepsPerEpoch * epochs);
  const augmentation = { flip: config.randomFlip, crop: config.randomCrop };
  const imageSize = trainSet.height * trainSet.width * trainSet.channels;
  const x = new Float32Array(batchSize * imageSize);
  const y = new Int32Array(batchSize);
  // On WebGPU the training images live on the GPU and each batch is assembled there.
  const gpuImages = GpuImages.upload(trainSet, normalizationTable(normalization, trainSet.channels));
  const params = new Int32Array(batchSize * PARAMS_PER_IMAGE);
  if (start && start.order.length !== trainSet.count) {
    throw new Error(
      `the checkpoint's image order has ${start.order.length} images, the training split ${trainSet.count}`,
    );
  }
  const order = start
    ? Int32Array.from(start.order)
    : Int32Array.from({ length: trainSet.count }, (_, i) => i);
  const history: EpochMetrics[] = start ? [...start.history] : [];
  // A checkpoint taken at the end of an epoch continues with the next one.
  const midEpoch = start !== null && start.step < stepsPerEpoch;
  const firstEpoch = start === null ? 1 : midEpoch ? start.epoch : start.epoch + 1;
  const stopAsked = () => hooks.signal?.aborted === true || hooks.stopNow?.aborted === true;
  const diverged = (loss: number, epoch: number, step: number, where: string, learningRate: number) =>
    new TrainingDiverged(
      `training diverged: the ${where} loss became ${loss} in epoch ${epoch}${step > 0 ? `, step ${step} of ${stepsPerEpoch}` : ''} ` +
        `(learning rate ${Number(learningRate.toPrecision(3))}); try a lower --learning-rate than ${config.learningRate} ` +
        `(e.g. ${Number((config.learningRate / 4).toPrecision(3))})`,
      epoch,
      step,
      loss,
    );

  try {
    for (let epoch = firstEpoch; epoch <= epochs; epoch++) {
      const resuming = midEpoch && epoch === start!.epoch;
      if (!resuming) random.shuffle(order);
      const sums = resuming
        ? { ...start!.sums }
        : { lossSum: 0, correct: 0, seen: 0, seconds: 0, learningRate: 0 };
      const firstStep = resuming ? start!.step : 0;
      const bar = progress(`epoch ${epoch}/${epochs}`, trainSet.count, 'images');
      hooks.run.bar = bar;
      bar.update(sums.seen);
      const started = performance.now();
      const seenBefore = sums.seen;
      const snapshot = (step: number): LoopState => ({
        epoch,
        step,
        order,
        randomState: random.state,
        history,
        sums: { ...sums, seconds: sums.seconds + (performance.now() - started) / 1000 },
      });
      // One step in flight: step k is queued before step k-1's loss is read, so the GPU never waits
      // for the CPU to read a number back (CPU backends lose nothing). Its numbers are added here.
      let pending:
        { result: Promise<[number, number]>; n: number; step: number; learningRate: number } | undefined;
      const settle = async (): Promise<void> => {
        if (pending === undefined) return;
        const { result, n, step, learningRate } = pending;
        pending = undefined;
        const [loss, hits] = await result;
        if (!Number.isFinite(loss)) {
          bar.stop();
          throw diverged(loss, epoch, step + 1, 'training', learningRate);
        }
        sums.lossSum += loss * n;
        sums.correct += hits;
        sums.seen += n;
        const elapsed = (performance.now() - started) / 1000;
        bar.update(sums.seen, {
          loss: (sums.lossSum / sums.seen).toFixed(4),
          'img/s': Math.round((sums.seen - seenBefore) / elapsed),
        });
      };
      for (let step = firstStep; step < stepsPerEpoch; step++) {
        if (stopAsked()) {
          await settle();
          bar.stop();
          throw new StopRequested(snapshot(step));
        }
        const n = Math.min(batchSize, trainSet.count - step * batchSize);
        let input: Float32Array | tf.Tensor4D = x;
        if (gpuImages) {
          batchParams(
            trainSet,
            order,
            step * batchSize,
            n,
            augmentation,
            random,
            params,
            PARAMS_PER_IMAGE,
            y,
          );
          input = gpuImages.batch(params, n);
        } else {
          assembleBatch(trainSet, order, step * batchSize, n, normalization, augmentation, random, x, y);
        }
        const learningRate = schedule((epoch - 1) * stepsPerEpoch + step);
        const result = trainStep(
          model,
          variables,
          optimizer,
          input,
          y,
          n,
          numClasses,
          config.labelSmoothing,
          learningRate,
        );
        // Seen when settled; a failure while the previous step settles must not leave it unhandled.
        result.catch(() => undefined);
        if (!(input instanceof Float32Array)) input.dispose();
        await settle();
        sums.learningRate = learningRate;
        pending = { result, n, step, learningRate };
        // Let signal handlers (and the progress bar) run after every step: a macrotask turn costs
        // microseconds, a step milliseconds, and a stop is then seen before the next step.
        await new Promise((r) => setImmediate(r));
      }
      await settle();
      bar.stop();
      hooks.run.bar = undefined;
      sums.seconds += (performance.now() - started) / 1000;
      const validationResult = await evaluateModel(model, validation, normalization, numClasses);
      if (!Number.isFinite(validationResult.loss)) {
        throw diverged(validationResult.loss, epoch, 0, 'validation', sums.learningRate);
      }
      const metrics: EpochMetrics = {
        epoch,
        trainLoss: sums.lossSum / sums.seen,
        trainAccuracy: sums.correct / sums.seen,
        validationLoss: validationResult.loss,
        validationAccuracy: validationResult.accuracy,
        learningRate: sums.learningRate,
        seconds: sums.seconds,
        imagesPerSecond: sums.seen / sums.seconds,
      };
      history.push(metrics);
      log(
        `epoch ${epoch}/${epochs}: train loss ${metrics.trainLoss.toFixed(4)} acc ${(metrics.trainAccuracy * 100).toFixed(2)}% | ` +
          `validation loss ${metrics.validationLoss.toFixed(4)} acc ${(metrics.validationAccuracy * 100).toFixed(2)}% | ` +
          `${metrics.seconds.toFixed(1)} s, ${Math.round(metrics.imagesPerSecond)} img/s`,
      );
      await hooks.onEpochEnd({
        epoch,
        step: stepsPerEpoch,
        order,
        randomState: random.state,
        history,
        sums: { ...sums },
      });
    }
  } finally {
    gpuImages?.dispose();
  }
  return history;
}

/** Holds out a seeded random `fraction` of the training images for validation. */
function splitValidation(
  set: ImageSet,
  fraction: number,
  seed: number,
): { train: ImageSet; validation?: ImageSet } {
  const count = Math.round(set.count * fraction);
  if (count === 0) return { train: set };
  if (count >= set.count) throw new ConfigError(`--validation-split ${fraction} leaves no training images`);
  // A generator of its own, so the split does not depend on what else draws random numbers.
  const order = new Random(seed ^ 0x5eed).shuffle(Int32Array.from({ length: set.count }, (_, i) => i));
  const validationIdx = order.subarray(0, count).sort();
  const trainIdx = order.subarray(count).sort();
  return { train: selectImages(set, trainIdx), validation: selectImages(set, validationIdx) };
}

/** `--pretrained-model <experiment>/<run>` (or a model folder, or a model.json), relative to the experiments folder. */
function resolvePretrained(config: RunConfig): string {
  const given = config.pretrainedModel!;
  const base = resolve(config.experimentsFolder, given);
  const candidates = [join(base, 'model', MODEL_FILE), join(base, MODEL_FILE), base];
  const found = candidates.find((p) => p.endsWith('.json') && existsSync(p));
  if (!found) {
    throw new ConfigError(
      `--pretrained-model ${given}: no model found at ${base} (expected <experiment>/<run> under ${config.experimentsFolder})`,
    );
  }
  return found;
}

async function loadPretrainedWeights(
  model: tf.LayersModel,
  modelJsonPath: string,
  config: RunConfig,
): Promise<NonNullable<Manifest['pretrained']>> {
  const given = config.pretrainedModel!;
  let source: tf.LayersModel;
  try {
    source = await loadModelFile(modelJsonPath);
  } catch (error) {
    throw new ConfigError(
      `--pretrained-model ${given}: cannot load ${modelJsonPath} (${(error as Error).message.split('\n')[0]})`,
    );
  }
  try {
    if (source.name !== model.name) {
      throw new ConfigError(
        `--pretrained-model ${given} is a '${source.name}' model, but --model is '${config.model}'`,
      );
    }
    const from = source.getWeights();
    const to = model.getWeights();
    const mismatch = from.length !== to.length || from.some((w, i) => w.shape.join() !== to[i]!.shape.join());
    if (mismatch) {
      throw new ConfigError(
        `--pretrained-model ${given} has other layer shapes than this '${config.model}' (different number of classes?)`,
      );
    }
    model.setWeights(from);
  } finally {
    source.dispose();
  }
  const weightsFile = join(modelJsonPath, '..', 'weights.bin');
  const runFolder = modelJsonPath.endsWith(join('model', MODEL_FILE))
    ? resolve(modelJsonPath, '..', '..')
    : null;
  return {
    path: given,
    run: runFolder ? relative(resolve(config.experimentsFolder), runFolder) : null,
    weightsSha256: existsSync(weightsFile) ? await sha256File(weightsFile) : '',
  };
}

interface RunFacts {
  backend: BackendInfo;
  dataset: Dataset;
  counts: { train: number; validation: number };
  normalization: Normalization;
  pretrained: Manifest['pretrained'];
  metrics: Metrics;
  startedAt: Date;
  trainSeconds: number;
  resumes: Manifest['resumes'];
  reproductionOf: string | null;
  tracker: Tracker;
  log: (line: string) => void;
}

async function writeRun(
  folder: RunFolder,
  model: tf.LayersModel,
  config: RunConfig,
  facts: RunFacts,
): Promise<Manifest> {
  const dir = folder.tmpPath;
  const { metrics, dataset } = facts;
  const title = `${config.experimentName} / ${config.runName}`;
  await saveModel(model, join(dir, 'model'));
  await writeFile(join(dir, METRICS_FILE), JSON.stringify(metrics, null, 2));
  await writeFile(
    join(dir, 'metrics.png'),
    renderAccuracyChart(
      `${title}: test accuracy (%)`,
      dataset.classNames,
      metrics.test.perClassAccuracy,
      metrics.test.accuracy,
    ),
  );
  await writeFile(
    join(dir, 'curves.png'),
    renderCurves(`${title}: loss and accuracy per epoch`, metrics.history),
  );

  const files: Record<string, string> = {};
  for (const name of ['model/model.json', 'model/weights.bin', METRICS_FILE, 'metrics.png', 'curves.png']) {
    files[name] = await sha256File(join(dir, name));
  }
  // Before run.json, so that it records where the run was tracked.
  const charts = [join(dir, 'metrics.png'), join(dir, 'curves.png')];
  const tracking = await facts.tracker.finish(metrics.test, charts);
  const end = new Date();
  const last = metrics.history[metrics.history.length - 1]!;
  const trainedImages = metrics.history.length * facts.counts.train;
  const manifest: Manifest = {
    schemaVersion: 1,
    experiment: config.experimentName,
    run: config.runName,
    status: 'completed',
    command: rerunCommand(config, flagName),
    config,
    seed: config.seed,
    git: await gitState(process.cwd()),
    versions: versions(),
    backend: facts.backend,
    system: systemInfo(),
    dataset: {
      kind: dataset.kind,
      source: dataset.source,
      classNames: dataset.classNames,
      trainImages: facts.counts.train,
      validationImages: facts.counts.validation,
      testImages: dataset.test.count,
      checksums: dataset.checksums,
    },
    preprocessing: { inputShape: INPUT_SHAPE, scale: 1 / 255, ...facts.normalization, output: 'logits' },
    pretrained: facts.pretrained,
    resumes: facts.resumes,
    reproductionOf: facts.reproductionOf,
    results: {
      // null without test images (the evaluation's NaN): the same in memory as in run.json.
      testAccuracy: Number.isFinite(metrics.test.accuracy) ? metrics.test.accuracy : null,
      testLoss: Number.isFinite(metrics.test.loss) ? metrics.test.loss : null,
      validationAccuracy: last.validationAccuracy,
      validationLoss: last.validationLoss,
    },
    timing: {
      start: facts.startedAt.toISOString(),
      end: end.toISOString(),
      durationSeconds: (end.getTime() - facts.startedAt.getTime()) / 1000,
      trainSeconds: facts.trainSeconds,
      imagesPerSecond: facts.trainSeconds > 0 ? trainedImages / facts.trainSeconds : 0,
    },
    files,
    tracking,
  };
  await writeFile(join(dir, MANIFEST_FILE), manifestText(manifest));
  facts.log(`wrote model/, metrics.json, metrics.png, curves.png, run.json, ${LOG_FILE}`);
  return manifest;
}
