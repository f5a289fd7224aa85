// Identity and same-dtype Cast on the wasm backend, sharing the input's buffer instead of copying it:
// - Identity: the stock one copies the tensor. The engine clones every tensor it saves for backprop
//   through Identity, so each step copied most activations once more. Sharing the buffer
//   (refcounted, as the wasm Reshape and the cpu backend's Identity already do) is safe because no
//   wasm kernel writes into an input another tensor shares (the SGD update writes its momentum
//   buffer in place only when none does: wasm/sgd.ts).
// - Cast to the tensor's own dtype (the ReLU gradient casts the float32 output of Step to float32):
//   the stock kernel copies; ours shares, as Identity.
import * as tf from '@tensorflow/tfjs';
import { asWasmBackend, stockCaller } from './internals.js';

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
