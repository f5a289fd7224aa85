// run.json: everything needed to know what a run was and to rerun it.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { createRequire } from 'node:module';
import { arch, cpus, platform, release, totalmem } from 'node:os';
import { simpleGit } from 'simple-git';
import * as tf from '@tensorflow/tfjs';
import type { RunConfig } from '../config.js';
import type { BackendInfo } from '../backends/select.js';

export const MANIFEST_FILE = 'run.json';

export interface GitState {
  commit: string | null;
  branch: string | null;
  dirty: boolean;
}

export interface Manifest {
  schemaVersion: 1;
  experiment: string;
  run: string;
  status: 'completed';
  /** The command that reruns it (with the resolved configuration). */
  command: string;
  config: RunConfig;
  seed: number;
  git: GitState | null;
  versions: { node: string; package: string; tfjs: string };
  backend: BackendInfo;
  system: { os: string; arch: string; cpu: string; cores: number; memoryGiB: number };
  dataset: {
    kind: string;
    source: string;
    classNames: string[];
    trainImages: number;
    validationImages: number;
    testImages: number;
    checksums: Record<string, string>;
  };
  preprocessing: {
    inputShape: [number, number, number];
    scale: number;
    mean: number[];
    std: number[];
    output: 'logits';
  };
  /** The run whose weights this one started from (`--pretrained-model`): its lineage. */
  pretrained: { path: string; run: string | null; weightsSha256: string } | null;
  /** Each time the run was resumed after an interruption: when, and from which epoch and step. */
  resumes: Array<{ at: string; epoch: number; step: number }>;
  /** The run this one reproduces (`image-classifier-trainer reproduce`), as `<experiment>/<run>`. */
  reproductionOf: string | null;
  results: { testAccuracy: number; testLoss: number; validationAccuracy: number; validationLoss: number };
  timing: {
    start: string;
    end: string;
    durationSeconds: number;
    trainSeconds: number;
    imagesPerSecond: number;
  };
  /** sha256 of every file the run wrote (but this one), relative to the run folder. */
  files: Record<string, string>;
  /** Where the run was tracked (`--wandb`); null when it was not. Absent in runs written before. */
  tracking?: { wandb: WandbTracking } | null;
}

/** A run's Weights & Biases record: where it went, or why it went nowhere. Never holds the API key. */
export interface WandbTracking {
  /** The W&B run's page; null when nothing was uploaded (offline, disabled, no API key, or W&B unreachable). */
  url: string | null;
  project: string;
  /** The W&B user or team; null when the server was not asked (then it is the API key's default). */
  entity: string | null;
  /** From $WANDB_MODE. */
  mode: 'online' | 'offline' | 'disabled';
  /** What was not uploaded (the warning the run logged); null when everything was. */
  problem: string | null;
}

const require = createRequire(import.meta.url);

export function packageVersion(): string {
  // dist/runs/manifest.js and src/runs/manifest.ts both sit two levels below the package root.
  const pkg = require('../../package.json') as { name: string; version: string };
  return `${pkg.name}@${pkg.version}`;
}

export function versions(): Manifest['versions'] {
  return { node: process.version, package: packageVersion(), tfjs: tf.version.tfjs };
}

export function systemInfo(): Manifest['system'] {
  const cpu = cpus()[0]?.model ?? 'unknown';
  return {
    os: `${platform()} ${release()}`,
    arch: arch(),
    cpu: cpu.trim(),
    cores: cpus().length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
  };
}

/** Commit, branch and dirty state of the git repository around `folder`, or null outside one. */
export async function gitState(folder: string): Promise<GitState | null> {
  try {
    const git = simpleGit(folder);
    if (!(await git.checkIsRepo())) return null;
    const status = await git.status();
    const commit = await git.revparse(['HEAD']).catch(() => null);
    return { commit: commit?.trim() ?? null, branch: status.current ?? null, dirty: !status.isClean() };
  } catch {
    return null;
  }
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Quotes a value for a POSIX shell only when needed. */
export function shellWord(value: string): string {
  return /^[A-Za-z0-9_./:=@,+-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}

/** The flags that set every value of `config` (booleans as --x / --no-x). */
export function configArgs(config: Partial<RunConfig>, flag: (key: string) => string): string[] {
  const words: string[] = [];
  for (const [key, value] of Object.entries(config)) {
    if (value === undefined) continue;
    if (typeof value === 'boolean') words.push(value ? `--${flag(key)}` : `--no-${flag(key)}`);
    else words.push(`--${flag(key)}`, String(value));
  }
  return words;
}

export function rerunCommand(config: RunConfig, flag: (key: string) => string): string {
  return ['image-classifier-trainer', ...configArgs(config, flag).map(shellWord)].join(' ');
}
