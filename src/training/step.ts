// One SGD step of a model, and the measurement `auto` picks a backend by. A module of its own so
// that backend selection, the trainer and the benchmark share the one step they all time.
import * as tf from '@tensorflow/tfjs';
import { parseRunConfig, type ModelName } from '../config.js';
import { Random } from '../data/random.js';
import { buildModel, INPUT_SHAPE } from '../models/index.js';
import { Sgd, type Optimizer } from './sgd.js';

/** What a step trains: the model, its trainable variables, its optimiser, and the loss's settings. */
export interface Learner {
  model: tf.LayersModel;
  variables: tf.Variable[];
  optimizer: Optimizer;
  numClasses: number;
  labelSmoothing: number;
}

/** A batch: the first `n` images of `x` and their labels `y`. */
export interface Batch {
  x: Float32Array | tf.Tensor4D;
  y: Int32Array;
  n: number;
}

/**
 * One SGD step; resolves to the batch's mean loss and number of correct predictions. The work is
 * queued when the call returns (the promise only waits for the two numbers), so a caller may start
 * the next step before awaiting this one: on a GPU the readback then overlaps the next step instead
 * of leaving the GPU idle. The numbers are read with `data()`: WebGPU in Node cannot read
 * synchronously. `x` is a float32 batch (the first n images are used) or a batch tensor already on
 * the backend (src/backends/webgpu/batches.ts), which the caller disposes.
 */
export async function trainStep(
  learner: Learner,
  batch: Batch,
  learningRate: number,
): Promise<[number, number]> {
  const { model, variables, optimizer, numClasses, labelSmoothing } = learner;
  const { x, y, n } = batch;
  const outputs: [tf.Tensor, tf.Tensor] = tf.tidy(() => {
    const [h, w, c] = model.inputs[0]!.shape.slice(1) as [number, number, number];
    const input = x instanceof Float32Array ? tf.tensor4d(x.subarray(0, n * h * w * c), [n, h, w, c]) : x;
    const labels = tf.tensor1d(y.subarray(0, n), 'int32');
    const targets = tf.oneHot(labels, numClasses);
    let hits: tf.Tensor | undefined;
    const { value, grads } = tf.variableGrads(() => {
      const logits = model.apply(input, { training: true }) as tf.Tensor;
      // variableGrads disposes everything made in here but the loss: keep the hit count explicitly.
      hits = tf.keep(tf.sum(tf.cast(tf.equal(tf.argMax(logits, 1), labels), 'int32')));
      return tf.losses.softmaxCrossEntropy(targets, logits, undefined, labelSmoothing) as tf.Scalar;
    }, variables);
    optimizer.step(
      variables.map((v) => grads[v.name]!),
      learningRate,
    );
    return [value, hits!];
  });
  try {
    const [loss, correct] = await Promise.all([outputs[0].data(), outputs[1].data()]);
    return [loss[0]!, correct[0]!];
  } finally {
    tf.dispose(outputs);
  }
}

/** Steps timed by measureTrainingStep, after one untimed (it compiles shaders, packs weights). */
const MEASURED_STEPS = 2;

/**
 * Milliseconds per training step of `model` at `batchSize` on the active backend (random data, the
 * default recipe's optimiser): what `auto` compares a GPU backend with the best CPU one by.
 */
export async function measureTrainingStep(
  modelName: ModelName,
  batchSize: number,
  inputShape: [number, number, number] = INPUT_SHAPE,
): Promise<number> {
  const numClasses = 10;
  const model = buildModel(modelName, { inputShape, numClasses, seed: 0 });
  const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
  // The default recipe's optimiser and loss (the schema's defaults), at a small learning rate: random
  // labels at the recipe's peak rate could diverge, and NaNs would time unrepresentatively.
  const recipe = parseRunConfig({
    experimentName: 'measure',
    runName: 'measure',
    model: modelName,
    batchSize,
  });
  const optimizer = new Sgd(variables, recipe);
  const random = new Random(0);
  const x = Float32Array.from({ length: batchSize * inputShape.reduce((a, b) => a * b, 1) }, () =>
    random.normal(),
  );
  const y = Int32Array.from({ length: batchSize }, () => random.int(numClasses));
  const learner = { model, variables, optimizer, numClasses, labelSmoothing: recipe.labelSmoothing };
  const step = () => trainStep(learner, { x, y, n: batchSize }, 0.001);
  try {
    await step();
    const t0 = performance.now();
    for (let i = 0; i < MEASURED_STEPS; i++) await step();
    return (performance.now() - t0) / MEASURED_STEPS;
  } finally {
    optimizer.dispose();
    model.dispose();
  }
}
