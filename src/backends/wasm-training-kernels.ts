// Registers the kernels that training needs on the tfjs wasm backend but that
// tfjs-backend-wasm 4.22 lacks (Conv2DBackpropFilter) or runs slowly.
import * as tf from '@tensorflow/tfjs';
// Imported for its side effect: the stock wasm kernels must be registered
// before we replace some of them (their registration would otherwise win).
import '@tensorflow/tfjs-backend-wasm';
import { nativeKernelConfigs, registerReluGradient, type NativeKernels } from './native-kernels.js';
import { batchNormTrainConfigs } from './wasm-batch-norm.js';
import { conv2DBackpropFilterConfig, conv2DBackpropInputConfig } from './wasm-conv-grad.js';
import {
  addConfig,
  batchMatMulConfig,
  castConfig,
  equalConfig,
  identityConfig,
  maxPoolGradConfig,
} from './wasm-misc-kernels.js';

const BACKEND = 'wasm';

export interface WasmTrainingKernelOptions {
  /**
   * Kernel names to leave as (or restore to) the stock wasm kernels, for
   * comparisons. Names without a stock kernel are simply not registered.
   */
  keepStock?: string[];
  /**
   * The native addon (the `native` backend): its convolution and matrix
   * kernels replace ours and the stock ones, which remain their fallbacks.
   */
  native?: NativeKernels;
}

/** The stock kernels we replaced, by kernel name, to restore on request. */
const stock = new Map<string, tf.KernelConfig | undefined>();
/** The configs we registered, to recognise them across calls. */
const ours = new Set<tf.KernelConfig>();

function current(kernelName: string): tf.KernelConfig | undefined {
  // getKernel's typings say it always returns a config; it returns undefined
  // when none is registered.
  return tf.getKernel(kernelName, BACKEND) as tf.KernelConfig | undefined;
}

function stockKernel(kernelName: string): tf.KernelConfig | undefined {
  if (stock.has(kernelName)) return stock.get(kernelName);
  const k = current(kernelName);
  return k !== undefined && !ours.has(k) ? k : undefined;
}

function install(kernelName: string, make: () => tf.KernelConfig): void {
  const now = current(kernelName);
  if (!stock.has(kernelName)) stock.set(kernelName, now);
  // Unregister first: registerKernel over an existing one logs a warning.
  if (now !== undefined) tf.unregisterKernel(kernelName, BACKEND);
  const config = make();
  tf.registerKernel(config);
  ours.add(config);
}

function restore(kernelName: string): void {
  const now = current(kernelName);
  if (now === undefined || !ours.has(now)) return;
  tf.unregisterKernel(kernelName, BACKEND);
  const original = stock.get(kernelName);
  if (original !== undefined) tf.registerKernel(original);
}

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
 * - The fused training batch-norm kernels used by `batchNormTraining` /
 *   `BatchNormNHWC` (src/backends/batch-norm.ts).
 *
 * Idempotent; may be called before or after `tf.setBackend('wasm')` (none of
 * our kernels needs a setup step). `options.keepStock` is for comparisons.
 */
export function registerWasmTrainingKernels(options: WasmTrainingKernelOptions = {}): void {
  const keep = new Set(options.keepStock ?? []);
  const kernels: Array<[string, () => tf.KernelConfig]> = [
    [tf.Conv2DBackpropFilter, conv2DBackpropFilterConfig],
    [tf.Conv2DBackpropInput, () => conv2DBackpropInputConfig(stockKernel(tf.Conv2DBackpropInput))],
    [tf.MaxPoolGrad, maxPoolGradConfig],
    [tf.Identity, () => identityConfig(stockKernel(tf.Identity))],
    [tf.Cast, () => castConfig(stockKernel(tf.Cast))],
    [tf.BatchMatMul, () => batchMatMulConfig(stockKernel(tf.BatchMatMul))],
    [tf.Equal, () => equalConfig(stockKernel(tf.Equal))],
    [tf.Add, () => addConfig(stockKernel(tf.Add))],
    ...batchNormTrainConfigs(options.native).map((c): [string, () => tf.KernelConfig] => [
      c.kernelName,
      () => c,
    ]),
  ];
  if (options.native !== undefined) {
    const wasmMakers = new Map(kernels);
    const wasmConfigs = new Map<string, tf.KernelConfig | undefined>();
    // Native kernels fall back to ours where we have one, else to the stock kernel.
    const fallback = (name: string): tf.KernelConfig | undefined => {
      if (!wasmConfigs.has(name)) wasmConfigs.set(name, wasmMakers.get(name)?.() ?? stockKernel(name));
      return wasmConfigs.get(name);
    };
    const { addon, threads } = options.native;
    registerReluGradient();
    for (const config of nativeKernelConfigs(addon, threads, fallback)) {
      const at = kernels.findIndex(([name]) => name === config.kernelName);
      const entry: [string, () => tf.KernelConfig] = [config.kernelName, () => config];
      if (at >= 0) kernels[at] = entry;
      else kernels.push(entry);
    }
  }
  for (const [name, make] of kernels) {
    if (keep.has(name)) restore(name);
    else install(name, make);
  }
  // Kernels an earlier call replaced and this one does not (the native set's, when it is not asked
  // for) go back to stock. `stock` holds every name we ever replaced.
  const names = new Set(kernels.map(([name]) => name));
  for (const name of stock.keys()) if (!names.has(name)) restore(name);
}
