// What a run measures, per epoch and at the end: the content of metrics.json, checkpoints and the
// tracker's logs. A leaf module of plain types, so that run files (runs/), tracking and training all
// use them without importing the trainer.

export interface Evaluation {
  /**
   * Mean loss and accuracy; NaN when there were no images (count 0): nothing was measured, and a 0%
   * would read as a result. metrics.json holds null for them (read back as NaN), and run.json's
   * results (the Manifest) null.
   */
  loss: number;
  accuracy: number;
  /** Accuracy of each class (NaN-free: a class with no images gets 0). */
  perClassAccuracy: number[];
  /** confusion[true][predicted] = count */
  confusion: number[][];
  count: number;
}

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
