// Registers our training kernels for tfjs's 'webgpu' backend (loaded only once
// @tensorflow/tfjs-backend-webgpu has been imported: see select.ts).
import * as tf from '@tensorflow/tfjs';
import { KernelRegistry, type KernelMaker } from '../kernel-registry.js';
import { conv2DBackpropFilterConfig } from './conv-filter-grad.js';

const registry = new KernelRegistry('webgpu');

/**
 * Replaces tfjs-backend-webgpu's training kernels that are slow on a real GPU with ours:
 * - Conv2DBackpropFilter: tiled, the reduction split over workgroups and summed in a fixed order
 *   (NHWC float32; anything else goes to the stock kernel).
 *
 * Idempotent. `keepStock` names kernels to leave as (or restore to) tfjs's, for comparisons.
 */
export function registerWebGpuTrainingKernels(options: { keepStock?: string[] } = {}): void {
  const kernels: KernelMaker[] = [
    [
      tf.Conv2DBackpropFilter,
      () => conv2DBackpropFilterConfig(registry.stockKernel(tf.Conv2DBackpropFilter)),
    ],
  ];
  registry.apply(kernels, options.keepStock);
}
