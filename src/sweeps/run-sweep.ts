// Running a sweep locally: each trial is one run of the experiment, trained by train() in a child
// process (src/cli/trial.ts: a crash or out-of-memory in one trial cannot take the sweep down), N at a time. Finished
// trials are skipped, interrupted ones resumed, a failing one is reported and the others go on.
// A trial already there counts as done only when its whole configuration and its data are what this
// sweep would train now; otherwise the sweep refuses before training anything.
// The summary (sweep.json, comparison.png) names the best trial by the sweep's metric.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { flagName, keyName, type RunConfig, DEFAULT_EXPERIMENTS_FOLDER } from '../config.js';
import { datasetOptions, loadDataset } from '../data/load.js';
import { silentProgress } from '../reports/progress.js';
import { loadCheckpoint } from '../runs/checkpoint.js';
import { compareRuns, type Comparison } from '../runs/compare.js';
import { readManifest } from '../runs/load-run.js';
import { RUN_FILES, SWEEP_SUMMARY_FILE } from '../runs/layout.js';
import type { Manifest } from '../runs/manifest.js';
import { findResumable } from '../runs/run-folder.js';
import { LOCATION_KEYS } from '../training/resume.js';
import { describeParams, readSweepFile, trialConfig, type Sweep, type Trial } from './sweep-file.js';
import { ConfigError, EXIT } from '../errors.js';

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
  /** Aborting stops the running trials at once (each keeps its last checkpoint written). */
  stopNow?: AbortSignal;
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

/** What the sweep asks of a trial's child process: its first IPC message (not argv, which `ps` shows). */
export interface TrialRequest {
  /** The run's configuration; with `resume`, only its names and folders. */
  config: Record<string, unknown>;
  resume: boolean;
}

/** What a trial's child process reports (over IPC) before it exits. */
export interface TrialReport {
  status: 'completed' | 'interrupted' | 'failed';
  exitCode: number;
  runPath?: string;
  /** The error's first line. */
  error?: string;
}

/** The child entry that trains a trial: dist/cli/trial.js (or the .ts source under tsx). */
function trialEntry(): string {
  const js = fileURLToPath(new URL('../cli/trial.js', import.meta.url));
  return existsSync(js) ? js : fileURLToPath(new URL('../cli/trial.ts', import.meta.url));
}

/** null for a test metric of a run without test images. */
function metricOf(manifest: Manifest, name: Sweep['metric']['name']): number | null {
  return manifest.results[name];
}

interface ChildExit {
  code: number | null;
  /** The signal that ended the child, if one did. */
  killedBy: NodeJS.Signals | null;
  /** What the child reported; absent when it died first (a crash, out of memory, a kill). */
  report?: TrialReport;
  /** The last line it wrote on stderr (what a crash says). */
  lastLine: string;
}

/**
 * Trains one trial in a child process; resolves with how it ended. Each signal to the sweep is
 * passed on as one SIGINT (the first: stop after the step; the second: at once).
 */
function trainInChild(
  request: TrialRequest,
  signals: Pick<SweepOptions, 'signal' | 'stopNow'>,
  live: Set<ChildProcess>,
): Promise<ChildExit> {
  return new Promise((done, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, trialEntry()], {
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      // A process group of its own: Ctrl-C in a terminal reaches the sweep only, so a child gets
      // exactly the signals the sweep passes on (the terminal's too would count as a second one).
      detached: true,
    });
    live.add(child);
    child.send(request);
    let report: TrialReport | undefined;
    child.on('message', (message) => (report = message as TrialReport));
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => {
      // Only the tail is kept: a crash's message is its last line.
      stderr = (stderr + d.toString()).slice(-4000);
    });
    const pass = () => child.kill('SIGINT');
    signals.signal?.addEventListener('abort', pass, { once: true });
    signals.stopNow?.addEventListener('abort', pass, { once: true });
    child.on('error', (error) => {
      live.delete(child);
      reject(error);
    });
    child.on('close', (code, killedBy) => {
      live.delete(child);
      signals.signal?.removeEventListener('abort', pass);
      signals.stopNow?.removeEventListener('abort', pass);
      done({ code, killedBy, report, lastLine: stderr.trim().split('\n').at(-1) ?? '' });
    });
  });
}

/** Keys that do not change what a trial trains or on what: names, folders, threads, tracking. */
const NEUTRAL_KEYS: ReadonlySet<string> = new Set([...LOCATION_KEYS, 'numWorkers', 'downloadUrl']);

function shown(value: unknown): string {
  return value === undefined ? 'unset' : typeof value === 'string' ? value : JSON.stringify(value);
}

/** The first configuration key on which a trial's recorded run differs from what would run now. */
function configDifference(recorded: RunConfig, now: RunConfig): string | null {
  const a = recorded as Record<string, unknown>;
  const b = now as Record<string, unknown>;
  for (const key of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
    if (NEUTRAL_KEYS.has(key)) continue;
    // A folder is the same folder however it is spelled; its contents are checked by checksum.
    const same =
      key === 'datasetFolder' && typeof a[key] === 'string' && typeof b[key] === 'string'
        ? resolve(a[key]) === resolve(b[key])
        : JSON.stringify(a[key]) === JSON.stringify(b[key]);
    if (!same) return `--${flagName(key)} ${shown(a[key])} there, ${shown(b[key])} now`;
  }
  return null;
}

/**
 * Refuses (before anything is trained) when a trial already there, finished or interrupted, was
 * trained with another configuration or on other data than this sweep would use now: it would
 * otherwise be skipped or resumed as if it were this sweep's.
 */
async function assertTrialsCurrent(
  sweep: Sweep,
  trials: Trial[],
  common: Record<string, unknown>,
  where: { experimentsFolder: string; experiment: string },
  log: (line: string) => void,
): Promise<void> {
  const experimentPath = resolve(where.experimentsFolder, where.experiment);
  const checksums = new Map<string, Promise<Record<string, string>>>();
  const dataOf = (config: RunConfig) => {
    // What the data's checksums depend on (CIFAR-10's not on the seed).
    const key = JSON.stringify([
      config.dataset,
      config.datasetFolder && resolve(config.datasetFolder),
      resolve(config.dataFolder),
      config.testSplit,
      config.dataset === 'cifar10' ? null : config.seed,
    ]);
    if (!checksums.has(key)) {
      log(`checking that the trials already there were trained on this data (${config.dataset})`);
      checksums.set(
        key,
        loadDataset({
          ...datasetOptions(config),
          download: false,
          progress: silentProgress,
          log: () => {},
        }).then((d) => d.checksums),
      );
    }
    return checksums.get(key)!;
  };
  const stale: Array<{ trial: string; path: string; why: string }> = [];
  for (const trial of trials) {
    const finished = join(experimentPath, trial.name);
    let path: string;
    let recorded: { config: RunConfig; checksums: Record<string, string> };
    if (existsSync(join(finished, RUN_FILES.manifest))) {
      const manifest = await readManifest(finished);
      path = finished;
      recorded = { config: manifest.config, checksums: manifest.dataset.checksums };
    } else {
      const partial = findResumable(where.experimentsFolder, where.experiment, trial.name);
      if (partial === null) continue;
      const checkpoint = await loadCheckpoint(partial);
      path = partial;
      recorded = { config: checkpoint.config, checksums: checkpoint.dataChecksums };
    }
    const now = trialConfig(trial, common);
    let why = configDifference(recorded.config, now);
    if (why === null) {
      const current = await dataOf(now);
      const changed = Object.keys({ ...recorded.checksums, ...current }).filter(
        (k) => recorded.checksums[k] !== current[k],
      );
      if (changed.length > 0) why = `trained on other data (${changed.join(', ')} checksum differs)`;
    }
    if (why !== null) stale.push({ trial: trial.name, path, why });
  }
  if (stale.length === 0) return;
  const first = stale[0]!;
  const more = stale.length > 1 ? ` (and ${stale.length - 1} more trial${stale.length > 2 ? 's' : ''})` : '';
  throw new ConfigError(
    `sweep ${sweep.name}: ${first.trial} in ${experimentPath} is not this sweep's trial: ${first.why}${more}; nothing was trained: ` +
      `pass --experiment-name <new name> to run this sweep as a new experiment, or delete ${first.path}`,
  );
}

export async function runSweep(file: string, options: SweepOptions = {}): Promise<SweepResult> {
  const log = options.log ?? (() => {});
  const base = Object.fromEntries(Object.entries(options.base ?? {}).map(([k, v]) => [keyName(k), v]));
  const experimentsFolder = options.experimentsFolder ?? DEFAULT_EXPERIMENTS_FOLDER;
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

  if (options.train !== false) {
    await assertTrialsCurrent(sweep, selected, common, { experimentsFolder, experiment }, log);
  }

  const results = new Map<string, TrialResult>();
  // Children have process groups of their own: if the sweep exits, they are told to stop (and save).
  const live = new Set<ChildProcess>();
  const stopChildren = () => {
    for (const child of live) child.kill('SIGTERM');
  };
  process.on('exit', stopChildren);
  const runTrial = async (trial: Trial): Promise<void> => {
    const described = describeParams(trial);
    const runFolder = join(experimentPath, trial.name);
    const result: TrialResult = { name: trial.name, params: trial.params, status: 'failed', metric: null };
    results.set(trial.name, result);
    if (existsSync(join(runFolder, RUN_FILES.manifest))) {
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
    const resuming = findResumable(experimentsFolder, experiment, trial.name) !== null;
    const config = trialConfig(trial, common);
    const request: TrialRequest = resuming
      ? {
          config: {
            experimentName: config.experimentName,
            runName: config.runName,
            experimentsFolder: config.experimentsFolder,
          },
          resume: true,
        }
      : { config, resume: false };
    log(`${trial.name} (${described}): ${resuming ? 'resuming' : 'training'}`);
    const started = performance.now();
    const { code, killedBy, report, lastLine } = await trainInChild(request, options, live);
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    // A child stopped by our signal before it could catch it (while starting) was interrupted too.
    const interrupted =
      report?.status === 'interrupted' ||
      code === EXIT.interrupted ||
      killedBy === 'SIGINT' ||
      killedBy === 'SIGTERM' ||
      (options.signal?.aborted === true && code !== 0);
    if (code === 0) {
      const manifest = await readManifest(runFolder);
      result.status = 'completed';
      result.metric = metricOf(manifest, sweep.metric.name);
      log(`${trial.name}: done in ${seconds} s, ${sweep.metric.name} ${result.metric?.toFixed(4) ?? 'none'}`);
    } else if (interrupted) {
      result.status = 'interrupted';
      log(`${trial.name}: interrupted after ${seconds} s (rerun the sweep to continue it)`);
    } else {
      result.error =
        report?.error || lastLine || (code !== null ? `exit code ${code}` : `killed by ${killedBy}`);
      log(`${trial.name}: failed after ${seconds} s: ${result.error}`);
    }
  };

  // N workers pull trials in order, so the first trials start first whatever N is.
  const queue = [...selected];
  try {
    await Promise.all(
      Array.from({ length: Math.min(parallel, queue.length) }, async () => {
        for (let trial = queue.shift(); trial; trial = queue.shift()) await runTrial(trial);
      }),
    );
  } finally {
    process.off('exit', stopChildren);
  }

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
