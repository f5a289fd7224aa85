// The library: everything the CLI does, callable from code.
export {
  UserError,
  ConfigError,
  InputError,
  BackendError,
  ManifestError,
  TrainingInterrupted,
  TrainingFailed,
  TrainingDiverged,
  RunNameTaken,
  NetworkError,
  DownloadInterrupted,
  DownloadTooLarge,
  UnreadableFileError,
  ImageDecodeError,
  EXIT,
  type ExitCode,
} from './errors.js';
export { train, type TrainOptions, type TrainResult } from './training/train.js';
export { evaluate, type EvaluateOptions, type EvaluateResult } from './training/evaluate-run.js';
export type { Evaluation, EpochMetrics, Metrics } from './runs/metrics.js';
export { loadRun, type LoadedRun } from './runs/load-run.js';
export type { Manifest } from './runs/manifest.js';
export { reproduce, type ReproduceOptions, type ReproductionReport } from './training/reproduce.js';
export { verifyRun, type VerifyReport, type FileCheck } from './runs/verify.js';
export { compareRuns, comparisonTable, differingKeys, type Comparison, type RunRow } from './runs/compare.js';
export {
  runSweep,
  sweepMatrix,
  type SweepOptions,
  type SweepResult,
  type TrialResult,
} from './sweeps/run-sweep.js';
export { readSweepFile, type Sweep, type Trial } from './sweeps/sweep-file.js';
export { RUN_FILES, runPath, partialPath, evaluationFiles } from './runs/layout.js';
export {
  runConfigSchema,
  parseRunConfig,
  DEFAULT_EXPERIMENTS_FOLDER,
  loadConfigFile,
  mergeConfig,
  type RunConfig,
  type RunConfigInput,
  type ModelName,
} from './config.js';
export {
  SERVING_DEFAULTS,
  modelOptionsSchema,
  evaluateOptionsSchema,
  predictOptionsSchema,
  serveOptionsSchema,
  parseByteSize,
  type ModelOptionsInput,
  type EvaluateOptionsInput,
  type PredictOptionsInput,
  type ServeOptionsInput,
} from './model-options.js';
export {
  selectBackend,
  probeBackends,
  type BackendInfo,
  type BackendName,
  type BackendReport,
} from './backends/select.js';
export { buildModel } from './models/index.js';
export { doctor, type DoctorReport } from './training/doctor.js';
export { noTracker, type Tracker, type TrackerFactory, type RunSummary } from './tracking/tracker.js';
export type { Dataset, ImageSet } from './data/dataset.js';
export { terminalProgress, silentProgress, type Progress, type ProgressFactory } from './reports/progress.js';
export {
  loadModel,
  predict,
  type ClassifierModel,
  type ImageInput,
  type LabelProbability,
  type LoadModelOptions,
  type ModelBackendOptions,
  type Prediction,
} from './serving/model.js';
export { createServer, type ClassifierServer, type ServerOptions } from './serving/server.js';
export {
  predictFiles,
  predictRun,
  type PredictFilesOptions,
  type PredictFilesResult,
  type PredictRunOptions,
  type PredictRunResult,
} from './serving/predict-files.js';
export { serve, type ServeOptions, type RunningServer } from './serving/serve.js';
