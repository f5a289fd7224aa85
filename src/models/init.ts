// Seeded initialisers shared by the models. PyTorch's default (kaiming_uniform with a=sqrt(5)) draws
// weights and biases from U(-1/sqrt(fan_in), 1/sqrt(fan_in)); we use the same so the ancestor's recipe
// behaves as it did. Each layer gets its own seed derived from the run's seed, so initialisation is
// reproducible and independent of layer order elsewhere.
import * as tf from '@tensorflow/tfjs';

type Initializer = ReturnType<typeof tf.initializers.zeros>;

export interface LayerSeeds {
  next(): number;
}

export function layerSeeds(seed: number): LayerSeeds {
  let i = 0;
  // Spread layer seeds apart; tfjs seeds its alea PRNG from the number.
  return { next: () => (seed * 7919 + ++i * 104_729) % 2_147_483_647 };
}

export function torchWeightInit(seed: number): Initializer {
  return tf.initializers.varianceScaling({ scale: 1 / 3, mode: 'fanIn', distribution: 'uniform', seed });
}

export function torchBiasInit(fanIn: number, seed: number): Initializer {
  const bound = 1 / Math.sqrt(fanIn);
  return tf.initializers.randomUniform({ minval: -bound, maxval: bound, seed });
}
