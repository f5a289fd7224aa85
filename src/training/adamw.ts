// AdamW (Loshchilov & Hutter): Adam's moments with bias correction, and weight decay applied to the
// weights directly (decoupled), written as PyTorch's torch.optim.AdamW does it so recipes carry over.
// tfjs ops only (no fused kernel): deterministic on every backend, and the state is ours to checkpoint.
import * as tf from '@tensorflow/tfjs';
import type { Optimizer } from './sgd.js';

export interface AdamWOptions {
  weightDecay: number;
  beta1?: number;
  beta2?: number;
  epsilon?: number;
}

export class AdamW implements Optimizer {
  private readonly m: tf.Variable[];
  private readonly v: tf.Variable[];
  /** Updates done: the bias correction's exponent (checkpointed with the moments). */
  private steps = 0;
  /** The last state()'s step count as a tensor, freed when the next is made (or on dispose). */
  private stepsTensor: tf.Tensor | undefined;
  private readonly beta1: number;
  private readonly beta2: number;
  private readonly epsilon: number;

  constructor(
    private readonly variables: tf.Variable[],
    private readonly options: AdamWOptions,
  ) {
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.999;
    this.epsilon = options.epsilon ?? 1e-8;
    const zeros = () => variables.map((w) => tf.tidy(() => tf.variable(tf.zerosLike(w), false)));
    this.m = zeros();
    this.v = zeros();
  }

  step(grads: tf.Tensor[], learningRate: number): void {
    this.steps++;
    const { beta1, beta2, epsilon } = this;
    const correction1 = 1 - beta1 ** this.steps;
    const correction2 = 1 - beta2 ** this.steps;
    tf.tidy(() => {
      this.variables.forEach((w, i) => {
        const g = grads[i]!;
        const m = tf.add(tf.mul(this.m[i]!, beta1), tf.mul(g, 1 - beta1));
        const v = tf.add(tf.mul(this.v[i]!, beta2), tf.mul(tf.square(g), 1 - beta2));
        this.m[i]!.assign(m);
        this.v[i]!.assign(v);
        const decayed =
          this.options.weightDecay > 0 ? tf.mul(w, 1 - learningRate * this.options.weightDecay) : w;
        const denominator = tf.add(tf.div(tf.sqrt(v), Math.sqrt(correction2)), epsilon);
        w.assign(tf.sub(decayed, tf.mul(tf.div(m, denominator), learningRate / correction1)));
      });
    });
  }

  /** The first moments, the second moments, then the step count (a one-number tensor). */
  state(): tf.Tensor[] {
    this.stepsTensor?.dispose();
    this.stepsTensor = tf.tensor1d([this.steps]);
    return [...this.m, ...this.v, this.stepsTensor];
  }

  setState(values: Float32Array[]): void {
    const n = this.variables.length;
    if (
      values.length !== 2 * n + 1 ||
      values.slice(0, 2 * n).some((v, i) => v.length !== this.m[i % n]!.size)
    )
      throw new Error('the checkpoint does not fit this model (other optimiser state shapes)');
    tf.tidy(() => {
      this.m.forEach((b, i) => b.assign(tf.tensor(values[i]!, b.shape)));
      this.v.forEach((b, i) => b.assign(tf.tensor(values[n + i]!, b.shape)));
    });
    this.steps = values[2 * n]![0]!;
  }

  dispose(): void {
    for (const b of [...this.m, ...this.v]) b.dispose();
    this.stepsTensor?.dispose();
  }
}
