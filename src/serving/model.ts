// Loading a trained run for inference and classifying images with it: the library's `loadModel` and
// `predict`, which the CLI's predict and serve commands share. The classifier itself is
// src/runs/classifier.ts (what `loadRun(...).loadModel()` returns too).
import { loadRun } from '../runs/load-run.js';
import type { ClassifierModel, ImageInput, ModelBackendOptions, Prediction } from '../runs/classifier.js';
import { ImageDecodeError, firstLine } from '../errors.js';

export {
  DEFAULT_TOP_K,
  type ClassifierModel,
  type ImageInput,
  type LabelProbability,
  type ModelBackendOptions,
  type Prediction,
} from '../runs/classifier.js';

export interface LoadModelOptions extends ModelBackendOptions {
  experimentsFolder?: string;
}

/**
 * Loads `<experiment>/<run>` (or a run folder's path) on the selected backend, ready to classify. The
 * model's files must match the sha256 hashes in its run.json.
 */
export async function loadModel(run: string, options: LoadModelOptions = {}): Promise<ClassifierModel> {
  const loaded = await loadRun(run, options.experimentsFolder);
  return loaded.loadModel(options);
}

/**
 * Classifies images (paths or encoded bytes) in one model call. Throws an ImageDecodeError naming the
 * first image that cannot be read.
 */
export async function predict(
  model: ClassifierModel,
  inputs: ImageInput[],
  options: { topK?: number } = {},
): Promise<Prediction[]> {
  const decoded = await Promise.all(
    inputs.map((input, i) =>
      model.decode(input).catch((error: unknown) => {
        throw new ImageDecodeError(typeof input === 'string' ? input : i, firstLine(error));
      }),
    ),
  );
  return model.classify(decoded, options.topK);
}
