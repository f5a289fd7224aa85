// The SGD_UPDATE kernel (../sgd.ts) on the wasm backend: one WebAssembly SIMD call per variable
// (./simd/sgd.ts); for the tutorial CNN (10 variables) the tfjs ops cost ~2 ms of a ~28 ms step.
// The momentum buffer is updated in place when nothing else reads its memory (tfjs shares buffers
// between tensors, e.g. through Identity and Reshape); the weights go to a new tensor, never in
// place: the wasm backend caches XNNPACK operators (with their packed weights) by tensor, so a
// weight changed in place would leave a stale copy in use.
import * as tf from '@tensorflow/tfjs';
import { SGD_UPDATE, type SgdUpdateAttrs } from '../sgd.js';
import { asWasmBackend, f32View, heapMemory, heapOffset, type WasmBackend } from './internals.js';
import { simdKernels } from './simd/module.js';

/** The SIMD loop's arithmetic in JS, where WebAssembly SIMD is unavailable: each step rounded to float32. */
function sgdUpdateJs(
  backend: WasmBackend,
  [w, out, g, buffer]: [tf.TensorInfo, tf.TensorInfo, tf.TensorInfo, tf.TensorInfo],
  { learningRate, momentum, nesterov, weightDecay }: SgdUpdateAttrs,
): void {
  const f = Math.fround;
  const [lr, m, wd] = [f(learningRate), f(momentum), f(weightDecay)];
  const ws = f32View(backend, w);
  const gs = f32View(backend, g);
  const bs = f32View(backend, buffer);
  const os = f32View(backend, out);
  for (let i = 0; i < ws.length; i++) {
    const wi = ws[i]!;
    let gi = gs[i]!;
    if (wd > 0) gi = f(gi + f(wi * wd));
    let u = gi;
    if (m > 0) {
      const b = f(f(bs[i]! * m) + gi);
      bs[i] = b;
      u = nesterov ? f(gi + f(b * m)) : b;
    }
    os[i] = f(wi - f(u * lr));
  }
}

export function sgdUpdateConfig(): tf.KernelConfig {
  return {
    kernelName: SGD_UPDATE,
    backendName: 'wasm',
    kernelFunc: (params) => {
      const backend = asWasmBackend(params.backend);
      const { w, g, buffer } = params.inputs as { w: tf.TensorInfo; g: tf.TensorInfo; buffer: tf.TensorInfo };
      // Cast: tfjs passes attrs as a generic map; these are the attrs fusedSgdStep sets.
      const attrs = params.attrs as unknown as SgdUpdateAttrs;
      const out = backend.makeOutput(w.shape, 'float32');
      // A shared buffer is updated in a copy, which becomes the new buffer (same bits).
      const copy = attrs.momentum > 0 && backend.refCount(buffer.dataId) !== 1;
      const buf = copy ? backend.makeOutput(buffer.shape, 'float32') : buffer;
      if (copy) f32View(backend, buf).set(f32View(backend, buffer));
      const simd = simdKernels(heapMemory(backend));
      if (simd === null) sgdUpdateJs(backend, [w, out, g, buf], attrs);
      else {
        simd.sgdUpdate(
          heapOffset(backend, w),
          heapOffset(backend, out),
          heapOffset(backend, g),
          heapOffset(backend, buf),
          w.shape.reduce((a, b) => a * b, 1),
          attrs.learningRate,
          attrs.momentum,
          attrs.weightDecay,
          attrs.nesterov ? 1 : 0,
        );
      }
      return copy ? [out, buf] : [out];
    },
  };
}
