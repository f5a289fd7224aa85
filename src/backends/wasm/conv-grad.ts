// Conv2D gradients for the wasm backend (tfjs-backend-wasm 4.22 has no
// Conv2DBackpropFilter, and its Conv2DBackpropInput is scalar loops):
// - Conv2DBackpropInput as a forward convolution (dy, zero-stuffed for
//   strides > 1, with the rotated filter) on the backend's compiled XNNPACK
//   convolution.
// - Conv2DBackpropFilter as our WebAssembly SIMD loop straight over x and dy
//   (./simd/conv-filter-grad.ts); as XNNPACK forward convolutions of re-laid-out
//   tensors where WebAssembly SIMD is unavailable (also kept for comparison;
//   about 2x slower on VGG shapes: XNNPACK must pack dy as a filter and its
//   GEMM loops suit a small filter, not a huge one).
//
// Layouts are NHWC / filter HWIO, as tfjs passes them. Single-threaded with
// fixed summation orders, so results are bit-identical from run to run.
import * as tf from '@tensorflow/tfjs';
import {
  allocF32,
  asWasmBackend,
  f32View,
  freeTemp,
  heapMemory,
  heapOffset,
  stockCaller,
  wasmConv2D,
  wasmId,
  type WasmBackend,
} from './internals.js';
import { backpropFilterArgs, backpropInputArgs, type ConvGeometry } from './geometry.js';
import { simdKernels, type SimdKernels } from './simd/module.js';
import { kernelPool } from './workers.js';

/**
 * dW[kh,kw,c,f] = sum_{n,oh,ow} x[n, oh*sH+kh-pT, ow*sW+kw-pL, c] * dy[n,oh,ow,f]
 *
 * is a forward convolution of xT = x as [C, H, W, N] (channels act as the
 * batch, the batch acts as input channels) with the "filter" dyT = dy as
 * [OH, OW, N, F], dilated by the stride, giving [C, KH, KW, F]. Rows/columns
 * of x that the forward pass never read are cropped (XNNPACK has no negative
 * padding); missing ones are supplied as padding.
 */
function backpropFilter(
  backend: WasmBackend,
  x: tf.TensorInfo,
  dy: tf.TensorInfo,
  g: ConvGeometry,
): tf.TensorInfo {
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
 * The same sum split by output row: for each dy row oh and kernel row kh,
 * x row r = oh*sH + kh - pT as [C, 1, W, N] convolved (1-D, along the width)
 * with dy row oh as a [1, OW, N, F] filter gives the [C, 1, KW, F] share of
 * dW[kh]. XNNPACK streams the whole packed filter once per few output pixels;
 * with all of dy as the filter (tens of MB, the single-call form above) that
 * streaming runs from main memory, with one dy row (~1 MB) it stays in cache.
 * Each dy row is packed once and reused for the KH kernel rows.
 */
function backpropFilterByRows(
  backend: WasmBackend,
  x: tf.TensorInfo,
  dy: tf.TensorInfo,
  g: ConvGeometry,
  batchChunk: number,
): tf.TensorInfo {
  const { batch: N, inH: H, inW: W, inC: C, kH, kW, outH, outW, outC: F, sH, sW, padTop, padLeft } = g;
  const out = allocF32(backend, [kH, kW, C, F]);
  const needW = (outW - 1) * sW + kW - padLeft;
  const wC = Math.min(W, needW);
  const padRight = needW - wC;
  const acc = new Float64Array(kH * C * kW * F); // [kh][c][kw][f]
  const partSize = C * kW * F;
  const temps: tf.TensorInfo[] = [];
  try {
    const part = allocF32(backend, [C, 1, kW, F]);
    temps.push(part);
    const conv = wasmConv2D(backend);
    for (let n0 = 0; n0 < N && wC > 0; n0 += batchChunk) {
      const nb = Math.min(batchChunk, N - n0);
      // Rows of this chunk of x as [C, 1, wC, nb] (channels act as the batch).
      const xRows: tf.TensorInfo[] = [];
      try {
        for (let r = 0; r < H; r++) xRows.push(allocF32(backend, [C, 1, wC, nb]));
        const xs = f32View(backend, x);
        const srcStep = H * W * C;
        for (let r = 0; r < H; r++) {
          const xr = f32View(backend, xRows[r]!);
          for (let w = 0; w < wC; w++) {
            let src = ((n0 * H + r) * W + w) * C;
            for (let n = 0; n < nb; n++, src += srcStep) {
              let dst = w * nb + n;
              for (let c = 0; c < C; c++, dst += wC * nb) xr[dst] = xs[src + c]!;
            }
          }
        }
        for (let oh = 0; oh < outH; oh++) {
          // A fresh tensor per dy row: XNNPACK caches the packed filter by id.
          const dyRow = allocF32(backend, [1, outW, nb, F]);
          try {
            {
              const dys = f32View(backend, dy);
              const dr = f32View(backend, dyRow);
              for (let n = 0; n < nb; n++) {
                for (let ow = 0; ow < outW; ow++) {
                  const src = (((n0 + n) * outH + oh) * outW + ow) * F;
                  const dst = (ow * nb + n) * F;
                  for (let f = 0; f < F; f++) dr[dst + f] = dys[src + f]!;
                }
              }
            }
            for (let kh = 0; kh < kH; kh++) {
              const r = oh * sH + kh - padTop;
              if (r < 0 || r >= H) continue; // a padding row contributes nothing
              conv(
                wasmId(backend, xRows[r]!),
                C,
                1,
                wC,
                wasmId(backend, dyRow),
                1,
                outW,
                0,
                padRight,
                0,
                padLeft,
                0,
                1,
                sW,
                1,
                1,
                nb,
                F,
                wasmId(backend, part),
              );
              const p = f32View(backend, part);
              const base = kh * partSize;
              for (let i = 0; i < partSize; i++) acc[base + i]! += p[i]!;
            }
          } finally {
            freeTemp(backend, dyRow);
          }
        }
      } finally {
        for (const t of xRows) freeTemp(backend, t);
      }
    }
    // [kh][c][kw][f] -> [kh][kw][c][f]
    const o = f32View(backend, out);
    for (let kh = 0; kh < kH; kh++) {
      for (let c = 0; c < C; c++) {
        for (let kw = 0; kw < kW; kw++) {
          const src = ((kh * C + c) * kW + kw) * F;
          const dst = ((kh * kW + kw) * C + c) * F;
          for (let f = 0; f < F; f++) o[dst + f] = acc[src + f]!;
        }
      }
    }
  } finally {
    for (const t of temps) freeTemp(backend, t);
  }
  return out;
}

/**
 * The filter gradient as our own SIMD loop straight from x and dy (NHWC), no
 * transposes and no filter packing: for each image, output row and kernel
 * tap, one call accumulates the outer products of that row's x and dy pixels
 * into the tap's [C, F] slice of dW. 4-channel register tiles when C % 4 ==
 * 0, else one channel at a time; always 8 filters (F padded to a multiple).
 *
 * Few input channels (an RGB first layer: C = 3) make that one-channel loop
 * slow, so when every tap of a kernel row reads inside x (no left/right
 * padding) the row is taken as a single tap of kW * C contiguous "channels"
 * (x[ow * sW * C + kw * C + c] is exactly dW's (kw, c) order), rounded up to
 * a multiple of 4 for the 4-channel tiles; the extra rows read the next
 * pixel's values and are dropped. Measured on the tutorial CNN's first layer
 * (64x32x32x3, 5x5, 6 filters): 7.8 -> ~3.8 ms (median, one kernel in isolation).
 */
function backpropFilterSimd(
  backend: WasmBackend,
  simd: SimdKernels,
  x: tf.TensorInfo,
  dy: tf.TensorInfo,
  g: ConvGeometry,
): tf.TensorInfo {
  const { batch: N, inH: H, inW: W, inC: C, kH, kW, outH, outW, outC: F, sH, sW, padTop, padLeft } = g;
  const rowMode = C % 4 !== 0 && padLeft === 0 && (outW - 1) * sW + kW <= W;
  // The kernel's view: taps per kernel row and channels per tap.
  const taps = rowMode ? 1 : kW;
  const tapC = rowMode ? Math.ceil((kW * C) / 4) * 4 : C;
  // The loop works on 8 filters at a time: with F not a multiple of 8 (small
  // layers only in practice, e.g. 6 filters) it reads dy's next pixel into
  // the extra filters (and 4F8 - 4F bytes past dy's end, still inside the
  // heap) and those columns of the result are dropped.
  const F8 = Math.ceil(F / 8) * 8;
  const out = allocF32(backend, [kH, kW, C, F]);
  const direct = F8 === F && !rowMode;
  const dw8 = direct ? out : allocF32(backend, [kH, taps, tapC, F8]);
  // The column table as a heap tensor (int32 bits in a float32 tensor).
  const tableT = allocF32(backend, [3 * taps]);
  const temps: tf.TensorInfo[] = [tableT];
  try {
    f32View(backend, dw8).fill(0);
    const fourChannels = tapC % 4 === 0;
    const kernel = fourChannels ? simd.convFilterGrad4 : simd.convFilterGrad1;
    // Per kernel column: first x pixel (byte offset within an x row), first
    // dy pixel (within a dy row) and count of the output columns whose input
    // column lies inside x.
    const table = new Int32Array(3 * taps);
    if (rowMode) table.set([0, 0, outW]);
    else {
      for (let kw = 0; kw < kW; kw++) {
        const ow0 = Math.max(0, Math.ceil((padLeft - kw) / sW));
        const ow1 = Math.min(outW, Math.floor((W - 1 + padLeft - kw) / sW) + 1);
        table[3 * kw] = (ow0 * sW + kw - padLeft) * C * 4;
        table[3 * kw + 1] = ow0 * F * 4;
        table[3 * kw + 2] = Math.max(0, ow1 - ow0);
      }
    }
    const tableView = f32View(backend, tableT);
    new Int32Array(tableView.buffer, tableView.byteOffset, table.length).set(table);
    // The images are split into a fixed number of chunks, each summed into
    // its own partial dW, and the partials added in order: threads (threaded
    // build) take whole chunks, and the result is the same bits whatever the
    // thread count.
    const chunks = Math.max(1, Math.min(FILTER_GRAD_CHUNKS, N));
    const partials = [dw8];
    for (let i = 1; i < chunks; i++) {
      const partial = allocF32(backend, [kH, taps, tapC, F8]);
      temps.push(partial);
      partials.push(partial);
    }
    for (const p of partials.slice(1)) f32View(backend, p).fill(0);
    const calls = partials.map((partial, i) => {
      const n0 = Math.floor((N * i) / chunks);
      const n1 = Math.floor((N * (i + 1)) / chunks);
      return [
        heapOffset(backend, x) + n0 * H * W * C * 4,
        heapOffset(backend, dy) + n0 * outH * outW * F * 4,
        heapOffset(backend, partial),
        heapOffset(backend, tableT),
        n1 - n0,
        H,
        W,
        tapC,
        outH,
        outW,
        F8,
        kH,
        taps,
        sH,
        padTop,
        0,
        F8,
        sW * C * 4,
        W * C * 4,
        F * 4,
      ];
    });
    // Small jobs stay on this thread: handing over costs more than it saves.
    const macs = N * outH * outW * kH * taps * tapC * F8;
    const pool = macs >= convGradTuning.poolMinMacs ? kernelPool(backend) : null;
    if (pool === null) {
      for (const args of calls) kernel(...(args as Parameters<typeof kernel>));
    } else {
      const perThread: number[][][] = Array.from({ length: Math.min(pool.threads, chunks) }, () => []);
      calls.forEach((args, i) => perThread[Math.floor((i * perThread.length) / chunks)]!.push(args));
      pool.run(fourChannels ? 'convFilterGrad4' : 'convFilterGrad1', perThread);
    }
    if (partials.length > 1) {
      const sum = f32View(backend, dw8);
      for (const p of partials.slice(1)) {
        const part = f32View(backend, p);
        for (let i = 0; i < sum.length; i++) sum[i] = sum[i]! + part[i]!;
      }
    }
    if (dw8 !== out) {
      // [kH, taps, tapC, F8] -> [kH, kW, C, F]: per kernel row, the first
      // kW * C channels in order (the same in both modes).
      const src = f32View(backend, dw8);
      const dst = f32View(backend, out);
      const rowChannels = kW * C;
      for (let kh = 0; kh < kH; kh++) {
        for (let j = 0; j < rowChannels; j++) {
          const s0 = (kh * taps * tapC + j) * F8;
          const d0 = (kh * rowChannels + j) * F;
          for (let f = 0; f < F; f++) dst[d0 + f] = src[s0 + f]!;
        }
      }
    }
  } finally {
    for (const t of temps) freeTemp(backend, t);
    if (dw8 !== out) freeTemp(backend, dw8);
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

/**
 * Which form Conv2DBackpropFilter takes (exported for tests and the profile
 * script, which force each form): our SIMD loop when WebAssembly SIMD is
 * available and `simdFilterGrad`, else XNNPACK, split by dy row when dy is
 * larger than `rowsThresholdBytes`.
 */
export const convGradTuning = {
  rowsThresholdBytes: 4 << 20,
  simdFilterGrad: true,
  /** Multiply-adds below which the SIMD loop does not use worker threads. */
  poolMinMacs: 8e6,
};

/** Image chunks of the SIMD filter gradient (fixed: results must not depend on threads). */
const FILTER_GRAD_CHUNKS = 4;

/** Kernel config for Conv2DBackpropFilter on 'wasm'. */
export function conv2DBackpropFilterConfig(): tf.KernelConfig {
  return {
    kernelName: tf.Conv2DBackpropFilter,
    backendName: 'wasm',
    kernelFunc: (params) => {
      const { x, dy, g } = backpropFilterArgs(params);
      const backend = params.backend;
      const wb = asWasmBackend(backend);
      const simd = convGradTuning.simdFilterGrad ? simdKernels(heapMemory(wb)) : null;
      if (simd !== null) return backpropFilterSimd(wb, simd, x, dy, g);
      // Measured on VGG/net shapes: the row split is 10-40% faster once dy is
      // tens of MB, no faster for small dy where its extra calls cost more.
      const dyBytes = dy.shape.reduce((p, d) => p * d, 4);
      if (dyBytes > convGradTuning.rowsThresholdBytes) return backpropFilterByRows(wb, x, dy, g, g.batch);
      return backpropFilter(wb, x, dy, g);
    },
  };
}

/**
 * Kernel config for Conv2DBackpropInput on 'wasm'; `fallback` (the stock
 * kernel) handles what the forward-convolution form cannot express.
 */
export function conv2DBackpropInputConfig(fallback: tf.KernelConfig | undefined): tf.KernelConfig {
  const stock = stockCaller(fallback, tf.Conv2DBackpropInput);
  return {
    kernelName: tf.Conv2DBackpropInput,
    backendName: 'wasm',
    kernelFunc: (params) => {
      const { dy, filter, g } = backpropInputArgs(params);
      const out = backpropInput(asWasmBackend(params.backend), dy, filter, g);
      if (out !== null) return out;
      return stock(params);
    },
  };
}
