// run.json: everything needed to know what a run was and to rerun it.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { createRequire } from 'node:module';
import { arch, cpus, platform, release, totalmem } from 'node:os';
import { isAbsolute } from 'node:path';
import { simpleGit } from 'simple-git';
import * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import type { RunConfig } from '../config.js';
import type { BackendInfo } from '../backends/select.js';
import { redactConfig } from '../util/redact.js';
import { ManifestError, PROGRAM } from '../errors.js';

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
  /** testAccuracy and testLoss are null when the data had no test images (nothing was measured). */
  results: {
    testAccuracy: number | null;
    testLoss: number | null;
    validationAccuracy: number;
    validationLoss: number;
    /**
     * Which epochs: the best by --early-stopping-metric, the one whose weights are the model (the best
     * with --save-best, else the last), the last trained, and whether early stopping ended training.
     * Absent in runs written before they were recorded.
     */
    epochs?: { best: number | null; model: number; last: number; stoppedEarly: boolean };
  };
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
  /**
   * sha256 of this manifest's content (every other field, as canonical JSON): `verify` notices an edited
   * run.json. A checksum, not a signature: it catches accidents and careless edits, not a forger.
   * Absent in runs written before.
   */
  manifestSha256?: string;
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

/** The command that reruns `config`; a download URL loses its credentials (they are never stored). */
export function rerunCommand(config: RunConfig, flag: (key: string) => string): string {
  return [PROGRAM, ...configArgs(redactConfig(config), flag).map(shellWord)].join(' ');
}

// ---------------------------------------------------------------------------------------------
// Reading run.json back without trusting it: its shape is checked before any field is used.

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'must be a sha256 (64 hex digits)');
/** A file the run wrote: a relative path inside the run folder. */
const runFile = z
  .string()
  .min(1)
  .refine(
    (p) => !isAbsolute(p) && !p.split(/[\\/]/).includes('..') && !p.includes('\0'),
    'must be a path inside the run folder',
  );
const positiveInt = z.number().int().positive();

/**
 * The fields of run.json that the commands read, checked; other fields pass through (runs written by
 * newer versions may have more).
 */
export const manifestSchema = z.looseObject({
  schemaVersion: z.literal(1),
  experiment: z.string().min(1),
  run: z.string().min(1),
  status: z.literal('completed'),
  command: z.string(),
  config: z.looseObject({
    experimentName: z.string().min(1),
    runName: z.string().min(1),
    model: z.string().min(1),
    dataset: z.string().min(1),
  }),
  seed: z.number(),
  git: z.looseObject({ commit: z.string().nullable(), dirty: z.boolean() }).nullable(),
  versions: z.looseObject({ node: z.string(), package: z.string(), tfjs: z.string() }),
  backend: z.looseObject({ name: z.string(), device: z.string(), threads: z.number(), package: z.string() }),
  system: z.looseObject({ os: z.string(), arch: z.string(), cpu: z.string() }),
  dataset: z.looseObject({
    kind: z.string(),
    source: z.string(),
    classNames: z.array(z.string()).min(2).max(256),
    checksums: z.record(z.string(), z.string()),
  }),
  preprocessing: z.looseObject({
    inputShape: z.tuple([positiveInt.max(4096), positiveInt.max(4096), z.literal(3)]),
    scale: z.number(),
    mean: z.array(z.number()).length(3),
    std: z.array(z.number().positive()).length(3),
    output: z.literal('logits'),
  }),
  pretrained: z
    .looseObject({ path: z.string(), run: z.string().nullable(), weightsSha256: z.string() })
    .nullable(),
  resumes: z.array(z.looseObject({ at: z.string(), epoch: z.number(), step: z.number() })),
  reproductionOf: z.string().nullable(),
  results: z.looseObject({
    // null: the data had no test images (nothing was measured).
    testAccuracy: z.number().nullable(),
    testLoss: z.number().nullable(),
    validationAccuracy: z.number(),
    validationLoss: z.number(),
  }),
  timing: z.looseObject({ trainSeconds: z.number(), imagesPerSecond: z.number() }),
  files: z.record(runFile, sha256Hex),
  tracking: z.looseObject({}).nullable().optional(),
  manifestSha256: sha256Hex.optional(),
});

/** Checks parsed run.json content; `file` names it in the error. */
export function parseManifest(data: unknown, file: string): Manifest {
  const result = manifestSchema.safeParse(data, { reportInput: true });
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const where = issue.path.length > 0 ? issue.path.map(String).join('.') : null;
    const message = issue.input === undefined ? 'missing' : issue.message;
    const what =
      data === null || typeof data !== 'object' || Array.isArray(data)
        ? `holds ${data === null ? 'null' : Array.isArray(data) ? 'an array' : typeof data}, not a run manifest`
        : where
          ? `is not a run manifest: ${where}: ${message}`
          : `is not a run manifest: ${message}`;
    throw new ManifestError(`${file} ${what}`);
  }
  // The schema checks what is read; the rest of the type is the writer's promise.
  return result.data as unknown as Manifest;
}

/** JSON with object keys sorted at every level: the same text for the same content, however it was formatted. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value))
    return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** The checksum run.json records of itself: sha256 of its content without `manifestSha256`. */
export function manifestChecksum(manifest: object): string {
  const { manifestSha256: _, ...content } = manifest as Record<string, unknown>;
  return createHash('sha256').update(canonicalJson(content)).digest('hex');
}

/**
 * run.json's text: the manifest with its download URL (config and command) redacted and its own
 * checksum added. Everything that writes a run.json writes this.
 */
export function manifestText(manifest: Manifest): string {
  const stored: Manifest = { ...manifest, config: redactConfig(manifest.config) };
  return JSON.stringify({ ...stored, manifestSha256: manifestChecksum(stored) }, null, 2);
}
