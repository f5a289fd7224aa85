// Experiment tracking with Weights & Biases (`--wandb`), through @wandb/sdk.
//
// The SDK (0.5.1) runs in a worker thread (wandb-worker.ts), not on the training thread: it prints
// to the console, installs SIGINT/SIGTERM handlers (which would swallow the Ctrl-C that saves a
// checkpoint), and after a server error it "retries" for up to ~25 minutes on timers that keep the
// process alive. In a worker its output is dropped, signals do not reach it, and terminate() ends
// it at once, so every call here is bounded by a timeout and training never waits for W&B longer.
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { RunConfig } from '../config.js';
import type { WandbTracking } from '../runs/manifest.js';
import type { EpochMetrics } from '../runs/metrics.js';
import {
  LOGGED_METRIC_NAMES,
  noTracker,
  type RunSummary,
  type Tracker,
  type TrackerFactory,
  type TrackingRecord,
} from './tracker.js';
import type { FromWorker, ToWorker, UploadReport, WorkerStart } from './wandb-protocol.js';

/** The default factory: a W&B tracker with `--wandb`, else none. */
export const createTracker: TrackerFactory = (config, log) =>
  config.wandb ? createWandbTracker(config, log) : noTracker;

export type WandbMode = WandbTracking['mode'];

export interface WandbSettings {
  mode: WandbMode;
  /** $WANDB_MODE as given ('' when unset). */
  modeVariable: string;
  baseUrl: string;
  project: string;
  /** null: the API key's default entity, which the server tells. */
  entity: string | null;
  apiKey: string | null;
}

const DEFAULT_BASE_URL = 'https://api.wandb.ai';
const MODES: Record<string, WandbMode> = {
  '': 'online',
  online: 'online',
  run: 'online',
  offline: 'offline',
  dryrun: 'offline',
  disabled: 'disabled',
};

/** Options and environment, flags first: --wandb-project, $WANDB_PROJECT, the experiment name. */
export function resolveWandbSettings(config: RunConfig, env: NodeJS.ProcessEnv = process.env): WandbSettings {
  const modeVariable = (env.WANDB_MODE ?? '').trim().toLowerCase();
  const baseUrl = (env.WANDB_BASE_URL?.trim() || DEFAULT_BASE_URL).replace(/\/+$/, '');
  return {
    // An unknown mode uploads nothing rather than something unexpected (start() warns).
    mode: MODES[modeVariable] ?? 'disabled',
    modeVariable,
    baseUrl,
    project: config.wandbProject ?? (env.WANDB_PROJECT?.trim() || config.experimentName),
    entity: config.wandbEntity ?? (env.WANDB_ENTITY?.trim() || null),
    apiKey: env.WANDB_API_KEY?.trim() || netrcKey(baseUrl, env),
  };
}

/**
 * The API key `wandb login` saved: the password of `machine <host>` (the base URL's host, with or
 * without its port) in $NETRC or ~/.netrc. Null when there is none.
 */
export function netrcKey(baseUrl: string, env: NodeJS.ProcessEnv = process.env): string | null {
  let hosts: string[];
  try {
    const url = new URL(baseUrl);
    hosts = [url.hostname, url.host];
  } catch {
    return null;
  }
  const home = env.HOME || env.USERPROFILE || homedir();
  const file = env.NETRC || join(home, process.platform === 'win32' ? '_netrc' : '.netrc');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  const tokens = text
    .split('\n')
    .filter((line) => !line.trimStart().startsWith('#'))
    .join('\n')
    .split(/\s+/)
    .filter((t) => t !== '');
  const passwords = new Map<string, string>();
  let machine: string | null = null;
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i];
    if (token === 'machine') machine = tokens[++i] ?? null;
    else if (token === 'default') machine = null;
    else if (token === 'login' || token === 'account') i++;
    else if (token === 'password') {
      const password = tokens[++i];
      if (machine !== null && password && !passwords.has(machine)) passwords.set(machine, password);
    } else if (token === 'macdef') break;
  }
  for (const host of hosts) {
    const password = passwords.get(host);
    if (password) return password;
  }
  return null;
}

/** Internal knobs (tests set them); not options of the CLI. */
export interface WandbTrackerOptions {
  env?: NodeJS.ProcessEnv;
  /** Bound on wandb.init(): the viewer query and the run's creation. */
  initTimeoutMs?: number;
  /** Bound on finishing: the charts' upload and the SDK's last flush. */
  finishTimeoutMs?: number;
  /** Bound on ending a run that did not complete. */
  abortTimeoutMs?: number;
  /** Bound on each request of our own (the charts' upload URLs and uploads). */
  requestTimeoutMs?: number;
  /** The worker script (the built wandb-worker.js next to this module by default). */
  workerUrl?: URL;
}

const DEFAULTS: Required<Omit<WandbTrackerOptions, 'env'>> = {
  initTimeoutMs: 15_000,
  finishTimeoutMs: 30_000,
  abortTimeoutMs: 10_000,
  requestTimeoutMs: 10_000,
  workerUrl: new URL('./wandb-worker.js', import.meta.url),
};

export function createWandbTracker(
  config: RunConfig,
  log: (line: string) => void,
  options: WandbTrackerOptions = {},
): Tracker {
  const env = options.env ?? process.env;
  return new WandbTracker(resolveWandbSettings(config, env), log, env, { ...DEFAULTS, ...options });
}

type WorkerEvent = FromWorker | { type: 'timeout' } | { type: 'gone'; reason: string };

class WandbTracker implements Tracker {
  private worker: Worker | null = null;
  private waiter: ((event: WorkerEvent) => void) | null = null;
  private report: UploadReport | null = null;
  /** Why the worker stopped before it was told to. */
  private lost: string | null = null;
  private readonly record: WandbTracking;
  private warned = false;
  private epochs = 0;
  private lastEpoch = 0;

  constructor(
    private readonly settings: WandbSettings,
    private readonly log: (line: string) => void,
    private readonly env: NodeJS.ProcessEnv,
    private readonly options: Required<Omit<WandbTrackerOptions, 'env'>>,
  ) {
    this.record = {
      url: null,
      project: settings.project,
      entity: settings.entity,
      mode: settings.mode,
      problem: null,
    };
  }

  async start(config: RunConfig): Promise<void> {
    const { settings } = this;
    if (settings.mode === 'disabled') {
      if (MODES[settings.modeVariable] === undefined)
        this.warn(
          `WANDB_MODE=${settings.modeVariable} is not online, offline or disabled; nothing is tracked`,
        );
      else this.log('W&B: disabled by WANDB_MODE=disabled; nothing is tracked');
      return;
    }
    if (settings.mode === 'offline') {
      // @wandb/sdk has no offline store (it drops what it would send) and its init() contacts the
      // server even when offline, so offline the SDK is not started at all.
      this.log(
        `W&B: offline (WANDB_MODE=${settings.modeVariable}): nothing is sent, and @wandb/sdk keeps no offline copy to sync later; the metrics are in this run folder`,
      );
      return;
    }
    if (!/^https?:\/\/[^/]/.test(settings.baseUrl)) {
      this.warn(`WANDB_BASE_URL=${settings.baseUrl} is not an http(s) URL; nothing is tracked`);
      return;
    }
    const host = hostOf(settings.baseUrl);
    if (!settings.apiKey) {
      const machine = host.replace(/:\d+$/, '');
      this.warn(
        `--wandb: no API key (set WANDB_API_KEY, or run \`wandb login\`, which saves it in ~/.netrc as machine ${machine}); training goes on without tracking`,
      );
      return;
    }
    this.epochs = config.epochs;
    const start: WorkerStart = {
      baseUrl: settings.baseUrl,
      apiKey: settings.apiKey,
      project: settings.project,
      entity: settings.entity,
      name: config.runName,
      config: trackedConfig(config),
      requestTimeoutMs: this.options.requestTimeoutMs,
    };
    try {
      this.worker = this.spawn(start);
    } catch (error) {
      this.warn(`could not start (${this.reason(error)}); training goes on without tracking`);
      return;
    }
    const event = await this.next(this.options.initTimeoutMs);
    if (event.type === 'started') {
      this.record.url = event.url;
      this.record.entity = event.entity;
      this.log(`W&B: logging to ${event.url}`);
      return;
    }
    await this.stop();
    const why =
      event.type === 'timeout'
        ? `no answer within ${this.options.initTimeoutMs / 1000} s`
        : 'reason' in event
          ? event.reason
          : event.type;
    this.warn(`could not start a run at ${host} (${why}); nothing was uploaded, training goes on without it`);
  }

  logEpoch(metrics: EpochMetrics): void {
    this.lastEpoch = metrics.epoch;
    this.post({
      type: 'log',
      step: metrics.epoch,
      data: {
        epoch: metrics.epoch,
        [LOGGED_METRIC_NAMES.trainLoss]: metrics.trainLoss,
        [LOGGED_METRIC_NAMES.trainAccuracy]: metrics.trainAccuracy,
        [LOGGED_METRIC_NAMES.validationLoss]: metrics.validationLoss,
        [LOGGED_METRIC_NAMES.validationAccuracy]: metrics.validationAccuracy,
        learning_rate: metrics.learningRate,
        images_per_second: metrics.imagesPerSecond,
        epoch_seconds: metrics.seconds,
      },
      // The last epoch's row stays open so that the test results and charts join it (same step).
      commit: metrics.epoch < this.epochs,
    });
  }

  async finish(summary: RunSummary, files: string[]): Promise<TrackingRecord | null> {
    // A run with no test split measured nothing there: no test metrics rather than NaN.
    const data: Record<string, number> = {};
    if (Number.isFinite(summary.accuracy)) {
      Object.assign(data, {
        [LOGGED_METRIC_NAMES.testAccuracy]: summary.accuracy,
        [LOGGED_METRIC_NAMES.testLoss]: summary.loss,
      });
      summary.classNames.forEach((name, i) => {
        data[`test/class_accuracy/${name}`] = summary.perClassAccuracy[i] ?? 0;
      });
    }
    const problem = await this.end({ type: 'finish', step: this.lastEpoch, data, files, exitCode: 0 });
    if (problem) this.warn(problem);
    else if (this.record.url) this.log(`W&B: metrics, summary and charts uploaded to ${this.record.url}`);
    return { wandb: { ...this.record } };
  }

  async abort(reason: 'failed' | 'interrupted'): Promise<void> {
    const url = this.record.url;
    // The SDK marks a run with a non-zero exit code as failed.
    const exitCode = reason === 'interrupted' ? 130 : 1;
    const problem = await this.end({ type: 'finish', step: this.lastEpoch, data: {}, files: [], exitCode });
    if (problem) this.warn(problem);
    else if (url && reason === 'interrupted')
      this.log(`W&B: ${url} ends here (marked failed); --resume logs the whole run to a new W&B run`);
  }

  /** Sends the last message, waits (bounded) for the worker to flush, stops it; returns what went wrong. */
  private async end(message: ToWorker): Promise<string | null> {
    if (!this.worker) {
      // Never started (that was warned), or lost mid-run.
      return this.record.url && this.lost ? this.describe(`the W&B worker stopped (${this.lost})`) : null;
    }
    this.post(message);
    const limit = message.type === 'finish' && message.exitCode === 0 ? 'finishTimeoutMs' : 'abortTimeoutMs';
    const event = await this.next(this.options[limit]);
    await this.stop();
    if (event.type === 'finished') return this.describe(null);
    if (event.type === 'timeout') {
      const pending = this.report?.pending.length ? ` (waiting for ${this.report.pending.join(', ')})` : '';
      return this.describe(`no answer within ${this.options[limit] / 1000} s${pending}`);
    }
    return this.describe(`the W&B worker stopped (${event.type === 'gone' ? event.reason : event.type})`);
  }

  /** One line on what did not reach W&B, from the worker's report and how it ended; null if all did. */
  private describe(ending: string | null): string | null {
    const report = this.report;
    const missing: string[] = [];
    if (report && report.failed.metrics > 0)
      missing.push(
        `${report.failed.metrics} of ${report.metricRequests} metric uploads failed, so per-epoch metrics or summary values are missing`,
      );
    if (report && report.failed.charts > 0)
      missing.push('the charts (metrics.png, curves.png) were not uploaded');
    if (report && report.failed.other > 0 && missing.length === 0) missing.push('the W&B SDK failed');
    if (ending) missing.push(`the run's last metrics, summary and charts may be missing`);
    if (missing.length === 0) return null;
    const reasons = [...(report?.reasons ?? []), ...(ending ? [ending] : [])].join('; ');
    return `not everything reached ${this.record.url ?? hostOf(this.settings.baseUrl)}: ${missing.join(', ')} (${reasons}); the local run is complete`;
  }

  private spawn(start: WorkerStart): Worker {
    const env: Record<string, string> = {};
    for (const [key, value] of Object.entries(this.env)) {
      // WANDB_WORKER=true makes the SDK require() a worker of its own, which fails under ESM.
      if (value !== undefined && key !== 'WANDB_WORKER') env[key] = value;
    }
    const worker = new Worker(this.options.workerUrl, { workerData: start, env, stdout: true, stderr: true });
    // The worker's console is silenced; what still comes out is dropped here, never printed.
    worker.stdout.resume();
    worker.stderr.resume();
    // Never what keeps the process alive: every wait below has a timer of its own.
    worker.unref();
    worker.on('message', (message: FromWorker) => {
      this.report = message.type === 'started' ? this.report : message.report;
      if (message.type !== 'status') this.waiter?.(message);
    });
    worker.on('error', (error) => {
      this.lost ??= this.reason(error);
      this.waiter?.({ type: 'gone', reason: this.lost });
    });
    worker.on('exit', () => {
      this.lost ??= 'it exited';
      this.worker = null;
      this.waiter?.({ type: 'gone', reason: this.lost });
    });
    return worker;
  }

  private post(message: ToWorker): void {
    this.worker?.postMessage(message);
  }

  /** The worker's next answer (not a status), or a timeout. */
  private next(ms: number): Promise<WorkerEvent> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => done({ type: 'timeout' }), ms);
      const done = (event: WorkerEvent) => {
        clearTimeout(timer);
        this.waiter = null;
        resolve(event);
      };
      this.waiter = done;
    });
  }

  private async stop(): Promise<void> {
    const worker = this.worker;
    this.worker = null;
    this.waiter = null;
    if (worker) {
      worker.removeAllListeners('exit');
      await worker.terminate();
    }
  }

  /** The one warning line of a run: what was not uploaded. Later problems are not repeated. */
  private warn(text: string): void {
    if (this.warned) return;
    this.warned = true;
    this.record.problem = this.redact(text);
    this.log(`warning: W&B: ${this.record.problem}`);
  }

  private reason(error: unknown): string {
    return this.redact(
      (error instanceof Error ? error.message : String(error)).split('\n')[0]!.slice(0, 200),
    );
  }

  /** Belt and braces: no text from the SDK or a server reaches a log with the key in it. */
  private redact(text: string): string {
    const key = this.settings.apiKey;
    if (!key) return text;
    const basic = Buffer.from(`api:${key}`).toString('base64');
    return text.split(key).join('***').split(basic).join('***');
  }
}

function hostOf(baseUrl: string): string {
  try {
    return new URL(baseUrl).host;
  } catch {
    return baseUrl;
  }
}

/** The run's configuration as W&B gets it: a download URL loses credentials and query (tokens). */
export function trackedConfig(config: RunConfig): Record<string, unknown> {
  const tracked: Record<string, unknown> = { ...config };
  if (config.downloadUrl) {
    try {
      const url = new URL(config.downloadUrl);
      tracked.downloadUrl = `${url.origin}${url.pathname}`;
    } catch {
      delete tracked.downloadUrl;
    }
  }
  return tracked;
}
