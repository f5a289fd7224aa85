// `resnet`: a ResNet-9-style network (the shape of the fast CIFAR-10 ResNets of Page and airbench),
// narrowed to run on a CPU: prep conv 32, then three stages of conv + BatchNorm + ReLU + max pool
// (64, 128, 256 filters), the first and last followed by a residual block of two such convs (no
// pool) added back to its input; global max pool; one linear layer. Larger inputs get one more 2x2
// pool after the prep conv per doubling past 32 px, so the stages see 32x32 (64 px -> one pool, 96
// and 128 px -> two, 256 px -> three) and the cost per image stays near CIFAR-10's.
import * as tf from '@tensorflow/tfjs';
import { BatchNormNHWC } from './layers/batch-norm.js';
import { layerSeeds, torchBiasInit, torchWeightInit } from './init.js';
import type { ModelSpec } from './spec.js';

export const RESNET_WIDTHS = { prep: 32, stages: [64, 128, 256] } as const;
/** The stages with a residual block after them (ResNet-9: the first and the last). */
const RESIDUAL_STAGES = new Set([0, 2]);

/** 2x2 pools before the stages: enough to bring the input down to about 32 px. */
export function stemPools(inputSize: number): number {
  return Math.max(0, Math.round(Math.log2(inputSize / 32)));
}

export function buildResnet({ inputShape, numClasses, seed }: ModelSpec): tf.LayersModel {
  const seeds = layerSeeds(seed);
  // Conv (no bias: BatchNorm's beta does its job), BatchNorm as PyTorch's (momentum 0.1), ReLU.
  const convBnRelu = (x: tf.SymbolicTensor, filters: number): tf.SymbolicTensor => {
    const conv = tf.layers.conv2d({
      filters,
      kernelSize: 3,
      padding: 'same',
      useBias: false,
      kernelInitializer: torchWeightInit(seeds.next()),
    });
    const bn = new BatchNormNHWC({ axis: -1, momentum: 0.9, epsilon: 1e-5 });
    return tf.layers.reLU().apply(bn.apply(conv.apply(x))) as tf.SymbolicTensor;
  };
  const pool = (x: tf.SymbolicTensor) =>
    tf.layers.maxPooling2d({ poolSize: 2 }).apply(x) as tf.SymbolicTensor;

  const input = tf.input({ shape: inputShape });
  let x = convBnRelu(input, RESNET_WIDTHS.prep);
  for (let i = 0; i < stemPools(inputShape[0]); i++) x = pool(x);
  RESNET_WIDTHS.stages.forEach((filters, stage) => {
    x = pool(convBnRelu(x, filters));
    if (RESIDUAL_STAGES.has(stage)) {
      const branch = convBnRelu(convBnRelu(x, filters), filters);
      x = tf.layers.add().apply([x, branch]) as tf.SymbolicTensor;
    }
  });
  x = tf.layers.globalMaxPooling2d({}).apply(x) as tf.SymbolicTensor;
  const last = RESNET_WIDTHS.stages[RESNET_WIDTHS.stages.length - 1]!;
  const logits = tf.layers
    .dense({
      units: numClasses,
      kernelInitializer: torchWeightInit(seeds.next()),
      biasInitializer: torchBiasInit(last, seeds.next()),
    })
    .apply(x) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: logits, name: 'resnet' });
}
