// Equal on the wasm backend with one operand broadcast (the gradient of a max reduction, e.g. global
// max pooling, compares x with its broadcast maxima): the stock kernel computes broadcast indices
// per element; ours walks contiguous runs.
import * as tf from '@tensorflow/tfjs';
import { asWasmBackend, dataView, stockCaller } from './internals.js';

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
