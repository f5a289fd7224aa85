// Learning-rate schedules, as functions of the step (0-based) over `total` steps.
import type { RunConfig } from '../config.js';

export type Schedule = (step: number) => number;

export function learningRateSchedule(
  config: Pick<RunConfig, 'learningRate' | 'lrSchedule' | 'warmupFraction'>,
  total: number,
): Schedule {
  const peak = config.learningRate;
  const cosine = (from: number, to: number, t: number) =>
    to + ((from - to) * (1 + Math.cos(Math.PI * t))) / 2;
  switch (config.lrSchedule) {
    case 'constant':
      return () => peak;
    case 'cosine':
      return (step) => cosine(peak, 0, Math.min(step / Math.max(total, 1), 1));
    case 'onecycle': {
      // PyTorch's OneCycleLR shape (cosine up from peak/25, cosine down to peak/25e4), so the
      // reference's fast recipe and ours follow the same curve.
      const initial = peak / 25;
      const final = initial / 1e4;
      const up = Math.max(1, Math.round(config.warmupFraction * total));
      return (step) =>
        step < up
          ? cosine(initial, peak, step / up)
          : cosine(peak, final, Math.min((step - up) / Math.max(total - up, 1), 1));
    }
  }
}
