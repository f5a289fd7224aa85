// BatchMatMul on the wasm backend: the stock one uses XNNPACK only without transposes; the
// transposed products of dense-layer gradients ran as scalar loops. We transpose the (small) operand
// and run the XNNPACK 1x1 convolution.
import * as tf from '@tensorflow/tfjs';
import { allocF32, asWasmBackend, f32View, freeTemp, stockCaller, wasmConv2D, wasmId } from './internals.js';

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
