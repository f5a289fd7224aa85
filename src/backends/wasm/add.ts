// Add of a per-channel bias on the wasm backend (every conv and dense layer's forward pass): the
// stock kernel's broadcasting loop is scalar (1.75 ms for the tutorial CNN's first layer,
// 64x28x28x6); ours adds the bias repeated to lcm(C, 4) floats four lanes at a time
// (./simd/add.ts), the same bits.
import * as tf from '@tensorflow/tfjs';
import {
  allocF32,
  asWasmBackend,
  f32View,
  freeTemp,
  heapMemory,
  heapOffset,
  stockCaller,
} from './internals.js';
import { simdKernels } from './simd/module.js';

/** Elements below which a bias Add stays with the stock kernel. */
const ADD_MIN_ELEMENTS = 1 << 12;

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
