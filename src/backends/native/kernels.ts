// The `native` backend's kernels: convolutions, matrix products, batch norm's
// training passes, ReLU and max pooling computed by our optional Node-API addon
// (./addon.ts) with AVX2 or AVX-512 on all cores, straight on the tfjs wasm
// backend's heap. Every other kernel is the wasm backend's. Convolutions,
// measured on VGG shapes (2 cores): 165-205
// GFLOP/s against ~35 for the wasm path (128-bit SIMD without FMA), because
// x86 vectors are 4x wider and fuse the multiply with the add.
//
// Results are deterministic (one fused multiply-add chain per output element,
// threads split outputs) and identical between AVX2 and AVX-512, but not the
// wasm backend's bits: runs record the backend, and `reproduce` compares it.
import * as tf from '@tensorflow/tfjs';
import { RELU_GRAD, registerReluGradient } from '../relu.js';
import { registerWasmTrainingKernels, type WasmTrainingKernelOptions } from '../wasm/kernels.js';
import { batchNormTrainConfigs, type BatchNormPasses } from '../wasm/batch-norm.js';
import {
  backpropFilterArgs,
  backpropInputArgs,
  convGeometry,
  pool2DInfo,
  type ConvGeometry,
} from '../wasm/geometry.js';
import { allocF32, asWasmBackend, heapOffset, stockCaller, type WasmBackend } from '../wasm/internals.js';
import { heapBytes, type NativeAddon, type NativeKernels, type PoolGeometry } from './addon.js';

const size = (t: tf.TensorInfo): number => t.shape.reduce((a, b) => a * b, 1);
const isF32 = (...ts: Array<tf.TensorInfo | undefined>): boolean =>
  ts.every((t) => t === undefined || t.dtype === 'float32');
const sameDims = (d: number | [number, number] | undefined): boolean =>
  d === undefined || (Array.isArray(d) ? d[0] === 1 && d[1] === 1 : d === 1);

/** A convolution input's arguments to the addon: its heap offset, then its NHWC shape. */
const inputArgs = (
  wb: WasmBackend,
  x: tf.TensorInfo,
  g: ConvGeometry,
): [x: number, n: number, h: number, w: number, c: number] => [
  heapOffset(wb, x),
  g.batch,
  g.inH,
  g.inW,
  g.inC,
];

/**
 * Channels are the pooling loops' vector lanes: below 16, the wasm kernels do better (net's 6-channel
 * layer: gradient 1.7 ms native, ~1 ms wasm; VGG's 32-128 channels: 19 ms native, 22 wasm).
 */
const POOL_MIN_CHANNELS = 16;

/** A max pooling's geometry as the addon takes it, and its output's shape. */
function poolArgs(
  x: tf.TensorInfo,
  a: Pick<tf.MaxPoolAttrs, 'filterSize' | 'strides' | 'pad' | 'dimRoundingMode'>,
): { args: PoolGeometry; outShape: number[] } {
  const info = pool2DInfo(x, a);
  return {
    args: [
      info.batchSize,
      info.inHeight,
      info.inWidth,
      info.inChannels,
      info.filterHeight,
      info.filterWidth,
      info.strideHeight,
      info.strideWidth,
      info.padInfo.top,
      info.padInfo.left,
      info.outHeight,
      info.outWidth,
    ],
    outShape: [info.batchSize, info.outHeight, info.outWidth, info.outChannels],
  };
}

type Fallbacks = (kernelName: string) => tf.KernelConfig | undefined;

/** Batch norm's full-size passes on the addon: all cores, any channel count. */
function nativePasses(backend: WasmBackend, { addon, threads }: NativeKernels): BatchNormPasses {
  return {
    bnStats: (...args) => addon.bnStats(heapBytes(backend), ...args, threads),
    bnApply: (...args) => addon.bnApply(heapBytes(backend), ...args, threads),
    bnGradStats: (...args) => addon.bnGradStats(heapBytes(backend), ...args, threads),
    bnGradApply: (...args) => addon.bnGradApply(heapBytes(backend), ...args, threads),
  };
}

/**
 * Kernel configs for the wasm backend that run on the addon and hand every case
 * they do not cover to `fallback(kernelName)` (our wasm kernel or the stock one).
 */
export function nativeKernelConfigs(native: NativeKernels, fallback: Fallbacks): tf.KernelConfig[] {
  const { addon, threads } = native;
  const config = (
    kernelName: string,
    run: (params: Parameters<tf.KernelFunc>[0], wb: WasmBackend) => tf.TensorInfo | null,
  ): tf.KernelConfig => {
    const other = stockCaller(fallback(kernelName), kernelName);
    return {
      kernelName,
      backendName: 'wasm',
      kernelFunc: (params) => run(params, asWasmBackend(params.backend)) ?? other(params),
    };
  };

  const convForward = (params: Parameters<tf.KernelFunc>[0], wb: WasmBackend): tf.TensorInfo | null => {
    const { x, filter, bias, preluActivationWeights } = params.inputs as Record<
      string,
      tf.TensorInfo | undefined
    >;
    // Cast: tfjs passes attrs as a generic map; these are the op's attrs (Conv2D's are a subset).
    const a = params.attrs as unknown as tf.FusedConv2DAttrs;
    const activation = a.activation ?? 'linear';
    if (x === undefined || filter === undefined || preluActivationWeights !== undefined) return null;
    if (
      (activation !== 'linear' && activation !== 'relu') ||
      !sameDims(a.dilations) ||
      !isF32(x, filter, bias)
    )
      return null;
    const g = convGeometry(
      x.shape as [number, number, number, number],
      filter.shape as [number, number, number, number],
      a.strides,
      a.pad,
      a.dimRoundingMode,
      'NHWC',
    );
    if ((bias !== undefined && size(bias) !== g.outC) || size(x) === 0 || size(filter) === 0) return null;
    const out = allocF32(wb, [g.batch, g.outH, g.outW, g.outC]);
    addon.convForward(
      heapBytes(wb),
      ...inputArgs(wb, x, g),
      heapOffset(wb, filter),
      g.kH,
      g.kW,
      g.outC,
      g.sH,
      g.sW,
      g.padTop,
      g.padLeft,
      g.outH,
      g.outW,
      bias === undefined ? -1 : heapOffset(wb, bias),
      activation === 'relu' ? 1 : 0,
      heapOffset(wb, out),
      threads,
    );
    return out;
  };

  return [
    config(tf.Conv2D, convForward),
    config(tf.FusedConv2D, convForward),
    config(tf.Conv2DBackpropInput, (params, wb) => {
      const { dy, filter, g } = backpropInputArgs(params);
      if (!isF32(dy, filter)) return null;
      if (g.padTop >= g.kH || g.padLeft >= g.kW || size(dy) === 0) return null;
      const out = allocF32(wb, [g.batch, g.inH, g.inW, g.inC]);
      addon.convBackpropInput(
        heapBytes(wb),
        heapOffset(wb, dy),
        g.batch,
        g.outH,
        g.outW,
        g.outC,
        heapOffset(wb, filter),
        g.kH,
        g.kW,
        g.inC,
        g.padTop,
        g.padLeft,
        g.inH,
        g.inW,
        heapOffset(wb, out),
        threads,
        g.sH,
        g.sW,
      );
      return out;
    }),
    config(tf.Conv2DBackpropFilter, (params, wb) => {
      const { x, dy, g } = backpropFilterArgs(params);
      if (!isF32(x, dy)) return null;
      if (size(x) === 0 || size(dy) === 0) return null;
      const out = allocF32(wb, [g.kH, g.kW, g.inC, g.outC]);
      addon.convBackpropFilter(
        heapBytes(wb),
        ...inputArgs(wb, x, g),
        heapOffset(wb, dy),
        g.outH,
        g.outW,
        g.outC,
        g.kH,
        g.kW,
        g.sH,
        g.sW,
        g.padTop,
        g.padLeft,
        heapOffset(wb, out),
        threads,
      );
      return out;
    }),
    config(tf.Relu, (params, wb) => {
      const { x } = params.inputs as { x: tf.TensorInfo };
      if (!isF32(x) || size(x) === 0) return null;
      const out = allocF32(wb, x.shape);
      addon.relu(heapBytes(wb), heapOffset(wb, x), heapOffset(wb, out), size(x), threads);
      return out;
    }),
    {
      kernelName: RELU_GRAD,
      backendName: 'wasm',
      kernelFunc: ({ inputs, backend }) => {
        const wb = asWasmBackend(backend);
        const { dy, x } = inputs as { dy: tf.TensorInfo; x: tf.TensorInfo };
        const out = allocF32(wb, x.shape);
        if (size(x) > 0) {
          addon.reluGrad(
            heapBytes(wb),
            heapOffset(wb, dy),
            heapOffset(wb, x),
            heapOffset(wb, out),
            size(x),
            threads,
          );
        }
        return out;
      },
    },
    config(tf.MaxPool, (params, wb) => {
      const { x } = params.inputs as { x: tf.TensorInfo };
      // Cast: tfjs passes attrs as a generic map; these are the op's attrs.
      const a = params.attrs as unknown as tf.MaxPoolAttrs;
      if (!isF32(x) || size(x) === 0 || x.shape.length !== 4 || x.shape[3]! < POOL_MIN_CHANNELS) return null;
      const pool = poolArgs(x, a);
      const out = allocF32(wb, pool.outShape);
      addon.maxPool(heapBytes(wb), heapOffset(wb, x), ...pool.args, heapOffset(wb, out), threads);
      return out;
    }),
    config(tf.MaxPoolGrad, (params, wb) => {
      const { dy, input, output } = params.inputs as Record<string, tf.TensorInfo>;
      // Cast: tfjs passes attrs as a generic map; these are the op's attrs.
      const a = params.attrs as unknown as tf.MaxPoolGradAttrs;
      if (dy === undefined || input === undefined || output === undefined || !isF32(dy, input, output))
        return null;
      if (size(input) === 0 || input.shape[3]! < POOL_MIN_CHANNELS) return null;
      const pool = poolArgs(input, a);
      const out = allocF32(wb, input.shape);
      addon.maxPoolGrad(
        heapBytes(wb),
        heapOffset(wb, input),
        ...pool.args,
        heapOffset(wb, output),
        heapOffset(wb, dy),
        heapOffset(wb, out),
        threads,
      );
      return out;
    }),
    config(tf.BatchMatMul, (params, wb) => matMul(addon, threads, params, wb)),
    config(tf._FusedMatMul, (params, wb) => matMul(addon, threads, params, wb)),
    // Our wasm batch-norm kernels with the addon's passes.
    ...batchNormTrainConfigs((backend) => nativePasses(backend, native)),
  ];
}

/** BatchMatMul and _FusedMatMul (bias, ReLU) for one matrix pair, not both transposed. */
function matMul(
  addon: NativeAddon,
  threads: number,
  params: Parameters<tf.KernelFunc>[0],
  wb: WasmBackend,
): tf.TensorInfo | null {
  const { a, b, bias, preluActivationWeights } = params.inputs as Record<string, tf.TensorInfo | undefined>;
  // Cast: tfjs passes attrs as a generic map; _FusedMatMul's attrs extend BatchMatMul's.
  const { transposeA, transposeB, activation = 'linear' } = params.attrs as unknown as tf._FusedMatMulAttrs;
  if (a === undefined || b === undefined || preluActivationWeights !== undefined) return null;
  if ((activation !== 'linear' && activation !== 'relu') || !isF32(a, b, bias)) return null;
  if (transposeA && transposeB) return null;
  const batch = (t: tf.TensorInfo): number => t.shape.slice(0, -2).reduce((p, d) => p * d, 1);
  if (batch(a) !== 1 || batch(b) !== 1 || a.shape.length < 2 || b.shape.length < 2) return null;
  const [aRows, aCols] = a.shape.slice(-2) as [number, number];
  const [bRows, bCols] = b.shape.slice(-2) as [number, number];
  const m = transposeA ? aCols : aRows;
  const k = transposeA ? aRows : aCols;
  const n = transposeB ? bRows : bCols;
  if ((transposeB ? bCols : bRows) !== k || m === 0 || n === 0 || k === 0) return null;
  // A bias must be one value per column (a dense layer's); other broadcasts go to the fallback.
  if (bias !== undefined && (size(bias) !== n || bias.shape[bias.shape.length - 1] !== n)) return null;
  // The transposed-A form (a weight gradient) adds no bias.
  if (transposeA && (bias !== undefined || activation !== 'linear')) return null;
  const out = allocF32(wb, [...(a.shape.length >= b.shape.length ? a.shape : b.shape).slice(0, -2), m, n]);
  addon.matMul(
    heapBytes(wb),
    heapOffset(wb, a),
    heapOffset(wb, b),
    heapOffset(wb, out),
    m,
    k,
    n,
    transposeA ? 1 : 0,
    transposeB ? 1 : 0,
    bias === undefined ? -1 : heapOffset(wb, bias),
    activation === 'relu' ? 1 : 0,
    threads,
  );
  return out;
}

/**
 * The `native` backend's kernels: our wasm training kernels, with the addon's convolution, matrix
 * and pooling kernels over them (ours, or the stock ones, remain their fallbacks).
 */
export function registerNativeKernels(
  native: NativeKernels,
  options: Omit<WasmTrainingKernelOptions, 'overlay'> = {},
): void {
  registerReluGradient();
  registerWasmTrainingKernels({ ...options, overlay: (fallback) => nativeKernelConfigs(native, fallback) });
}
