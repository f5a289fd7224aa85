// What a run measures, per epoch and at the end: a leaf module, so that the run files (runs/), tracking
// and training all use these types without importing the trainer.
import type { Evaluation } from './evaluate.js';

export interface EpochMetrics {
  epoch: number;
  trainLoss: number;
  trainAccuracy: number;
  validationLoss: number;
  validationAccuracy: number;
  learningRate: number;
  seconds: number;
  imagesPerSecond: number;
}

export interface Metrics {
  history: EpochMetrics[];
  test: Evaluation & { classNames: string[] };
}
