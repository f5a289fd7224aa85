// A trained run as a classifier: decode images exactly as training did and turn logits into labels
// and probabilities. What `loadModel` and `loadRun(...).loadModel()` return, so both feed `predict`.
import * as tf from '@tensorflow/tfjs';
import type { RunConfig } from '../config.js';
import type { BackendInfo } from '../backends/select.js';
import { decodeImage } from '../data/image-folder.js';
import type { ImageSet } from '../data/dataset.js';
import type { Manifest } from '../runs/manifest.js';
import { assembleBatch, NO_AUGMENTATION } from '../data/batches.js';
import { SERVING_DEFAULTS } from '../model-options.js';

/** An image to classify: the path of a file, or its encoded bytes (any format sharp reads). */
export type ImageInput = string | Uint8Array;

export interface LabelProbability {
  label: string;
  probability: number;
}

export interface Prediction {
  /** The most probable class (the argmax of the logits). */
  label: string;
  probability: number;
  /** The `topK` most probable classes, most probable first. */
  top: LabelProbability[];
  /** The probability of every class, in the order of `classNames`. */
  probabilities: number[];
}

/** Where a model runs: the backend selection of `selectBackend`. */
export interface ModelBackendOptions {
  device?: RunConfig['device'];
  backend?: RunConfig['backend'];
  /** Threads for the CPU backends (default: all cores). */
  threads?: number;
}

export interface ClassifierModel {
  /** `<experiment>/<run>`, as run.json names it. */
  readonly runId: string;
  /** Absolute path of the run folder. */
  readonly path: string;
  readonly manifest: Manifest;
  readonly classNames: string[];
  /** [height, width, channels] of the model's input. */
  readonly inputShape: [number, number, number];
  readonly backend: BackendInfo;
  /** Seconds it took to select the backend and load the weights. */
  readonly loadSeconds: number;
  /** Decodes and resizes one image as training did: `height * width * 3` uint8 RGB values. */
  decode(input: ImageInput): Promise<Uint8Array>;
  /** Classifies decoded images (from `decode`) in one model call. */
  classify(images: Uint8Array[], topK?: number): Promise<Prediction[]>;
  /** The tfjs model itself (it outputs logits), for what the methods above do not cover. */
  readonly layersModel: tf.LayersModel;
  /** Frees the model's tensors. */
  dispose(): void;
}

/** Softmax in float64 on the logits, so the probabilities of an image sum to 1 up to rounding. */
function softmax(logits: Float32Array, offset: number, count: number): number[] {
  let max = -Infinity;
  for (let k = 0; k < count; k++) max = Math.max(max, logits[offset + k]!);
  const exps = new Array<number>(count);
  let sum = 0;
  for (let k = 0; k < count; k++) {
    exps[k] = Math.exp(logits[offset + k]! - max);
    sum += exps[k]!;
  }
  return exps.map((e) => e / sum);
}

/**
 * A loaded tfjs model as a classifier for the run described by `manifest` (it takes ownership of
 * `model`). `started` is when loading began (performance.now()), for `loadSeconds`.
 */
export async function createClassifier(
  model: tf.LayersModel,
  manifest: Manifest,
  path: string,
  backend: BackendInfo,
  started: number,
): Promise<ClassifierModel> {
  const [height, width, channels] = manifest.preprocessing.inputShape;
  const classNames = manifest.dataset.classNames;
  const norm = { mean: manifest.preprocessing.mean, std: manifest.preprocessing.std };
  const size = height * width * channels;
  // One warm-up call: the first predict compiles and allocates, and should not land on a request.
  const warmUp = tf.tidy(() => model.predict(tf.zeros([1, height, width, channels])) as tf.Tensor);
  await warmUp.data();
  warmUp.dispose();
  const loadSeconds = (performance.now() - started) / 1000;

  return {
    runId: `${manifest.experiment}/${manifest.run}`,
    path,
    manifest,
    classNames,
    inputShape: [height, width, channels],
    backend,
    loadSeconds,
    decode: (input) => decodeImage(input, { height, width }),
    async classify(images, topK = SERVING_DEFAULTS.topK) {
      const n = images.length;
      if (n === 0) return [];
      // The same batch assembly as training and evaluate(), so the model sees the same numbers.
      const set: ImageSet = {
        images: new Uint8Array(n * size),
        labels: new Uint8Array(n),
        count: n,
        height,
        width,
        channels,
      };
      images.forEach((image, i) => {
        if (image.length !== size) throw new Error(`image ${i} has ${image.length} values, expected ${size}`);
        set.images.set(image, i * size);
      });
      const x = new Float32Array(n * size);
      const order = Int32Array.from({ length: n }, (_, i) => i);
      assembleBatch(set, order, 0, n, norm, NO_AUGMENTATION, undefined, x, new Int32Array(n));
      // Read back with data(), which every backend has (WebGPU in Node has no dataSync).
      const output = tf.tidy(
        () => model.predict(tf.tensor4d(x, [n, height, width, channels])) as tf.Tensor2D,
      );
      let logits: Float32Array;
      try {
        logits = (await output.data()) as Float32Array;
      } finally {
        output.dispose();
      }
      const numClasses = classNames.length;
      const k = Math.max(1, Math.min(Math.floor(topK), numClasses));
      return images.map((_, i) => {
        const probabilities = softmax(logits, i * numClasses, numClasses);
        // Ties keep class order, like argmax.
        const ranked = probabilities
          .map((probability, index) => ({ index, probability }))
          .sort((a, b) => b.probability - a.probability || a.index - b.index);
        const top = ranked
          .slice(0, k)
          .map((r) => ({ label: classNames[r.index]!, probability: r.probability }));
        return { label: top[0]!.label, probability: top[0]!.probability, top, probabilities };
      });
    },
    layersModel: model,
    dispose: () => model.dispose(),
  };
}
