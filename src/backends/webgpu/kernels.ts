// Registers our training kernels for tfjs's 'webgpu' backend (loaded only once
// @tensorflow/tfjs-backend-webgpu has been imported: see select.ts).
import * as tf from '@tensorflow/tfjs';
import { KernelRegistry, type KernelMaker } from '../registry.js';
import { RELU_GRAD, registerReluGradient } from '../relu.js';
import { SGD_UPDATE } from '../sgd.js';
import { batchNormTrainConfigs } from './batch-norm.js';
import { conv2DBackpropFilterConfig } from './conv-filter-grad.js';
import { elementwise, run, type WebGpuBackend } from './program.js';
import { sgdUpdateConfig } from './sgd.js';

const registry = new KernelRegistry('webgpu');

/** ReLU's gradient in one pass (tfjs: Step, Cast and Multiply). */
const reluGradConfig = (): tf.KernelConfig => ({
  kernelName: RELU_GRAD,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend: b }) => {
    const backend = b as unknown as WebGpuBackend;
    const { dy, x } = inputs as { dy: tf.TensorInfo; x: tf.TensorInfo };
    const prog = elementwise(
      backend,
      'relu_grad',
      x.shape,
      ['dy', 'x'],
      'result[i] = select(0.0, dy[i], x[i] > 0.0);',
    );
    return run(backend, prog, [dy, x]);
  },
});

/**
 * Replaces tfjs-backend-webgpu's training kernels that are slow on a real GPU, or that take many
 * dispatches, with ours:
 * - Conv2DBackpropFilter: tiled, the reduction split over workgroups and summed in a fixed order
 *   (NHWC float32; anything else goes to the stock kernel);
 * - the fused batch-norm training passes (src/backends/batch-norm.ts), ReLU's gradient and the SGD
 *   update (src/backends/sgd.ts).
 *
 * Idempotent. `keepStock` names kernels to leave as (or restore to) tfjs's, for comparisons.
 */
export function registerWebGpuTrainingKernels(options: { keepStock?: string[] } = {}): void {
  registerReluGradient();
  const kernels: KernelMaker[] = [
    [
      tf.Conv2DBackpropFilter,
      () => conv2DBackpropFilterConfig(registry.stockKernel(tf.Conv2DBackpropFilter)),
    ],
    [RELU_GRAD, reluGradConfig],
    [SGD_UPDATE, sgdUpdateConfig],
    ...batchNormTrainConfigs().map((c): KernelMaker => [c.kernelName, () => c]),
  ];
  registry.apply(kernels, options.keepStock);
}
