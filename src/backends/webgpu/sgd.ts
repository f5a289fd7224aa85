// The SGD update on WebGPU as two dispatches per variable (momentum buffer, then weights) instead
// of ~8 tfjs ops, each its own dispatch and full pass. The same float32 operations in the same order
// as the ops in src/training/sgd.ts. The learning rate is a uniform (it changes every step; a
// constant would compile a shader per value); momentum, weight decay and Nesterov are constants.
import * as tf from '@tensorflow/tfjs';
import type { FusedSgdStep } from '../wasm-sgd.js';
import { elementwise, run, type WebGpuBackend } from './program.js';

function f32(value: number): string {
  // WGSL float literal of a float32 value (enough digits to round-trip).
  const s = Math.fround(value).toPrecision(9);
  return s.includes('.') || s.includes('e') ? s : `${s}.0`;
}

/**
 * Updates `variables` and the momentum `buffers` (both by assigning new tensors) when the active
 * backend is webgpu; returns false (and changes nothing) otherwise.
 */
export const webgpuSgdStep: FusedSgdStep = (variables, grads, buffers, settings, learningRate) => {
  if (tf.getBackend() !== 'webgpu') return false;
  if ([...variables, ...grads, ...buffers].some((t) => t.dtype !== 'float32')) return false;
  const backend = tf.backend() as unknown as WebGpuBackend;
  const { momentum, nesterov, weightDecay } = settings;
  const decayed = weightDecay > 0 ? `g[i] + w[i] * ${f32(weightDecay)}` : 'g[i]';
  const key = `${f32(momentum)}_${nesterov}_${f32(weightDecay)}`;
  const lr = [{ type: 'float32' as const, data: [learningRate] }];
  const assign = (target: tf.Variable, info: tf.TensorInfo) => {
    const t = tf.engine().makeTensorFromTensorInfo(info);
    target.assign(t);
    t.dispose();
  };
  for (let i = 0; i < variables.length; i++) {
    const w = variables[i]!;
    const g = grads[i]!;
    if (momentum === 0) {
      const next = elementwise(
        backend,
        `sgd_w0_${key}`,
        w.shape,
        ['w', 'g'],
        `result[i] = w[i] - (${decayed}) * uniforms.lr;`,
        'lr : f32,',
      );
      assign(w, run(backend, next, [w, g], lr));
      continue;
    }
    const buffer = buffers[i]!;
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
    const newWeights = run(backend, weightsProgram, Object.values(weightInputs), lr);
    assign(buffer, newBuffer);
    assign(w, newWeights);
  }
  return true;
};
