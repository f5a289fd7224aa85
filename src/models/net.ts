// `net`: the ancestor's tutorial CNN, layer for layer (PyTorch's CIFAR-10 tutorial):
// conv 6@5x5 -> relu -> maxpool 2 -> conv 16@5x5 -> relu -> maxpool 2 -> fc 120 -> fc 84 -> fc 10.
import * as tf from '@tensorflow/tfjs';
import { layerSeeds, torchBiasInit, torchWeightInit } from './init.js';
import type { ModelSpec } from './spec.js';

export function buildNet({ inputShape, numClasses, seed }: ModelSpec): tf.LayersModel {
  const seeds = layerSeeds(seed);
  const [, , channels] = inputShape;
  const conv = (filters: number, inChannels: number) =>
    tf.layers.conv2d({
      filters,
      kernelSize: 5,
      activation: 'relu',
      kernelInitializer: torchWeightInit(seeds.next()),
      biasInitializer: torchBiasInit(inChannels * 25, seeds.next()),
    });
  const dense = (units: number, fanIn: number, activation?: 'relu') =>
    tf.layers.dense({
      units,
      activation: activation ?? 'linear',
      kernelInitializer: torchWeightInit(seeds.next()),
      biasInitializer: torchBiasInit(fanIn, seeds.next()),
    });

  const model = tf.sequential({ name: 'net' });
  model.add(tf.layers.inputLayer({ inputShape }));
  model.add(conv(6, channels));
  model.add(tf.layers.maxPooling2d({ poolSize: 2 }));
  model.add(conv(16, 6));
  model.add(tf.layers.maxPooling2d({ poolSize: 2 }));
  model.add(tf.layers.flatten());
  const flat = model.outputs[0]!.shape[1]!;
  model.add(dense(120, flat, 'relu'));
  model.add(dense(84, 120, 'relu'));
  // Logits: the loss applies softmax; predict applies it too.
  model.add(dense(numClasses, 84));
  return model;
}
