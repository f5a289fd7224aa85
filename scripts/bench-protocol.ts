// What scripts/bench.ts and scripts/bench-child.ts exchange: a child gets one ChildSpec as its argument
// and prints one ChildResult. A module of its own because each of the two runs on import.
import type { BackendName, BackendReport } from '../src/backends/select.js';
import type { ModelName } from '../src/config.js';

export const RESULT_MARKER = '@@bench-result ';

export interface ProbeSpec {
  kind: 'probe';
  threads: number;
}

export interface ThroughputSpec {
  kind: 'throughput';
  backend: BackendName;
  threads: number;
  model: ModelName;
  batch: number;
  /** Images in the timed part (rounded to whole batches, at least one). */
  images: number;
  warmupSteps: number;
}

export interface TimeToAccuracySpec {
  kind: 'time-to-accuracy';
  backend: BackendName | 'auto';
  data: string;
  epochs: number;
  /** Decoded-image cache (kept between runs: decoding 50,000 JPEGs is not what we measure). */
  cacheFolder: string;
}

export type ChildSpec = ProbeSpec | ThroughputSpec | TimeToAccuracySpec;

export interface ProbeResult {
  kind: 'probe';
  backends: BackendReport[];
}

export interface ThroughputResult {
  kind: 'throughput';
  backend: BackendName;
  package: string;
  /** Threads the backend reports using (may differ from the ones asked for). */
  threads: number;
  model: ModelName;
  batch: number;
  images: number;
  seconds: number;
  /** Process CPU time over the timed steps: on a shared machine wall time also counts others' use. */
  cpuSeconds: number;
  imagesPerSecond: number;
  peakRssMB: number;
  finalLoss: number;
  /** GPU backends: GPU time per kernel name in one profiled step (timestamp queries), most first. */
  topKernels?: { name: string; ms: number; calls: number }[];
}

export interface TimeToAccuracyResult {
  kind: 'time-to-accuracy';
  backend: string;
  threads: number;
  trainImages: number;
  validationImages: number;
  testImages: number;
  history: { epoch: number; seconds: number; validationAccuracy: number; trainLoss: number }[];
  testAccuracy: number;
  /** train() from call to return: includes data loading, validation passes and writing the run. */
  wallSeconds: number;
  peakRssMB: number;
}

export type ChildResult = ProbeResult | ThroughputResult | TimeToAccuracyResult;
