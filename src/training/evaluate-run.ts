// evaluate(): a finished run's model on a dataset (by default the run's own test split).
import { availableParallelism } from 'node:os';
import type { RunConfig } from '../config.js';
import { selectBackend, type BackendInfo } from '../backends/select.js';
import { loadDataset } from '../data/load.js';
import { loadRun } from '../runs/load-run.js';
import { silentProgress, type ProgressFactory } from '../reports/progress.js';
import { evaluateModel, type Evaluation } from './evaluate.js';

export interface EvaluateOptions {
  experimentsFolder?: string;
  /** Defaults: the dataset the run was trained on. */
  dataset?: RunConfig['dataset'];
  datasetFolder?: string;
  device?: RunConfig['device'];
  backend?: RunConfig['backend'];
  progress?: ProgressFactory;
  log?: (line: string) => void;
}

export interface EvaluateResult extends Evaluation {
  classNames: string[];
  backend: BackendInfo;
}

export async function evaluate(run: string, options: EvaluateOptions = {}): Promise<EvaluateResult> {
  const loaded = await loadRun(run, options.experimentsFolder);
  const { config, preprocessing } = loaded.manifest;
  const backend = await selectBackend({
    device: options.device ?? 'auto',
    backend: options.backend ?? 'auto',
  });
  const dataset = await loadDataset({
    dataset: options.dataset ?? config.dataset,
    datasetFolder: options.datasetFolder ?? config.datasetFolder,
    cacheFolder: config.dataFolder,
    imageSize: { height: preprocessing.inputShape[0], width: preprocessing.inputShape[1] },
    seed: config.seed,
    numWorkers: config.numWorkers ?? availableParallelism(),
    testSplit: config.testSplit,
    downloadUrl: config.downloadUrl,
    download: true,
    progress: options.progress ?? silentProgress,
    log: options.log ?? (() => {}),
  });
  const model = await loaded.loadModel();
  try {
    const result = evaluateModel(model, dataset.test, preprocessing, dataset.classNames.length);
    return { ...result, classNames: dataset.classNames, backend };
  } finally {
    model.dispose();
  }
}
