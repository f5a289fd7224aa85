// Wasm kernels whose stock versions cost training steps time:
// - Cast to the tensor's own dtype (the ReLU gradient casts the float32
//   output of Step to float32): the stock kernel copies; ours shares, as Identity.
// - Identity: the stock one copies the tensor. The engine clones every tensor
//   it saves for backprop through Identity, so each step copied most
//   activations once more. Sharing the buffer (refcounted, as the wasm Reshape
//   and the cpu backend's Identity already do) is safe because no wasm kernel
//   writes into its inputs.
// - MaxPoolGrad: the stock one is a generic 3-D pooling loop that also keeps
//   the last of tied maxima; ours routes each window's gradient to its first
//   maximum (as the cpu backend does), in one WebAssembly SIMD pass over x
//   (4 channels a vector, the last C % 4 one at a time), images split
//   between the kernel threads. For the tutorial CNN's first pooling layer (C = 6)
//   this took 4.8 ms of a 36 ms step as a JS loop, 0.3 ms now.
// - Equal with one operand broadcast (the gradient of a max reduction, e.g.
//   global max pooling, compares x with its broadcast maxima): the stock
//   kernel computes broadcast indices per element; ours walks contiguous runs.
// - Add of a per-channel bias (every conv and dense layer's forward pass): the
//   stock kernel's broadcasting loop is scalar (1.75 ms for the tutorial CNN's
//   first layer, 64x28x28x6); ours adds the bias repeated to lcm(C, 4) floats
//   four lanes at a time, the same bits.
// - BatchMatMul: the stock one uses XNNPACK only without transposes; the
//   transposed products of dense-layer gradients ran as scalar loops. We
//   transpose the (small) operand and run the XNNPACK 1x1 convolution.
import * as tf from '@tensorflow/tfjs';
import {
  allocF32,
  asWasmBackend,
  dataView,
  f32View,
  freeTemp,
  heapMemory,
  heapOffset,
  stockCaller,
  wasmConv2D,
  wasmId,
} from './wasm-internals.js';
import { simdKernels } from './wasm-simd-kernels.js';
import { kernelPool } from './wasm-workers.js';

/** Elements below which a bias Add stays with the stock kernel. */
const ADD_MIN_ELEMENTS = 1 << 12;

/** Exported for tests, which force the threaded path on small shapes. */
export const maxPoolGradTuning = {
  /** Elements of x below which MaxPoolGrad stays on the calling thread (the hand-over costs more). */
  poolMinElements: 1 << 16,
};

/** The output is the input: share its buffer (one more reference) instead of copying it. */
function shareBuffer(backend: unknown, x: tf.TensorInfo): tf.TensorInfo {
  asWasmBackend(backend).incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

export function identityConfig(fallback: tf.KernelConfig | undefined): tf.KernelConfig {
  const stock = stockCaller(fallback, tf.Identity);
  return {
    kernelName: tf.Identity,
    backendName: 'wasm',
    kernelFunc: (params) => {
      const { x } = params.inputs as { x: tf.TensorInfo };
      return x.dtype === 'string' ? stock(params) : shareBuffer(params.backend, x);
    },
  };
}

export function castConfig(fallback: tf.KernelConfig | undefined): tf.KernelConfig {
  const stock = stockCaller(fallback, tf.Cast);
  return {
    kernelName: tf.Cast,
    backendName: 'wasm',
    kernelFunc: (params) => {
      const { x } = params.inputs as { x: tf.TensorInfo };
      // Cast: tfjs passes attrs as a generic map; these are the op's attrs.
      const { dtype } = params.attrs as unknown as tf.CastAttrs;
      // A cast to the same dtype is an identity (as in the cpu backend's Cast).
      if (x.dtype !== dtype || x.dtype === 'string') return stock(params);
      return shareBuffer(params.backend, x);
    },
  };
}

/** A 2-D pooling's geometry (NHWC, no dilation), for our kernels and the native backend's. */
export function pool2DInfo(
  x: tf.TensorInfo,
  a: Pick<tf.MaxPoolAttrs, 'filterSize' | 'strides' | 'pad' | 'dimRoundingMode'>,
): ReturnType<typeof tf.backend_util.computePool2DInfo> {
  return tf.backend_util.computePool2DInfo(
    x.shape as [number, number, number, number],
    a.filterSize,
    a.strides,
    1,
    a.pad,
    a.dimRoundingMode,
  );
}

export function maxPoolGradConfig(): tf.KernelConfig {
  return {
    kernelName: tf.MaxPoolGrad,
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const wb = asWasmBackend(backend);
      const { dy, input } = inputs as { dy: tf.TensorInfo; input: tf.TensorInfo };
      // Cast: tfjs passes attrs as a generic map; these are the op's attrs.
      const a = attrs as unknown as tf.MaxPoolGradAttrs;
      const info = pool2DInfo(input, a);
      const { batchSize: N, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW } = info;
      const { strideHeight: sH, strideWidth: sW, filterHeight: fH, filterWidth: fW } = info;
      const pT = info.padInfo.top;
      const pL = info.padInfo.left;

      const dx = allocF32(wb, input.shape);
      f32View(wb, dx).fill(0);
      const simd = simdKernels(heapMemory(wb));
      if (simd !== null) {
        const xPtr = heapOffset(wb, input);
        const dyPtr = heapOffset(wb, dy);
        const delta = heapOffset(wb, dx) - xPtr;
        // Images split between threads: each writes only its own images' dx.
        const pool = N * H * W * C >= maxPoolGradTuning.poolMinElements ? kernelPool(wb) : null;
        const threads = Math.min(pool?.threads ?? 1, N);
        const calls = Array.from({ length: threads }, (_, t) => {
          const n0 = Math.floor((N * t) / threads);
          const n1 = Math.floor((N * (t + 1)) / threads);
          return [
            [
              xPtr + n0 * H * W * C * 4,
              dyPtr + n0 * OH * OW * C * 4,
              delta,
              n1 - n0,
              H,
              W,
              C,
              OH,
              OW,
              fH,
              fW,
              sH,
              sW,
              pT,
              pL,
            ],
          ];
        });
        if (pool === null) simd.maxPoolGrad(...calls[0]![0]!);
        else pool.run('maxPoolGrad', calls);
        return dx;
      }
      // Plain JS where WebAssembly SIMD is unavailable.
      const xs = f32View(wb, input);
      const dys = f32View(wb, dy);
      const dxs = f32View(wb, dx);
      const best = new Float32Array(C);
      const pos = new Int32Array(C);
      for (let n = 0; n < N; n++) {
        for (let oh = 0; oh < OH; oh++) {
          const h0 = Math.max(0, oh * sH - pT);
          const h1 = Math.min(H, oh * sH - pT + fH);
          for (let ow = 0; ow < OW; ow++) {
            const w0 = Math.max(0, ow * sW - pL);
            const w1 = Math.min(W, ow * sW - pL + fW);
            best.fill(-Infinity);
            pos.fill(-1);
            for (let h = h0; h < h1; h++) {
              for (let w = w0; w < w1; w++) {
                const base = ((n * H + h) * W + w) * C;
                for (let c = 0; c < C; c++) {
                  const v = xs[base + c]!;
                  // Strictly greater: the first maximum wins, as on cpu.
                  if (v > best[c]!) {
                    best[c] = v;
                    pos[c] = base + c;
                  }
                }
              }
            }
            const dyBase = ((n * OH + oh) * OW + ow) * C;
            for (let c = 0; c < C; c++) {
              const p = pos[c]!;
              if (p >= 0) dxs[p] = dxs[p]! + dys[dyBase + c]!;
            }
          }
        }
      }
      return dx;
    },
  };
}

/** Copies a row-major [rows, cols] matrix transposed into `dst`. */
function transposeInto(src: Float32Array, dst: Float32Array, rows: number, cols: number): void {
  // Blocked so both sides stay in cache for large matrices.
  const B = 32;
  for (let r0 = 0; r0 < rows; r0 += B) {
    const r1 = Math.min(rows, r0 + B);
    for (let c0 = 0; c0 < cols; c0 += B) {
      const c1 = Math.min(cols, c0 + B);
      for (let r = r0; r < r1; r++) {
        for (let c = c0; c < c1; c++) dst[c * rows + r] = src[r * cols + c]!;
      }
    }
  }
}

export function batchMatMulConfig(fallback: tf.KernelConfig | undefined): tf.KernelConfig {
  const stock = stockCaller(fallback, tf.BatchMatMul);
  return {
    kernelName: tf.BatchMatMul,
    backendName: 'wasm',
    kernelFunc: (params) => {
      const { a, b } = params.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
      // Cast: tfjs passes attrs as a generic map; these are the op's attrs.
      const { transposeA, transposeB } = params.attrs as unknown as tf.BatchMatMulAttrs;
      const batchA = a.shape.slice(0, -2).reduce((p, d) => p * d, 1);
      const batchB = b.shape.slice(0, -2).reduce((p, d) => p * d, 1);
      if (batchA !== 1 || batchB !== 1 || a.dtype !== 'float32' || b.dtype !== 'float32')
        return stock(params);
      const wb = asWasmBackend(params.backend);
      const [aRows, aCols] = a.shape.slice(-2) as [number, number];
      const [bRows, bCols] = b.shape.slice(-2) as [number, number];
      const m = transposeA ? aCols : aRows;
      const k = transposeA ? aRows : aCols;
      const n = transposeB ? bRows : bCols;
      if ((transposeB ? bCols : bRows) !== k)
        throw new Error(`matMul: inner dimensions ${k} and ${bRows} differ`);
      const outShape = [...a.shape.slice(0, -2), m, n];
      const out = allocF32(wb, outShape);
      // XNNPACK wants A as [M, K] (pixels x channels) and B as [K, N] (HWIO).
      const aT = transposeA ? allocF32(wb, [m, k]) : null;
      const bT = transposeB ? allocF32(wb, [k, n]) : null;
      try {
        if (aT !== null) transposeInto(f32View(wb, a), f32View(wb, aT), aRows, aCols);
        if (bT !== null) transposeInto(f32View(wb, b), f32View(wb, bT), bRows, bCols);
        if (m > 0 && n > 0) {
          if (k === 0) f32View(wb, out).fill(0);
          else {
            wasmConv2D(wb)(
              wasmId(wb, aT ?? a),
              m,
              1,
              1,
              wasmId(wb, bT ?? b),
              1,
              1,
              0,
              0,
              0,
              0,
              0,
              1,
              1,
              1,
              1,
              k,
              n,
              wasmId(wb, out),
            );
          }
        }
      } finally {
        if (aT !== null) freeTemp(wb, aT);
        if (bT !== null) freeTemp(wb, bT);
      }
      return out;
    },
  };
}

export function equalConfig(fallback: tf.KernelConfig | undefined): tf.KernelConfig {
  const stock = stockCaller(fallback, tf.Equal);
  return {
    kernelName: tf.Equal,
    backendName: 'wasm',
    kernelFunc: (params) => {
      const { a, b } = params.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
      const rank = Math.max(a.shape.length, b.shape.length);
      const sameShape = a.shape.length === b.shape.length && a.shape.every((d, i) => d === b.shape[i]);
      // Only the case "one operand has the full shape, the other broadcasts
      // over some of its axes" (same rank); everything else stays stock.
      const [full, part] = a.shape.length === rank && !sameShape ? [a, b] : [b, a];
      if (
        sameShape ||
        a.dtype !== b.dtype ||
        a.dtype === 'string' ||
        part.shape.length !== rank ||
        full.shape.length !== rank ||
        !part.shape.every((d, i) => d === full.shape[i] || d === 1)
      ) {
        return stock(params);
      }
      const wb = asWasmBackend(params.backend);
      const out = wb.makeOutput(full.shape, 'bool');
      const fv = dataView(wb, full);
      const pv = dataView(wb, part);
      const ov = dataView(wb, out);
      // Innermost axes where both shapes agree form contiguous runs in both.
      let inner = 1;
      let k = rank;
      while (k > 0 && part.shape[k - 1] === full.shape[k - 1]) inner *= full.shape[--k]!;
      const outer = full.shape.slice(0, k);
      const partStrides = new Array<number>(k).fill(0);
      for (let i = k - 1, stride = inner; i >= 0; i--) {
        partStrides[i] = part.shape[i] === 1 ? 0 : stride;
        stride *= part.shape[i]!;
      }
      const index = new Array<number>(k).fill(0);
      const runs = outer.reduce((p, d) => p * d, 1);
      let pBase = 0;
      for (let r = 0, o = 0; r < runs; r++) {
        for (let j = 0; j < inner; j++, o++) ov[o] = fv[o] === pv[pBase + j] ? 1 : 0;
        // Odometer over the outer axes, moving the broadcast operand's base.
        for (let axis = k - 1; axis >= 0; axis--) {
          index[axis]!++;
          pBase += partStrides[axis]!;
          if (index[axis]! < outer[axis]!) break;
          pBase -= partStrides[axis]! * outer[axis]!;
          index[axis] = 0;
        }
      }
      return out;
    },
  };
}

/** Greatest common divisor (for the period of a repeated bias). */
function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

export function addConfig(fallback: tf.KernelConfig | undefined): tf.KernelConfig {
  const stock = stockCaller(fallback, tf.Add);
  return {
    kernelName: tf.Add,
    backendName: 'wasm',
    kernelFunc: (params) => {
      const { a, b } = params.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
      // Only "x [..., C] + bias broadcast along the last axis" (either order).
      const isBiasOf = (bias: tf.TensorInfo, x: tf.TensorInfo): boolean => {
        const c = x.shape[x.shape.length - 1];
        return (
          bias.shape.length >= 1 &&
          bias.shape.length <= x.shape.length &&
          bias.shape[bias.shape.length - 1] === c &&
          bias.shape.slice(0, -1).every((d) => d === 1)
        );
      };
      const [x, bias] = isBiasOf(b, a) ? [a, b] : isBiasOf(a, b) ? [b, a] : [null, null];
      const wb = asWasmBackend(params.backend);
      const simd = x !== null ? simdKernels(heapMemory(wb)) : null;
      const total = x === null ? 0 : x.shape.reduce((p, d) => p * d, 1);
      if (x === null || bias === null || simd === null || x.dtype !== 'float32' || bias.dtype !== 'float32') {
        return stock(params);
      }
      const C = x.shape[x.shape.length - 1]!;
      // Small tensors, or a bias as large as x: the stock kernel is as good.
      if (total < ADD_MIN_ELEMENTS || total === C) return stock(params);
      const period = (C * 4) / gcd(C, 4);
      const out = allocF32(wb, x.shape);
      const pattern = allocF32(wb, [period]);
      try {
        const bv = f32View(wb, bias);
        const pv = f32View(wb, pattern);
        for (let i = 0; i < period; i++) pv[i] = bv[i % C]!;
        const blocks = Math.floor(total / period);
        simd.addPattern(heapOffset(wb, x), heapOffset(wb, out), blocks, heapOffset(wb, pattern), period * 4);
        const xv = f32View(wb, x);
        const ov = f32View(wb, out);
        for (let i = blocks * period; i < total; i++) ov[i] = xv[i]! + bv[i % C]!;
      } finally {
        freeTemp(wb, pattern);
      }
      return out;
    },
  };
}
