// Types of classify.mjs, for TypeScript callers.
import type { LayersModel } from '@tensorflow/tfjs';

export interface ClassifierMetadata {
  run: string;
  classNames: string[];
  inputShape: [number, number, number];
  scale: number;
  mean: number[];
  std: number[];
  output: 'logits';
}

export interface Classifier {
  model: LayersModel;
  meta: ClassifierMetadata;
}

export function loadClassifier(url: string): Promise<Classifier>;
export function classify(
  classifier: Classifier,
  pixels: Uint8Array,
  k?: number,
): Array<{ label: string; probability: number }>;
