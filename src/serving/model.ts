// Loading a trained run for inference and classifying images with it: the library's `loadModel` and
// `predict`, which the CLI's predict and serve commands share. The classifier itself is
// src/runs/classifier.ts (what `loadRun(...).loadModel()` returns too).
import type { ModelOptionsInput, PredictOptionsInput } from '../model-options.js';
import { loadRun } from '../runs/load-run.js';
import type { ClassifierModel, ImageInput, Prediction } from '../runs/classifier.js';
import { ImageDecodeError, firstLine } from '../errors.js';

export {
  type ClassifierModel,
  type ImageInput,
  type LabelProbability,
  type ModelBackendOptions,
  type Prediction,
} from '../runs/classifier.js';

/** Where the run is found and where its model runs (modelOptionsSchema in src/config.ts). */
export type LoadModelOptions = ModelOptionsInput;

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
  options: Pick<PredictOptionsInput, 'topK'> = {},
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

/**
 * Label smoothing trains the model towards `1 - s + s/K` for the right class, not 1: a confident
 * prediction then reads e.g. 82%, which looks low to someone who does not know. Said once, on stderr.
 */
export function smoothingNote(labelSmoothing: unknown, classes: number): string | null {
  if (typeof labelSmoothing !== 'number' || !(labelSmoothing > 0) || classes < 2) return null;
  const ceiling = 1 - labelSmoothing + labelSmoothing / classes;
  return (
    `note: this model was trained with label smoothing ${labelSmoothing}, so even a sure prediction gets about ` +
    `${(ceiling * 100).toFixed(0)}%, not 100%: compare the probabilities with each other, not with 100%`
  );
}
