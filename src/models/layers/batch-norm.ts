// BatchNormNHWC: tf.layers' batch normalisation whose training step runs the fused training batch
// norm (src/backends/batch-norm.ts: one kernel each way on wasm and webgpu) instead of
// moments() + batchNorm(), whose gradients materialise the per-channel statistics at full
// activation size. Inference, weights and the saved form are the stock layer's.
import * as tf from '@tensorflow/tfjs';
import { batchNormTraining, movingAverage } from '../../backends/batch-norm.js';

type BatchNormLayerArgs = NonNullable<Parameters<typeof tf.layers.batchNormalization>[0]>;
type StockBatchNormLayer = ReturnType<typeof tf.layers.batchNormalization>;
type Kwargs = Parameters<StockBatchNormLayer['call']>[1];

/** The fields of tfjs-layers' BatchNormalization we use (private in its typings). */
interface BatchNormFields {
  axis: number;
  momentum: number;
  epsilon: number;
  gamma: LayerVariableLike | null | undefined;
  beta: LayerVariableLike | null | undefined;
  movingMean: LayerVariableLike;
  movingVariance: LayerVariableLike;
}
interface LayerVariableLike {
  read(): tf.Tensor;
  write(value: tf.Tensor): void;
}

// tfjs-layers does not export the BatchNormalization class itself; take it
// from the serialization registry (creating an instance would consume a
// layer name from the global name counter).
const registered = tf.serialization.SerializationMap.getMap().classNameMap['BatchNormalization'];
if (registered === undefined) throw new Error('tf.layers BatchNormalization is not registered');
// Cast: the registry stores constructors as generic Serializable classes.
const StockBatchNormalization = registered[0] as unknown as {
  new (args?: BatchNormLayerArgs): StockBatchNormLayer;
  className: string;
  fromConfig<T extends tf.serialization.Serializable>(
    cls: tf.serialization.SerializableConstructor<T>,
    config: tf.serialization.ConfigDict,
  ): T;
};

/**
 * Drop-in replacement for `tf.layers.batchNormalization` (same arguments,
 * same weights: gamma, beta, moving_mean, moving_variance) whose training
 * step uses `batchNormTraining`. Inference is the stock layer's.
 *
 * It serialises as a plain `BatchNormalization`, so a saved model.json loads
 * with `tf.loadLayersModel` in any program (as the stock layer). Resumed and
 * fine-tuned runs build the model anew and copy the weights in, so they train
 * with this layer.
 */
export class BatchNormNHWC extends StockBatchNormalization {
  static override className = 'BatchNormNHWC';

  constructor(args?: BatchNormLayerArgs) {
    super(args);
  }

  /** Saved under the stock class name: loadable without this package. */
  override getClassName(): string {
    return 'BatchNormalization';
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor | tf.Tensor[] {
    // Cast: reach the stock layer's private fields (same object).
    const self = this as unknown as BatchNormFields;
    const input = Array.isArray(inputs) ? inputs[0] : inputs;
    const training = kwargs['training'] === true;
    if (!training || input === undefined || (self.axis !== -1 && self.axis !== input.rank - 1)) {
      return super.call(inputs, kwargs);
    }
    return tf.tidy(() => {
      const c = input.shape[input.rank - 1]!;
      const gamma = (self.gamma?.read() ?? tf.ones([c])) as tf.Tensor1D;
      const beta = (self.beta?.read() ?? tf.zeros([c])) as tf.Tensor1D;
      const { y, mean, variance } = batchNormTraining(input, gamma, beta, self.epsilon);
      // Moving averages exactly as tfjs-layers does them.
      const decay = 1 - self.momentum;
      for (const [variable, value] of [
        [self.movingMean, mean],
        [self.movingVariance, variance],
      ] as const) {
        tf.tidy(() => {
          variable.write(movingAverage(variable.read(), value, decay));
        });
      }
      return y;
    });
  }
}
tf.serialization.registerClass(BatchNormNHWC);
