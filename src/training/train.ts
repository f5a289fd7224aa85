// train(): one run from configuration to a complete run folder. Read it top to bottom:
// config -> backend -> data -> model -> epochs of SGD (checkpoint after each) -> test evaluation ->
// files -> rename into place. Interrupted, it saves a checkpoint that `--resume` continues from.
//
// Stopping: `signal` stops after the current step and saves a checkpoint; `stopNow` stops at once and
// keeps the last checkpoint written (or removes the run's folder when it has none yet). Either way
// the run's folder ends up in one of three places and nowhere else: the finished run, `.<run>.partial`
// with a checkpoint, or gone. A failure after a checkpoint was written keeps it in `.<run>.partial`.
import { join } from 'node:path';
import type * as tf from '@tensorflow/tfjs';
import { parseRunConfig, type RunConfig, type RunConfigInput } from '../config.js';
import { selectBackend } from '../backends/select.js';
import { channelStatistics } from '../data/batches.js';
import { splitValidation } from '../data/dataset.js';
import { datasetOptions, loadDataset } from '../data/load.js';
import { Random } from '../data/random.js';
import { lineWithoutPath, RunNameTaken, TrainingInterrupted } from '../errors.js';
import { buildModel, inputShapeOf } from '../models/index.js';
import { setWeightValues } from '../models/io.js';
import { clearProgressLine, silentProgress, type ProgressFactory } from '../reports/progress.js';
import {
  loadCheckpoint,
  removeCheckpoint,
  saveCheckpoint,
  tensorValues,
  type Checkpoint,
  type LoopState,
} from '../runs/checkpoint.js';
import { RUN_FILES } from '../runs/layout.js';
import type { Manifest } from '../runs/manifest.js';
import type { EpochMetrics, Metrics } from '../runs/metrics.js';
import {
  assertRunIsNew,
  claimResumable,
  commitRunFolder,
  createRunFolder,
  suspendRunFolder,
} from '../runs/run-folder.js';
import { RunLog } from '../runs/run-log.js';
import { writeRun } from '../runs/write-run.js';
import type { Tracker, TrackerFactory } from '../tracking/tracker.js';
import { createTracker } from '../tracking/wandb.js';
import { checkValidationImages, describeTest, evaluateModel } from './evaluate.js';
import { fewStepsWarning, StopRequested, trainEpochs, type LoopResult } from './loop.js';
import { loadPretrainedWeights, resolvePretrained } from './pretrained.js';
import { assertSameData, resumedConfig } from './resume.js';
import { keepInterrupted, newRunState, releaseFolder, settleAtOnce, type RunState } from './run-state.js';
import { AdamW } from './adamw.js';
import { Sgd } from './sgd.js';
import { measureTrainingStep } from './step.js';
import { plural } from '../reports/format.js';

/** Above this, a rate given to AdamW is most likely an SGD rate (the default 0.2) and gets a warning. */
const ADAMW_HIGH_RATE = 0.05;

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
  const run: RunState = newRunState();
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
    if (!run.stopped) rejectStopped(settleAtOnce(run, config));
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
      measureStep: () => measureTrainingStep(config.model, config.batchSize, inputShapeOf(config)),
    });
    stillOurs();
    log(
      `backend: ${backend.name} (${backend.package}, ${backend.device}${backend.adapter ? `: ${backend.adapter}` : ''}, ${plural(backend.threads, 'thread')})`,
    );
    if (backend.measuredStepMs) {
      const times = Object.entries(backend.measuredStepMs).map(([name, ms]) => `${name} ${ms.toFixed(1)} ms`);
      log(`auto: one training step takes ${times.join(', ')}: ${backend.name} is faster`);
    }

    const dataset = await loadDataset({
      ...datasetOptions(config),
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
    model = buildModel(config.model, { inputShape: inputShapeOf(config), numClasses, seed: config.seed });
    let pretrained: Manifest['pretrained'] = null;
    if (pretrainedPath) {
      pretrained = await loadPretrainedWeights(model, pretrainedPath, config);
      stillOurs();
      log(`pretrained: weights from ${pretrained.path}`);
    }
    // The training state: fresh, or exactly as the checkpoint left it.
    const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
    const optimizer =
      config.optimizer === 'adamw' ? new AdamW(variables, config) : new Sgd(variables, config);
    if (config.optimizer === 'adamw' && config.learningRate > ADAMW_HIGH_RATE)
      log(
        `warning: --learning-rate ${config.learningRate} is an SGD rate; AdamW usually trains at 0.001-0.003 (it may diverge)`,
      );
    const random = new Random(config.seed);
    let start: LoopState | null = null;
    const resumes = checkpoint ? [...checkpoint.resumes] : [];
    if (checkpoint) {
      setWeightValues(model, checkpoint.weights);
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
    runLog.open(join(tmpPath, RUN_FILES.log), checkpoint !== undefined);
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

    let loop: LoopResult;
    try {
      loop = await trainEpochs(
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
              throw new Error(
                `cannot write the checkpoint of epoch ${state.epoch} (${lineWithoutPath(error)})`,
                {
                  cause: error,
                },
              );
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
        problem = `its checkpoint could not be written (${lineWithoutPath(saveError)})`;
      }
      stillOurs();
      log(`interrupted in epoch ${epoch} after ${step} steps; ${problem || 'checkpoint saved'}`);
      throw keepInterrupted(run, config, epoch, problem);
    } finally {
      optimizer.dispose();
    }
    run.phase = 'finishing';
    if (options.signal?.aborted) log('stop asked for after the last step: the run is completed');
    const { history, best } = loop;
    const trainSeconds = history.reduce((sum, h) => sum + h.seconds, 0);
    const lastEpoch = history.length;
    // --save-best: the model is the best epoch's (tested as such); the last epoch's goes to model-last/.
    let lastWeights: Float32Array[] | undefined;
    if (config.saveBest && best && loop.bestWeights && best.epoch !== lastEpoch) {
      lastWeights = await tensorValues(model.weights.map((w) => w.read()));
      setWeightValues(model, loop.bestWeights);
      log(
        `best epoch: ${best.epoch} (${config.earlyStoppingMetric} ${Number(best.value.toPrecision(4))}): it is the model; epoch ${lastEpoch}'s is in model-last/`,
      );
    }
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
        epochs: {
          best: best?.epoch ?? null,
          model: lastWeights ? best!.epoch : lastEpoch,
          last: lastEpoch,
          stoppedEarly: loop.stoppedEarlyAfter !== null,
        },
        lastWeights,
        finishTracking: (charts) => tracker!.finish(metrics.test, charts),
        log,
      });
    } catch (error) {
      throw new Error(`cannot write the run's files (${lineWithoutPath(error)})`, { cause: error });
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
      log(`warning: could not remove the checkpoint from ${folder.finalPath} (${lineWithoutPath(error)})`),
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
