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
  /**
   * Per class (in class order): precision (of the images predicted as the class, how many are), recall
   * (= perClassAccuracy), F1 (their harmonic mean) and support (images of the class). A ratio with
   * nothing to divide by is 0, as scikit-learn's zero_division=0.
   */
  precision: number[];
  recall: number[];
  f1: number[];
  support: number[];
  /** Means over the classes: macro (each class counts the same), weighted (by support). */
  macro: ClassAverages;
  weighted: ClassAverages;
  /** Top-k accuracy for k = 1..min(5, classes): the true class among the k most probable. */
  topK: Record<string, number>;
}

export interface ClassAverages {
  precision: number;
  recall: number;
  f1: number;
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
