// Running a sweep locally: each trial is one run of the experiment, trained by the CLI in a child
// process (a crash or out-of-memory in one trial cannot take the sweep down), N at a time. Finished
// trials are skipped, interrupted ones resumed, a failing one is reported and the others go on.
// The summary (sweep.json, comparison.png) names the best trial by the sweep's metric.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { flagName, keyName } from '../config.js';
import { compareRuns, type Comparison } from '../runs/compare.js';
import { readManifest } from '../runs/load-run.js';
import { configArgs, MANIFEST_FILE, type Manifest } from '../runs/manifest.js';
import { describeParams, readSweepFile, trialConfig, type Sweep, type Trial } from './sweep-file.js';

export const SWEEP_SUMMARY_FILE = 'sweep.json';

export interface SweepOptions {
  /** Experiment the trials belong to (default: the sweep's name). */
  experimentName?: string;
  experimentsFolder?: string;
  /** Options for every trial (as the trainer's flags, by schema key); the sweep's parameters override them. */
  base?: Record<string, unknown>;
  /** Trials trained at the same time (default 1); each gets cores / N threads unless `base.threads` is set. */
  parallel?: number;
  /** Run only these trials (by name, e.g. trial-02): one CI matrix job each. */
  only?: string[];
  /** false: train nothing, only summarise the trials already there (a CI job after the matrix). */
  train?: boolean;
  log?: (line: string) => void;
  /** Aborting interrupts the running trials (they keep checkpoints) and starts no more. */
  signal?: AbortSignal;
}

export interface TrialResult {
  name: string;
  params: Trial['params'];
  status: 'completed' | 'skipped' | 'failed' | 'interrupted' | 'missing';
  /** The sweep metric's value for a finished trial. */
  metric: number | null;
  /** Why it failed (the trainer's error line). */
  error?: string;
}

export interface SweepResult {
  experiment: string;
  sweep: Sweep;
  trials: TrialResult[];
  /** The finished trial with the best metric. */
  best: string | null;
  comparison: Comparison;
  /** Path of sweep.json. */
  summaryFile: string;
}

/** The CLI that trains each trial: dist/cli/main.js beside this module (or the .ts source under tsx). */
function cliPath(): string {
  const js = fileURLToPath(new URL('../cli/main.js', import.meta.url));
  return existsSync(js) ? js : fileURLToPath(new URL('../cli/main.ts', import.meta.url));
}

function metricOf(manifest: Manifest, name: Sweep['metric']['name']): number {
  return manifest.results[name];
}

/** Trains one trial in a child process; resolves with its exit code and last error line. */
function trainInChild(
  args: string[],
  signal: AbortSignal | undefined,
): Promise<{ code: number; lastError: string }> {
  return new Promise((done, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, cliPath(), ...args], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      // Only the tail is kept: the error line is the last one.
      stderr = (stderr + d.toString()).slice(-4000);
    });
    const onAbort = () => child.kill('SIGINT');
    signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', reject);
    child.on('close', (code, killedBy) => {
      signal?.removeEventListener('abort', onAbort);
      const lines = stderr.trim().split('\n');
      const errorLine =
        [...lines].reverse().find((l) => l.startsWith('image-classifier-trainer:')) ?? lines.at(-1) ?? '';
      done({
        code: code ?? (killedBy ? 128 : 1),
        lastError: errorLine.replace(/^image-classifier-trainer: /, ''),
      });
    });
  });
}

export async function runSweep(file: string, options: SweepOptions = {}): Promise<SweepResult> {
  const log = options.log ?? (() => {});
  const base = Object.fromEntries(Object.entries(options.base ?? {}).map(([k, v]) => [keyName(k), v]));
  const experimentsFolder = options.experimentsFolder ?? './experiments';
  const sweep = readSweepFile(file, { ...base, experimentsFolder });
  const experiment = options.experimentName ?? sweep.name;
  const common: Record<string, unknown> = { ...base, experimentName: experiment, experimentsFolder };
  // The experiment name (the sweep's, by default) must make valid runs too.
  if (sweep.trials[0]) trialConfig(sweep.trials[0], common);
  const parallel = Math.max(1, Math.floor(options.parallel ?? 1));
  if (parallel > 1 && common.threads === undefined) {
    common.threads = Math.max(1, Math.floor(availableParallelism() / parallel));
  }
  const unknown = (options.only ?? []).filter((n) => !sweep.trials.some((t) => t.name === n));
  if (unknown.length > 0)
    throw new Error(`no trial ${unknown[0]} in ${file} (it has ${sweep.trials.length})`);
  const selected = options.only ? sweep.trials.filter((t) => options.only!.includes(t.name)) : sweep.trials;
  const experimentPath = resolve(experimentsFolder, experiment);
  log(
    `sweep ${sweep.name}: ${sweep.method}, ${sweep.trials.length} trials` +
      `${selected.length < sweep.trials.length ? ` (running ${selected.map((t) => t.name).join(', ')})` : ''}` +
      `, ${parallel} at a time, into ${experimentPath}; optimising ${sweep.metric.name} (${sweep.metric.goal})`,
  );

  const results = new Map<string, TrialResult>();
  const runTrial = async (trial: Trial): Promise<void> => {
    const described = describeParams(trial);
    const runFolder = join(experimentPath, trial.name);
    const result: TrialResult = { name: trial.name, params: trial.params, status: 'failed', metric: null };
    results.set(trial.name, result);
    if (existsSync(join(runFolder, MANIFEST_FILE))) {
      const manifest = await readManifest(runFolder);
      const mismatch = Object.entries(trial.params).find(
        ([k, v]) => (manifest.config as Record<string, unknown>)[k] !== v,
      );
      if (mismatch) {
        result.error = `${experiment}/${trial.name} exists with other parameters (--${flagName(mismatch[0])} ${String((manifest.config as Record<string, unknown>)[mismatch[0]])}): another sweep file?`;
        log(`${trial.name}: ${result.error}`);
        return;
      }
      result.status = 'skipped';
      result.metric = metricOf(manifest, sweep.metric.name);
      log(`${trial.name} (${described}): already finished, skipped`);
      return;
    }
    if (options.train === false) {
      result.status = 'missing';
      log(`${trial.name} (${described}): not there`);
      return;
    }
    if (options.signal?.aborted) {
      result.status = 'interrupted';
      return;
    }
    const resuming = existsSync(join(experimentPath, `.${trial.name}.partial`));
    const config = trialConfig(trial, common);
    const args = resuming
      ? configArgs(
          {
            experimentName: config.experimentName,
            runName: config.runName,
            experimentsFolder: config.experimentsFolder,
          },
          flagName,
        ).concat('--resume')
      : configArgs(config, flagName);
    log(`${trial.name} (${described}): ${resuming ? 'resuming' : 'training'}`);
    const started = performance.now();
    const { code, lastError } = await trainInChild(args, options.signal);
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    if (code === 0) {
      const manifest = await readManifest(runFolder);
      result.status = 'completed';
      result.metric = metricOf(manifest, sweep.metric.name);
      log(`${trial.name}: done in ${seconds} s, ${sweep.metric.name} ${result.metric.toFixed(4)}`);
    } else if (code === 130) {
      result.status = 'interrupted';
      log(`${trial.name}: interrupted after ${seconds} s (rerun the sweep to resume it)`);
    } else {
      result.error = lastError || `exit code ${code}`;
      log(`${trial.name}: failed after ${seconds} s: ${result.error}`);
    }
  };

  // N workers pull trials in order, so the first trials start first whatever N is.
  const queue = [...selected];
  await Promise.all(
    Array.from({ length: Math.min(parallel, queue.length) }, async () => {
      for (let trial = queue.shift(); trial; trial = queue.shift()) await runTrial(trial);
    }),
  );

  const trials = selected.map((t) => results.get(t.name)!);
  const better = (a: number, b: number) => (sweep.metric.goal === 'maximize' ? a > b : a < b);
  let best: TrialResult | null = null;
  for (const t of trials) {
    if (t.metric !== null && (best === null || better(t.metric, best.metric!))) best = t;
  }
  // The summary goes into the experiment folder even when no trial got that far.
  await mkdir(experimentPath, { recursive: true });
  const comparison = await compareRuns(experiment, { experimentsFolder });
  const summaryFile = join(experimentPath, SWEEP_SUMMARY_FILE);
  const summary = {
    sweep: sweep.name,
    file: resolve(file),
    method: sweep.method,
    metric: sweep.metric,
    trials,
    best: best?.name ?? null,
  };
  await writeFile(`${summaryFile}.tmp`, JSON.stringify(summary, null, 2));
  await rename(`${summaryFile}.tmp`, summaryFile);
  return { experiment, sweep, trials, best: best?.name ?? null, comparison, summaryFile };
}

/**
 * The trials as a GitHub Actions matrix (`strategy.matrix: ${{ fromJSON(...) }}`); each entry also
 * names the experiment the trial's run goes to.
 */
export function sweepMatrix(
  file: string,
  options: { experimentName?: string; base?: Record<string, unknown> } = {},
): { include: Array<{ trial: string; experiment: string; params: string }> } {
  const sweep = readSweepFile(file, options.base ?? {});
  const experiment = options.experimentName ?? sweep.name;
  if (sweep.trials[0]) trialConfig(sweep.trials[0], { ...options.base, experimentName: experiment });
  return { include: sweep.trials.map((t) => ({ trial: t.name, experiment, params: describeParams(t) })) };
}
