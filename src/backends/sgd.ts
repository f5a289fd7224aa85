// The SGD update as one kernel per variable where the active backend registers one (wasm: one SIMD
// call, wasm/sgd.ts; webgpu: two dispatches, webgpu/sgd.ts) instead of about seven tfjs ops per
// variable, each with its own dispatch, allocation and pass over memory. src/training/sgd.ts owns the
// arithmetic and runs it as tfjs ops where no kernel is registered; the kernels do the same float32
// operations in the same order, so the same bits (tested).
import * as tf from '@tensorflow/tfjs';
import { hasKernel } from './registry.js';

/**
 * One variable's update: inputs {w, g, buffer} (weights, gradient, momentum buffer), attrs
 * SgdUpdateAttrs -> [w'], or [w', buffer'] where the kernel did not update the buffer in place
 * (nor leave it as it was: momentum 0).
 */
export const SGD_UPDATE = 'ImageClassifierSgdUpdate';

export interface SgdSettings {
  momentum: number;
  nesterov: boolean;
  weightDecay: number;
}

export interface SgdUpdateAttrs extends SgdSettings {
  learningRate: number;
}

/**
 * Updates `variables` (and their momentum `buffers`) with the gradients `grads` through the active
 * backend's SGD_UPDATE kernel: true when done; false, changing nothing, where the backend has none or
 * a tensor is not float32 (the caller then runs tfjs ops).
 */
export function fusedSgdStep(
  variables: readonly tf.Variable[],
  grads: readonly tf.Tensor[],
  buffers: readonly tf.Variable[],
  settings: SgdSettings,
  learningRate: number,
): boolean {
  if (!hasKernel(SGD_UPDATE)) return false;
  if ([...variables, ...grads, ...buffers].some((t) => t.dtype !== 'float32')) return false;
  const { momentum, nesterov, weightDecay } = settings;
  const attrs: SgdUpdateAttrs = { momentum, nesterov, weightDecay, learningRate };
  variables.forEach((w, i) => {
    const buffer = buffers[i]!;
    // Cast: runKernel takes a generic attribute map; these are SGD_UPDATE's attrs.
    const outputs = tf
      .engine()
      .runKernel(SGD_UPDATE, { w, g: grads[i]!, buffer }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
    const [next, nextBuffer] = outputs;
    if (nextBuffer !== undefined) buffer.assign(nextBuffer);
    w.assign(next!);
    tf.dispose(outputs);
  });
  return true;
}
