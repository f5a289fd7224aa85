// SGD with momentum, Nesterov and L2 weight decay, written as PyTorch's torch.optim.SGD does it
// (decay added to the gradient, momentum buffer starting at the first gradient), so recipes carry over.
// Our own rather than tf.train.momentum: that one has no weight decay, and owning the state makes it
// easy to checkpoint.
import * as tf from '@tensorflow/tfjs';
import { fusedSgdStep, type SgdSettings } from '../backends/sgd.js';

export type SgdOptions = SgdSettings;

/** What the training step needs of an optimiser, and what a checkpoint saves of it. */
export interface Optimizer {
  /** One update with `grads[i]` the gradient of `variables[i]`. Disposes nothing it was given. */
  step(grads: tf.Tensor[], learningRate: number): void;
  /** The state to checkpoint (read with `data()`); setState takes the same values back. */
  state(): tf.Tensor[];
  setState(values: Float32Array[]): void;
  dispose(): void;
}

export class Sgd implements Optimizer {
  private readonly buffers: tf.Variable[];

  constructor(
    private readonly variables: tf.Variable[],
    private readonly options: SgdOptions,
    /** false: always tfjs ops (tests compare the two). */
    private readonly fused = true,
  ) {
    // In a tidy: the zeros tensor is the variable's initial value only, not kept beside it.
    this.buffers = variables.map((v) => tf.tidy(() => tf.variable(tf.zerosLike(v), false)));
  }

  /** One update with `grads[i]` the gradient of `variables[i]`. Disposes nothing it was given. */
  step(grads: tf.Tensor[], learningRate: number): void {
    // The same arithmetic as below, as one kernel per variable where the backend has one
    // (src/backends/sgd.ts: wasm and webgpu).
    if (this.fused && fusedSgdStep(this.variables, grads, this.buffers, this.options, learningRate)) return;
    const { momentum, nesterov, weightDecay } = this.options;
    tf.tidy(() => {
      const lr = tf.scalar(learningRate);
      this.variables.forEach((w, i) => {
        let g = grads[i]!;
        if (weightDecay > 0) g = tf.add(g, tf.mul(w, weightDecay));
        let update = g;
        if (momentum > 0) {
          const buffer = this.buffers[i]!;
          const next = tf.add(tf.mul(buffer, momentum), g);
          buffer.assign(next);
          update = nesterov ? tf.add(g, tf.mul(next, momentum)) : next;
        }
        w.assign(tf.sub(w, tf.mul(update, lr)));
      });
    });
  }

  /** Momentum buffers, in variable order (for checkpoints). */
  state(): tf.Variable[] {
    return this.buffers;
  }

  /** Restores momentum buffers saved from state() (a checkpoint), bit for bit. */
  setState(values: Float32Array[]): void {
    if (values.length !== this.buffers.length || values.some((v, i) => v.length !== this.buffers[i]!.size)) {
      throw new Error('the checkpoint does not fit this model (other optimiser state shapes)');
    }
    tf.tidy(() => this.buffers.forEach((b, i) => b.assign(tf.tensor(values[i]!, b.shape))));
  }

  dispose(): void {
    for (const b of this.buffers) b.dispose();
  }
}
