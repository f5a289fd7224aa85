// Conv2D gradients for the wasm backend, computed as *forward* convolutions so
// that they run on the backend's compiled XNNPACK convolution (SIMD GEMM)
// instead of scalar loops (Conv2DBackpropInput) or not at all
// (Conv2DBackpropFilter is missing from tfjs-backend-wasm 4.22).
//
// Layouts are NHWC / filter HWIO, as tfjs passes them. Single-threaded and
// with a fixed summation order inside XNNPACK, so results are bit-identical
// from run to run.
import * as tf from '@tensorflow/tfjs';
import { allocF32, asWasmBackend, f32View, freeTemp, wasmConv2D, wasmId, type WasmBackend } from './wasm-internals.js';

type Conv2DBackpropFilterAttrs = tf.Conv2DBackpropFilterAttrs;
type Conv2DBackpropInputAttrs = tf.Conv2DBackpropInputAttrs;

interface ConvGeometry {
  batch: number;
  inH: number;
  inW: number;
  inC: number;
  kH: number;
  kW: number;
  outH: number;
  outW: number;
  outC: number;
  sH: number;
  sW: number;
  padTop: number;
  padLeft: number;
}

function geometry(
  inputShape: [number, number, number, number],
  filterShape: [number, number, number, number],
  strides: [number, number] | number,
  pad: Conv2DBackpropFilterAttrs['pad'],
  dimRoundingMode: Conv2DBackpropFilterAttrs['dimRoundingMode'],
  dataFormat: 'NHWC' | 'NCHW',
): ConvGeometry {
  if (dataFormat !== 'NHWC') {
    throw new Error(`image-classifier wasm conv gradients support NHWC only, got ${dataFormat}`);
  }
  const info = tf.backend_util.computeConv2DInfo(
    inputShape,
    filterShape,
    strides,
    1,
    pad,
    dimRoundingMode,
    false,
    'channelsLast',
  );
  return {
    batch: info.batchSize,
    inH: info.inHeight,
    inW: info.inWidth,
    inC: info.inChannels,
    kH: info.filterHeight,
    kW: info.filterWidth,
    outH: info.outHeight,
    outW: info.outWidth,
    outC: info.outChannels,
    sH: info.strideHeight,
    sW: info.strideWidth,
    padTop: info.padInfo.top,
    padLeft: info.padInfo.left,
  };
}

/**
 * dW[kh,kw,c,f] = sum_{n,oh,ow} x[n, oh*sH+kh-pT, ow*sW+kw-pL, c] * dy[n,oh,ow,f]
 *
 * is a forward convolution of xT = x as [C, H, W, N] (channels act as the
 * batch, the batch acts as input channels) with the "filter" dyT = dy as
 * [OH, OW, N, F], dilated by the stride, giving [C, KH, KW, F]. Rows/columns
 * of x that the forward pass never read are cropped (XNNPACK has no negative
 * padding); missing ones are supplied as padding.
 */
function backpropFilter(backend: WasmBackend, x: tf.TensorInfo, dy: tf.TensorInfo, g: ConvGeometry): tf.TensorInfo {
  const { batch: N, inH: H, inW: W, inC: C, kH, kW, outH, outW, outC: F, sH, sW, padTop, padLeft } = g;
  const out = allocF32(backend, [kH, kW, C, F]);
  // Extent of x (exclusive, in x coordinates) the forward pass read.
  const needH = (outH - 1) * sH + kH - padTop;
  const needW = (outW - 1) * sW + kW - padLeft;
  const hC = Math.min(H, needH);
  const wC = Math.min(W, needW);
  if (hC <= 0 || wC <= 0 || N === 0) {
    f32View(backend, out).fill(0);
    return out;
  }
  const padBottom = needH - hC;
  const padRight = needW - wC;

  const xT = allocF32(backend, [C, hC, wC, N]);
  const dyT = allocF32(backend, [outH, outW, N, F]);
  const res = allocF32(backend, [C, kH, kW, F]);
  try {
    {
      // Views after all allocations: an allocation may grow (and detach) the heap.
      const xs = f32View(backend, x);
      const xt = f32View(backend, xT);
      const plane = hC * wC * N;
      for (let h = 0; h < hC; h++) {
        for (let w = 0; w < wC; w++) {
          const p = (h * wC + w) * N;
          let src = (h * W + w) * C;
          const srcStep = H * W * C;
          for (let n = 0; n < N; n++, src += srcStep) {
            let dst = p + n;
            for (let c = 0; c < C; c++, dst += plane) xt[dst] = xs[src + c]!;
          }
        }
      }
      const dys = f32View(backend, dy);
      const dyt = f32View(backend, dyT);
      const q = outH * outW;
      for (let n = 0; n < N; n++) {
        for (let k = 0; k < q; k++) {
          const src = (n * q + k) * F;
          const dst = (k * N + n) * F;
          for (let f = 0; f < F; f++) dyt[dst + f] = dys[src + f]!;
        }
      }
    }
    wasmConv2D(backend)(
      wasmId(backend, xT),
      C,
      hC,
      wC,
      wasmId(backend, dyT),
      outH,
      outW,
      padTop,
      padRight,
      padBottom,
      padLeft,
      0,
      sH,
      sW,
      1,
      1,
      N,
      F,
      wasmId(backend, res),
    );
    // [C, KH*KW, F] -> [KH*KW, C, F]
    const r = f32View(backend, res);
    const o = f32View(backend, out);
    const taps = kH * kW;
    for (let c = 0; c < C; c++) {
      for (let k = 0; k < taps; k++) {
        const src = (c * taps + k) * F;
        const dst = (k * C + c) * F;
        for (let f = 0; f < F; f++) o[dst + f] = r[src + f]!;
      }
    }
  } finally {
    // Disposing dyT also drops the XNNPACK operator cached for it as a filter.
    freeTemp(backend, xT);
    freeTemp(backend, dyT);
    freeTemp(backend, res);
  }
  return out;
}

/**
 * dx = dy (zero-stuffed by the stride) convolved with the filter rotated by
 * 180 degrees and with in/out channels swapped, padded so that the output is
 * exactly the input's size. Returns null where that padding would be
 * negative (explicit padding larger than the kernel), for the caller to fall
 * back to the stock kernel.
 */
function backpropInput(
  backend: WasmBackend,
  dy: tf.TensorInfo,
  filter: tf.TensorInfo,
  g: ConvGeometry,
): tf.TensorInfo | null {
  const { batch: N, inH: H, inW: W, inC: C, kH, kW, outH, outW, outC: F, sH, sW, padTop, padLeft } = g;
  const padBottomEff = (outH - 1) * sH + kH - padTop - H;
  const padRightEff = (outW - 1) * sW + kW - padLeft - W;
  const pT = kH - 1 - padTop;
  const pL = kW - 1 - padLeft;
  const pB = kH - 1 - padBottomEff;
  const pR = kW - 1 - padRightEff;
  if (pT < 0 || pL < 0 || pB < 0 || pR < 0) return null;
  const upH = (outH - 1) * sH + 1;
  const upW = (outW - 1) * sW + 1;
  const strided = sH !== 1 || sW !== 1;

  const out = allocF32(backend, [N, H, W, C]);
  const wRot = allocF32(backend, [kH, kW, F, C]);
  const dyUp = strided ? allocF32(backend, [N, upH, upW, F]) : null;
  try {
    {
      const ws = f32View(backend, filter);
      const wr = f32View(backend, wRot);
      for (let i = 0; i < kH; i++) {
        for (let j = 0; j < kW; j++) {
          const src = ((kH - 1 - i) * kW + (kW - 1 - j)) * C * F;
          const dst = (i * kW + j) * F * C;
          for (let c = 0; c < C; c++) {
            for (let f = 0; f < F; f++) wr[dst + f * C + c] = ws[src + c * F + f]!;
          }
        }
      }
      if (dyUp !== null) {
        const dys = f32View(backend, dy);
        const up = f32View(backend, dyUp);
        up.fill(0);
        for (let n = 0; n < N; n++) {
          for (let oh = 0; oh < outH; oh++) {
            for (let ow = 0; ow < outW; ow++) {
              const src = ((n * outH + oh) * outW + ow) * F;
              const dst = ((n * upH + oh * sH) * upW + ow * sW) * F;
              for (let f = 0; f < F; f++) up[dst + f] = dys[src + f]!;
            }
          }
        }
      }
    }
    wasmConv2D(backend)(
      wasmId(backend, dyUp ?? dy),
      N,
      upH,
      upW,
      wasmId(backend, wRot),
      kH,
      kW,
      pT,
      pR,
      pB,
      pL,
      0,
      1,
      1,
      1,
      1,
      F,
      C,
      wasmId(backend, out),
    );
  } finally {
    freeTemp(backend, wRot);
    if (dyUp !== null) freeTemp(backend, dyUp);
  }
  return out;
}

/** Kernel config for Conv2DBackpropFilter on 'wasm'. */
export function conv2DBackpropFilterConfig(): tf.KernelConfig {
  return {
    kernelName: tf.Conv2DBackpropFilter,
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x, dy } = inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
      // Cast: tfjs passes attrs as a generic map; these are the op's attrs.
      const a = attrs as unknown as Conv2DBackpropFilterAttrs;
      const g = geometry(
        x.shape as [number, number, number, number],
        a.filterShape,
        a.strides,
        a.pad,
        a.dimRoundingMode,
        a.dataFormat,
      );
      return backpropFilter(asWasmBackend(backend), x, dy, g);
    },
  };
}

/**
 * Kernel config for Conv2DBackpropInput on 'wasm'; `fallback` (the stock
 * kernel) handles what the forward-convolution form cannot express.
 */
export function conv2DBackpropInputConfig(fallback: tf.KernelConfig | undefined): tf.KernelConfig {
  // The engine runs a kernel's setup only for kernels registered when the
  // backend initialises; the stock kernel may have been swapped out before
  // that, so run its setup ourselves, once per backend instance.
  const setUp = new WeakSet<object>();
  return {
    kernelName: tf.Conv2DBackpropInput,
    backendName: 'wasm',
    kernelFunc: (params) => {
      const { inputs, backend, attrs } = params;
      const { dy, filter } = inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
      // Cast: tfjs passes attrs as a generic map; these are the op's attrs.
      const a = attrs as unknown as Conv2DBackpropInputAttrs;
      const g = geometry(
        a.inputShape,
        filter.shape as [number, number, number, number],
        a.strides,
        a.pad,
        a.dimRoundingMode,
        a.dataFormat,
      );
      const out = backpropInput(asWasmBackend(backend), dy, filter, g);
      if (out !== null) return out;
      if (fallback === undefined) throw new Error('image-classifier: unsupported Conv2DBackpropInput padding');
      if (!setUp.has(backend)) {
        fallback.setupFunc?.(backend);
        setUp.add(backend);
      }
      return fallback.kernelFunc(params);
    },
  };
}
