// Where a run's metrics go besides the run folder: the interface every tracker implements, and the
// tracker of a run that is not tracked. W&B's is in wandb.ts.
import type { RunConfig } from '../config.js';
import type { WandbTracking } from '../runs/manifest.js';
import type { EpochMetrics } from '../runs/metrics.js';

/**
 * The names a tracker logs the metrics under (W&B's panels group them by the prefix), by our key: a
 * sweep file may name its metric either way.
 */
export const LOGGED_METRIC_NAMES = {
  trainLoss: 'train/loss',
  trainAccuracy: 'train/accuracy',
  validationLoss: 'validation/loss',
  validationAccuracy: 'validation/accuracy',
  testLoss: 'test/loss',
  testAccuracy: 'test/accuracy',
} as const;

/** What run.json records about tracking. */
export type TrackingRecord = { wandb: WandbTracking };

/** The test results that become the W&B run's summary (`metrics.test` fits). */
export interface RunSummary {
  accuracy: number;
  loss: number;
  classNames: string[];
  perClassAccuracy: number[];
}

/** Where a run's metrics go besides the run folder. No method throws: tracking never stops training. */
export interface Tracker {
  /** Starts tracking the run (bounded by a timeout). */
  start(config: RunConfig): Promise<void>;
  /** Sends one epoch's metrics, with the epoch as step; returns at once. */
  logEpoch(metrics: EpochMetrics): void;
  /** Sends the summary and the files (PNG charts), ends the tracked run; resolves to what run.json records. */
  finish(summary: RunSummary, files: string[]): Promise<TrackingRecord | null>;
  /** Ends the tracked run of a run that did not complete. */
  abort(reason: 'failed' | 'interrupted'): Promise<void>;
}

export type TrackerFactory = (config: RunConfig, log: (line: string) => void) => Tracker;

/** The tracker of a run without `--wandb`: does nothing, records nothing. */
export const noTracker: Tracker = {
  start: async () => {},
  logEpoch: () => {},
  finish: async () => null,
  abort: async () => {},
};
