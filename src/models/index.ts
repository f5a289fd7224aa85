import type * as tf from '@tensorflow/tfjs';
import type { ModelName } from '../config.js';
import { buildNet } from './net.js';
import type { ModelSpec } from './spec.js';
import { buildResnet } from './resnet.js';
import { buildVgg } from './vgg.js';

export type { ModelSpec } from './spec.js';

const builders: Record<ModelName, (spec: ModelSpec) => tf.LayersModel> = {
  net: buildNet,
  vgg: buildVgg,
  resnet: buildResnet,
};

export function buildModel(name: ModelName, spec: ModelSpec): tf.LayersModel {
  return builders[name](spec);
}

/** The default input: CIFAR-sized RGB (benchmarks and kernel tests use it). */
export const INPUT_SHAPE: [number, number, number] = [32, 32, 3];

/** A run's input: --image-size square RGB; image folders are decoded and cached at that size. */
export function inputShapeOf(config: { imageSize: number }): [number, number, number] {
  return [config.imageSize, config.imageSize, 3];
}
