// `vgg`, the default: six 3x3 convolutions (32, 32, 64, 64, 128, 128) each followed by BatchNorm and
// ReLU, a 2x2 max pool after every second, global max pool, one linear layer. The same network as
// the PyTorch reference's `vgg`, so throughput and accuracy compare like for like. BatchNorm lets
// it train at a high learning rate: the fast recipe reaches ~80% on CIFAR-10 in a few epochs.
import * as tf from '@tensorflow/tfjs';
import { BatchNormNHWC } from './layers/batch-norm.js';
import { layerSeeds, torchBiasInit, torchWeightInit } from './init.js';
import type { ModelSpec } from './spec.js';

export const VGG_WIDTHS = [32, 32, 64, 64, 128, 128] as const;

export function buildVgg({ inputShape, numClasses, seed }: ModelSpec): tf.LayersModel {
  const seeds = layerSeeds(seed);
  const model = tf.sequential({ name: 'vgg' });
  model.add(tf.layers.inputLayer({ inputShape }));
  VGG_WIDTHS.forEach((filters, i) => {
    model.add(
      tf.layers.conv2d({
        filters,
        kernelSize: 3,
        padding: 'same',
        useBias: false, // BatchNorm's beta does the bias's job
        kernelInitializer: torchWeightInit(seeds.next()),
      }),
    );
    // PyTorch's BatchNorm2d: momentum 0.1 for the new batch == 0.9 for the running value here.
    // BatchNormNHWC trains with per-channel reductions instead of tfjs's broadcasts (~30x less time
    // in the BatchNorm gradient) and saves as a stock BatchNormalization layer.
    model.add(new BatchNormNHWC({ axis: -1, momentum: 0.9, epsilon: 1e-5 }));
    model.add(tf.layers.reLU());
    if (i % 2 === 1) model.add(tf.layers.maxPooling2d({ poolSize: 2 }));
  });
  model.add(tf.layers.globalMaxPooling2d({}));
  const last = VGG_WIDTHS[VGG_WIDTHS.length - 1]!;
  model.add(
    tf.layers.dense({
      units: numClasses,
      kernelInitializer: torchWeightInit(seeds.next()),
      biasInitializer: torchBiasInit(last, seeds.next()),
    }),
  );
  return model;
}
