// Sweep files in the W&B style (method, metric, parameters with values or distributions, run_cap),
// turned into a fixed list of trials: the same file (and seed) always gives the same trials, so a
// sweep can be stopped, rerun, or fanned out as a CI matrix and still mean the same runs.
import { basename, extname } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { flagName, keyName, parseRunConfig, type RunConfig } from '../config.js';
import { Random } from '../data/random.js';
import { readBoundedFileSync } from '../util/bounded-read.js';
import { ConfigError } from '../errors.js';
import { LOGGED_METRIC_NAMES } from '../tracking/tracker.js';

const scalar = z.union([z.number(), z.string(), z.boolean()]);

const parameterSchema = z.union([
  z.object({ value: scalar }).strict(),
  z.object({ values: z.array(scalar).min(1) }).strict(),
  z
    .object({
      distribution: z.enum(['uniform', 'log_uniform_values', 'int_uniform', 'q_uniform', 'normal']),
      min: z.number().optional(),
      max: z.number().optional(),
      q: z.number().positive().optional(),
      mu: z.number().optional(),
      sigma: z.number().positive().optional(),
    })
    .strict(),
]);
export type SweepParameter = z.infer<typeof parameterSchema>;

/**
 * Metrics a sweep can optimise: our names (snake_case too) or the names `--wandb` logs them under
 * (`validation/accuracy`), so that one sweep file serves both.
 */
const METRICS = ['validationAccuracy', 'validationLoss', 'testAccuracy', 'testLoss'] as const;
export type SweepMetricName = (typeof METRICS)[number];
const BY_LOGGED_NAME = new Map<string, string>(
  Object.entries(LOGGED_METRIC_NAMES).map(([key, logged]) => [logged, key]),
);

const sweepSchema = z
  .object({
    name: z.string().min(1).optional(),
    description: z.string().optional(),
    method: z.enum(['grid', 'random']),
    metric: z
      .object({
        name: z
          .string()
          .transform((name) => BY_LOGGED_NAME.get(name) ?? keyName(name))
          .pipe(z.enum(METRICS)),
        goal: z.enum(['maximize', 'minimize']).default('maximize'),
      })
      .default({ name: 'validationAccuracy', goal: 'maximize' }),
    run_cap: z.number().int().min(1).optional(),
    /** Ours: the seed of the random search (W&B files have none; default 0). */
    seed: z.number().int().min(0).default(0),
    parameters: z.record(z.string(), parameterSchema),
    // W&B sweep files name the program to run; here the program is the trainer itself.
    program: z.string().optional(),
    command: z.array(z.string()).optional(),
  })
  .strict();

export interface Trial {
  /** Run name: trial-01, trial-02, ... (numbered in generation order). */
  name: string;
  /** The parameter values of this trial, by schema key. */
  params: Record<string, number | string | boolean>;
}

export interface Sweep {
  name: string;
  method: 'grid' | 'random';
  metric: { name: SweepMetricName; goal: 'maximize' | 'minimize' };
  trials: Trial[];
}

/**
 * The most trials a sweep may have: each is a training run, and a grid multiplies fast (six
 * parameters of ten values are a million runs). More is refused before anything is made.
 */
export const MAX_TRIALS = 1000;

function fail(file: string, message: string): never {
  throw new ConfigError(`sweep file ${file}: ${message}`);
}

/** Reads and validates a sweep file; `base` (flags given beside it) must make valid runs with every trial. */
export function readSweepFile(file: string, base: Record<string, unknown> = {}): Sweep {
  let text: string;
  try {
    // Bounded, regular files only, as --config: a device or a FIFO must not be read forever.
    text = readBoundedFileSync(file, 2 ** 20).toString('utf8');
  } catch (error) {
    fail(file, `cannot read it (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  let data: unknown;
  try {
    data = parseYaml(text);
  } catch (error) {
    fail(file, `not valid YAML or JSON (${(error as Error).message.split('\n')[0]})`);
  }
  const parsed = sweepSchema.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    fail(file, `${issue.path.join('.') || 'top level'}: ${issue.message}`);
  }
  const spec = parsed.data;
  const params = Object.entries(spec.parameters).map(([key, p]) => [keyName(key), p] as const);
  for (const [key] of params) {
    if (['experimentName', 'runName', 'experimentsFolder'].includes(key)) {
      fail(file, `parameter ${key} cannot be swept (runs are named by the sweep)`);
    }
  }

  let trials: Array<Record<string, number | string | boolean>>;
  if (spec.method === 'grid') {
    const axes = params.map(([key, p]) => {
      if ('distribution' in p) fail(file, `grid search needs values for ${key}, not a distribution`);
      return [key, 'value' in p ? [p.value] : p.values] as const;
    });
    const size = axes.reduce((n, [, values]) => n * values.length, 1);
    const count = Math.min(size, spec.run_cap ?? Infinity);
    if (count > MAX_TRIALS) {
      fail(
        file,
        `its grid has ${size.toLocaleString('en-US')} trials (${axes.map(([, v]) => v.length).join(' x ')} values), more than the ${MAX_TRIALS.toLocaleString('en-US')} a sweep may run; list fewer values or set run_cap`,
      );
    }
    // Only the trials run are made (the first parameter varies slowest), never the whole grid.
    trials = Array.from({ length: count }, (_, index) => gridPoint(axes, index));
  } else {
    if (spec.run_cap === undefined) fail(file, 'random search needs run_cap (how many trials)');
    if (spec.run_cap > MAX_TRIALS) {
      fail(
        file,
        `run_cap ${spec.run_cap} is more than the ${MAX_TRIALS.toLocaleString('en-US')} trials a sweep may run`,
      );
    }
    const random = new Random(spec.seed);
    trials = Array.from({ length: spec.run_cap }, () =>
      Object.fromEntries(params.map(([key, p]) => [key, draw(file, key, p, random)])),
    );
  }

  const width = Math.max(2, String(trials.length).length);
  const sweep: Sweep = {
    name: spec.name ?? basename(file, extname(file)),
    method: spec.method,
    metric: spec.metric,
    trials: trials.map((p, i) => ({ name: `trial-${String(i + 1).padStart(width, '0')}`, params: p })),
  };
  // Every trial must be a valid run before any is started.
  for (const trial of sweep.trials) {
    try {
      trialConfig(trial, { experimentName: 'check', ...base });
    } catch (error) {
      if (error instanceof ConfigError)
        fail(file, `${trial.name} (${describeParams(trial)}): ${error.message}`);
      throw error;
    }
  }
  return sweep;
}

/** The `index`-th point of the grid, counting with the last parameter fastest. */
function gridPoint(
  axes: ReadonlyArray<readonly [string, ReadonlyArray<number | string | boolean>]>,
  index: number,
): Record<string, number | string | boolean> {
  const digits: number[] = [];
  let rest = index;
  for (let k = axes.length - 1; k >= 0; k--) {
    const count = axes[k]![1].length;
    digits[k] = rest % count;
    rest = Math.floor(rest / count);
  }
  return Object.fromEntries(axes.map(([key, values], k) => [key, values[digits[k]!]!]));
}

function draw(file: string, key: string, p: SweepParameter, random: Random): number | string | boolean {
  if ('value' in p) return p.value;
  if ('values' in p) return p.values[random.int(p.values.length)]!;
  const need = (v: number | undefined, what: string): number =>
    v ?? fail(file, `${key}: distribution ${p.distribution} needs ${what}`);
  switch (p.distribution) {
    case 'uniform':
      return random.uniform(need(p.min, 'min'), need(p.max, 'max'));
    case 'log_uniform_values': {
      const [lo, hi] = [need(p.min, 'min'), need(p.max, 'max')];
      if (lo <= 0) fail(file, `${key}: log_uniform_values needs min > 0`);
      return Math.exp(random.uniform(Math.log(lo), Math.log(hi)));
    }
    case 'int_uniform': {
      const [lo, hi] = [need(p.min, 'min'), need(p.max, 'max')];
      return Math.ceil(lo) + random.int(Math.floor(hi) - Math.ceil(lo) + 1);
    }
    case 'q_uniform': {
      const q = p.q ?? 1;
      return Math.round(random.uniform(need(p.min, 'min'), need(p.max, 'max')) / q) * q;
    }
    case 'normal':
      return random.normal(p.mu ?? 0, p.sigma ?? 1);
  }
}

/** The trial's parameters as `--flag value` pairs, for people. */
export function describeParams(trial: Trial): string {
  return Object.entries(trial.params)
    .map(([k, v]) => `--${flagName(k)} ${typeof v === 'number' ? Number(v.toPrecision(6)) : v}`)
    .join(' ');
}

/** The full configuration of one trial: base flags, then the trial's parameters, then its names. */
export function trialConfig(trial: Trial, base: Record<string, unknown>): RunConfig {
  return parseRunConfig({ ...base, ...trial.params, runName: trial.name });
}
