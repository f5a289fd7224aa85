import type * as tf from '@tensorflow/tfjs';
import type { ModelName } from '../config.js';
import { buildNet } from './net.js';
import type { ModelSpec } from './spec.js';
import { buildVgg } from './vgg.js';

export type { ModelSpec } from './spec.js';

const builders: Record<ModelName, (spec: ModelSpec) => tf.LayersModel> = {
  net: buildNet,
  vgg: buildVgg,
};

export function buildModel(name: ModelName, spec: ModelSpec): tf.LayersModel {
  return builders[name](spec);
}

/** Each model's input size: CIFAR-sized RGB. Image folders are resized to it. */
export const INPUT_SHAPE: [number, number, number] = [32, 32, 3];
