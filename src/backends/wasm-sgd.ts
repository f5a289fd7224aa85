// The SGD update as one WebAssembly SIMD call per variable instead of about seven tfjs ops per
// variable (each with its own dispatch, allocation and pass over memory): for the tutorial CNN (10
// variables) the ops cost ~2 ms of a ~28 ms step. Same float32 operations in the same order as the
// ops in src/training/sgd.ts, so the same bits (tested). The momentum buffers are updated in place;
// the weights go to a new tensor that the variable is assigned, never in place: the wasm backend
// caches XNNPACK operators (with their packed weights) by tensor, so a weight changed in place would
// leave a stale copy in use.
import * as tf from '@tensorflow/tfjs';
import { asWasmBackend, heapMemory, heapOffset } from './wasm-internals.js';
import { simdKernels } from './wasm-simd-kernels.js';

export interface SgdSettings {
  momentum: number;
  nesterov: boolean;
  weightDecay: number;
}

/**
 * A backend's fused SGD update of `variables` (and their momentum `buffers`) with the gradients
 * `grads`: true when done, false (nothing changed) when the active backend is not its own.
 */
export type FusedSgdStep = (
  variables: readonly tf.Variable[],
  grads: readonly tf.Tensor[],
  buffers: readonly tf.Variable[],
  settings: SgdSettings,
  learningRate: number,
) => boolean;

/**
 * Updates `variables` (and the momentum `buffers`) in place when the active backend is wasm with
 * our SIMD kernels and no other tensor shares their memory; returns false (and changes nothing)
 * otherwise, for the caller to use tfjs ops.
 */
export const wasmSgdStep: FusedSgdStep = (variables, grads, buffers, settings, learningRate) => {
  if (tf.getBackend() !== 'wasm') return false;
  const backend = asWasmBackend(tf.backend());
  const simd = simdKernels(heapMemory(backend));
  if (simd === null) return false;
  const all = [...variables, ...grads, ...buffers];
  if (all.some((t) => t.dtype !== 'float32')) return false;
  // Writing a buffer in place is only safe when nothing else reads the same memory (tfjs shares
  // buffers between tensors, e.g. through Identity and Reshape).
  if (buffers.some((t) => backend.refCount(t.dataId) !== 1)) return false;
  for (let i = 0; i < variables.length; i++) {
    const w = variables[i]!;
    const out = backend.makeOutput(w.shape, 'float32');
    simd.sgdUpdate(
      heapOffset(backend, w),
      heapOffset(backend, out),
      heapOffset(backend, grads[i]!),
      heapOffset(backend, buffers[i]!),
      w.size,
      learningRate,
      settings.momentum,
      settings.weightDecay,
      settings.nesterov ? 1 : 0,
    );
    const next = tf.engine().makeTensorFromTensorInfo(out);
    w.assign(next);
    next.dispose();
  }
  return true;
};
