// ReLU's gradient in one pass where a backend registers a kernel for it (native, webgpu); tfjs's
// own formula elsewhere. Same values either way.
import * as tf from '@tensorflow/tfjs';
import { hasKernel } from './registry.js';

/** dx = dy * (x > 0 ? 1 : 0) in one pass: inputs {dy, x}. */
export const RELU_GRAD = 'ImageClassifierReluGrad';

/**
 * Relu's gradient through RELU_GRAD where the backend has it, else tfjs's own formula
 * (Step, Cast, Multiply: two more passes over the activations). Same values either way;
 * gradients are registered for every backend, hence the check.
 */
export function registerReluGradient(): void {
  tf.registerGradient({
    kernelName: tf.Relu,
    inputsToSave: ['x'],
    gradFunc: (dy, saved) => {
      const [x] = saved as [tf.Tensor];
      const dyT = dy as tf.Tensor;
      return {
        x: () =>
          hasKernel(RELU_GRAD)
            ? (tf.engine().runKernel(RELU_GRAD, { dy: dyT, x }) as tf.Tensor)
            : tf.mul(dyT, tf.cast(tf.step(x), 'float32')),
      };
    },
  });
}
