// The SGD_UPDATE kernel (../sgd.ts) on WebGPU: two dispatches per variable (momentum buffer, then
// weights) instead of ~8 tfjs ops, each its own dispatch and full pass. The same float32 operations in
// the same order as the ops in src/training/sgd.ts. The learning rate is a uniform (it changes every step; a
// constant would compile a shader per value); momentum, weight decay and Nesterov are constants.
import * as tf from '@tensorflow/tfjs';
import { SGD_UPDATE, type SgdUpdateAttrs } from '../sgd.js';
import { elementwise, run, type WebGpuBackend } from './program.js';

function f32(value: number): string {
  // WGSL float literal of a float32 value (enough digits to round-trip).
  const s = Math.fround(value).toPrecision(9);
  return s.includes('.') || s.includes('e') ? s : `${s}.0`;
}

/** One variable's update: [new weights] with momentum 0, else [new weights, new momentum buffer]. */
function sgdUpdate(
  backend: WebGpuBackend,
  { w, g, buffer }: { w: tf.TensorInfo; g: tf.TensorInfo; buffer: tf.TensorInfo },
  { learningRate, momentum, nesterov, weightDecay }: SgdUpdateAttrs,
): tf.TensorInfo[] {
  const decayed = weightDecay > 0 ? `g[i] + w[i] * ${f32(weightDecay)}` : 'g[i]';
  const key = `${f32(momentum)}_${nesterov}_${f32(weightDecay)}`;
  const lr = [{ type: 'float32' as const, data: [learningRate] }];
  if (momentum === 0) {
    const next = elementwise(
      backend,
      `sgd_w0_${key}`,
      w.shape,
      ['w', 'g'],
      `result[i] = w[i] - (${decayed}) * uniforms.lr;`,
      'lr : f32,',
    );
    return [run(backend, next, [w, g], lr)];
  }
  // A shader binds only what it reads (tfjs's pipelines derive their layout from it).
  const decayInputs = weightDecay > 0 ? { w, g } : { g };
  const bufferProgram = elementwise(
    backend,
    `sgd_m_${key}`,
    w.shape,
    [...Object.keys(decayInputs), 'buffer'],
    `result[i] = buffer[i] * ${f32(momentum)} + (${decayed});`,
  );
  const newBuffer = run(backend, bufferProgram, [...Object.values(decayInputs), buffer]);
  const weightInputs = nesterov ? { w, g, buffer: newBuffer } : { w, buffer: newBuffer };
  const update = nesterov ? `(${decayed}) + buffer[i] * ${f32(momentum)}` : 'buffer[i]';
  const weightsProgram = elementwise(
    backend,
    `sgd_w_${key}`,
    w.shape,
    Object.keys(weightInputs),
    `result[i] = w[i] - (${update}) * uniforms.lr;`,
    'lr : f32,',
  );
  return [run(backend, weightsProgram, Object.values(weightInputs), lr), newBuffer];
}

export function sgdUpdateConfig(): tf.KernelConfig {
  return {
    kernelName: SGD_UPDATE,
    backendName: 'webgpu',
    kernelFunc: ({ inputs, backend, attrs }) =>
      sgdUpdate(
        backend as unknown as WebGpuBackend,
        inputs as { w: tf.TensorInfo; g: tf.TensorInfo; buffer: tf.TensorInfo },
        // Cast: tfjs passes attrs as a generic map; these are the attrs fusedSgdStep sets.
        attrs as unknown as SgdUpdateAttrs,
      ),
  };
}
