// One entry point for every data source, so training and evaluation load data the same way.
import { availableParallelism } from 'node:os';
import { type RunConfig } from '../config.js';
import type { Dataset } from './dataset.js';
import { loadCifar10 } from './cifar10/cifar10.js';
import { loadImageFolder } from './image-folder.js';
import { makeSyntheticDataset } from './synthetic.js';
import type { ProgressFactory } from '../reports/progress.js';
import { ConfigError } from '../errors.js';

/** The dataset kinds, as the config schema names them. */
export type DatasetName = RunConfig['dataset'];

export interface LoadDatasetOptions {
  dataset: DatasetName;
  /** --dataset-folder: CIFAR-10 batches, or the image folder (required for image-folder). */
  datasetFolder?: string;
  /** Where downloads and decode caches go (./data by default in the CLI). */
  cacheFolder: string;
  imageSize: { height: number; width: number };
  seed: number;
  numWorkers: number;
  /** Fraction held out as the test split by an image folder without a test/ folder. */
  testSplit?: number;
  /** Overrides the CIFAR-10 download URL. */
  downloadUrl?: string;
  /** Whether CIFAR-10 may be downloaded when it is not on disk. */
  download?: boolean;
  /** Aborting stops a download at once; its bytes stay in the cache for the next run to continue. */
  signal?: AbortSignal;
  progress: ProgressFactory;
  log: (message: string) => void;
}

/** The options a run's configuration decides: where the data is, its size, split and seed. */
export function datasetOptions(
  config: RunConfig,
): Omit<LoadDatasetOptions, 'progress' | 'log' | 'download' | 'signal'> {
  return {
    dataset: config.dataset,
    datasetFolder: config.datasetFolder,
    cacheFolder: config.dataFolder,
    imageSize: { height: config.imageSize, width: config.imageSize },
    seed: config.seed,
    numWorkers: config.numWorkers ?? availableParallelism(),
    testSplit: config.testSplit,
    downloadUrl: config.downloadUrl,
  };
}

export async function loadDataset(options: LoadDatasetOptions): Promise<Dataset> {
  const { dataset, imageSize, progress, log } = options;
  switch (dataset) {
    case 'cifar10':
      // CIFAR-10 is 32x32; scaling it would silently change what the numbers mean.
      if (imageSize.height !== 32 || imageSize.width !== 32) {
        throw new ConfigError(
          `--image-size ${imageSize.height}: CIFAR-10 images are 32x32 (train on them at 32, or on an image folder at any size)`,
        );
      }
      return loadCifar10({
        folder: options.datasetFolder,
        cacheFolder: options.cacheFolder,
        url: options.downloadUrl,
        download: options.download ?? true,
        signal: options.signal,
        progress,
        log,
      });
    case 'image-folder':
      if (!options.datasetFolder) throw new ConfigError('--dataset-folder is required with --dataset image-folder');
      return loadImageFolder({
        folder: options.datasetFolder,
        imageSize,
        validationSplitForTest: options.testSplit ?? 0.1,
        seed: options.seed,
        numWorkers: options.numWorkers,
        cacheFolder: options.cacheFolder,
        progress,
        log,
      });
    case 'synthetic':
      return makeSyntheticDataset({ imageSize, seed: options.seed });
    default:
      throw new Error(`Unknown dataset ${String(dataset)}; expected cifar10, image-folder or synthetic`);
  }
}
