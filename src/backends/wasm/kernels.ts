// Registers the kernels that training needs on the tfjs wasm backend but that
// tfjs-backend-wasm 4.22 lacks (Conv2DBackpropFilter) or runs slowly, one file
// each in this folder; a backend built on this one (native/) lays its own over them.
import * as tf from '@tensorflow/tfjs';
// Imported for its side effect: the stock wasm kernels must be registered
// before we replace some of them (their registration would otherwise win).
import '@tensorflow/tfjs-backend-wasm';
import { KernelRegistry, type KernelMaker } from '../registry.js';
import { SGD_UPDATE } from '../sgd.js';
import { addConfig } from './add.js';
import { batchNormTrainConfigs } from './batch-norm.js';
import { conv2DBackpropFilterConfig, conv2DBackpropInputConfig } from './conv-grad.js';
import { equalConfig } from './equal.js';
import { castConfig, identityConfig } from './identity.js';
import { batchMatMulConfig } from './mat-mul.js';
import { maxPoolGradConfig } from './max-pool-grad.js';
import { sgdUpdateConfig } from './sgd.js';

export interface WasmTrainingKernelOptions {
  /**
   * Kernel names to leave as (or restore to) the stock wasm kernels, for
   * comparisons. Names without a stock kernel are simply not registered.
   */
  keepStock?: string[];
  /**
   * Kernels that replace ours and the stock ones (the `native` backend's), given
   * the kernel each falls back to: ours where we have one, else the stock one.
   */
  overlay?: (fallback: (name: string) => tf.KernelConfig | undefined) => tf.KernelConfig[];
}

const registry = new KernelRegistry('wasm');
const stockKernel = (name: string): tf.KernelConfig | undefined => registry.stockKernel(name);

/**
 * Registers our training kernels for the 'wasm' backend:
 * - Conv2DBackpropFilter (missing from tfjs-backend-wasm): a WebAssembly SIMD
 *   loop of ours; Conv2DBackpropInput (stock one is scalar loops): an XNNPACK
 *   forward convolution. NHWC, any stride, 'same' / 'valid' / explicit
 *   padding, dilation 1 (tfjs's conv2d gradient supports no other).
 * - MaxPoolGrad (SIMD, first maximum wins), Identity and same-dtype Cast (no copy),
 *   BatchMatMul with transposes (XNNPACK instead of scalar loops) and Equal
 *   with a broadcast operand (contiguous runs instead of per-element indices),
 *   Add of a per-channel bias (SIMD instead of a scalar broadcasting loop).
 * - The fused training batch-norm kernels used by `batchNormTraining`
 *   (src/backends/batch-norm.ts) and the SGD update (src/backends/sgd.ts).
 *
 * Idempotent; may be called before or after `tf.setBackend('wasm')` (none of
 * our kernels needs a setup step). `options.keepStock` is for comparisons.
 */
export function registerWasmTrainingKernels(options: WasmTrainingKernelOptions = {}): void {
  const kernels: KernelMaker[] = [
    [tf.Conv2DBackpropFilter, conv2DBackpropFilterConfig],
    [tf.Conv2DBackpropInput, () => conv2DBackpropInputConfig(stockKernel(tf.Conv2DBackpropInput))],
    [tf.MaxPoolGrad, maxPoolGradConfig],
    [tf.Identity, () => identityConfig(stockKernel(tf.Identity))],
    [tf.Cast, () => castConfig(stockKernel(tf.Cast))],
    [tf.BatchMatMul, () => batchMatMulConfig(stockKernel(tf.BatchMatMul))],
    [tf.Equal, () => equalConfig(stockKernel(tf.Equal))],
    [tf.Add, () => addConfig(stockKernel(tf.Add))],
    ...batchNormTrainConfigs().map((c): KernelMaker => [c.kernelName, () => c]),
    [SGD_UPDATE, sgdUpdateConfig],
  ];
  if (options.overlay !== undefined) {
    const wasmMakers = new Map(kernels);
    const wasmConfigs = new Map<string, tf.KernelConfig | undefined>();
    // Native kernels fall back to ours where we have one, else to the stock kernel.
    const fallback = (name: string): tf.KernelConfig | undefined => {
      if (!wasmConfigs.has(name)) wasmConfigs.set(name, wasmMakers.get(name)?.() ?? stockKernel(name));
      return wasmConfigs.get(name);
    };
    for (const config of options.overlay(fallback)) {
      const at = kernels.findIndex(([name]) => name === config.kernelName);
      const entry: KernelMaker = [config.kernelName, () => config];
      if (at >= 0) kernels[at] = entry;
      else kernels.push(entry);
    }
  }
  registry.apply(kernels, options.keepStock);
}
