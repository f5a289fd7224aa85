// reproduce: retrain a run from its manifest into a new run and compare the two, bit for bit.
// Before training it checks the inputs (the data's checksums, the parent run's weights for a
// fine-tuned run) and refuses when they changed, unless told to go on. It also checks the run's own
// files against the sha256 in its run.json: an edited metrics.json is a difference of the user's
// making, not of the package. After training it compares the weights' hash, every metric, and the
// environment, and explains a difference.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

import type { Metrics } from '../runs/metrics.js';
import { train, type TrainOptions } from './train.js';
import { findRunFolder, loadRun, readManifest } from '../runs/load-run.js';
import { sha256File, type Manifest } from '../runs/manifest.js';
import { verifyRun } from '../runs/verify.js';
import { InputError } from '../errors.js';
import { partialName, RUN_FILES } from '../runs/layout.js';

export interface ReproduceOptions extends Pick<TrainOptions, 'log' | 'progress' | 'signal' | 'stopNow'> {
  /** Where runs live (default ./experiments); `run` may also be a path to a run folder. */
  experimentsFolder?: string;
  /** Name of the new run (default `<run>-repro-N`, the first N not taken). */
  runName?: string;
  /** Go on when the data or the parent run's weights no longer match the manifest. */
  allowDataChange?: boolean;
}

export interface ReproductionReport {
  /** `<experiment>/<run>` of the original and of the new run. */
  original: string;
  reproduction: string;
  /** Absolute path of the new run folder. */
  reproductionPath: string;
  /** Same weights (sha256) and the same value for every metric. */
  identical: boolean;
  weights: { original: string; reproduction: string };
  /** Metrics that differ, as readable lines. */
  metricDifferences: string[];
  /** Environment fields that differ ("field: original -> now"). */
  environmentDifferences: string[];
  /** Inputs that had changed and were used anyway (--allow-data-change). */
  inputChanges: string[];
  /**
   * The original run's files that no longer match the sha256 in its run.json ("metrics.json
   * changed", "model/weights.bin missing"): edited since the run was written.
   */
  changedFiles: string[];
  /** `<experiment>/<run>` of each ancestor (--pretrained-model), parent first. */
  lineage: string[];
  /** One line: bit-identical, or the most likely reason why not. */
  verdict: string;
}

const WEIGHTS = RUN_FILES.weights;

export async function reproduce(run: string, options: ReproduceOptions = {}): Promise<ReproductionReport> {
  // The run's own files first: a difference there is an edit, and the comparison below reads them.
  const check = await verifyRun(run, options.experimentsFolder);
  const changedFiles = check.files.filter((f) => f.status !== 'ok').map((f) => `${f.file} ${f.status}`);
  if (check.files.some((f) => f.file === RUN_FILES.metrics && f.status === 'missing')) {
    throw new InputError(
      `cannot reproduce ${run}: its metrics.json is missing (${changedFiles.join(', ')}), so there is nothing to compare with`,
    );
  }
  const original = await loadRun(check.path).catch((error: unknown) => {
    if (changedFiles.length === 0) throw error;
    throw new InputError(
      `cannot reproduce ${run}: its files changed since it was written (${changedFiles.join(', ')}) and cannot be read (${(error as Error).message.split('\n')[0]})`,
    );
  });
  const { manifest } = original;
  // The experiments folder that holds the run: pretrained paths are relative to it.
  const experimentsFolder = dirname(dirname(original.path));
  const name = `${manifest.experiment}/${manifest.run}`;
  const inputChanges: string[] = [];
  const refuse = (what: string): void => {
    if (!options.allowDataChange) {
      throw new InputError(
        `cannot reproduce ${name}: ${what}; pass --allow-data-change to reproduce it anyway`,
      );
    }
    inputChanges.push(what);
  };

  if (changedFiles.length > 0) {
    options.log?.(
      `warning: ${name}'s files changed since it was written (${changedFiles.join(', ')}); the comparison is with what is there now`,
    );
  }

  const lineage = await followLineage(manifest, experimentsFolder);
  if (manifest.pretrained?.run) {
    const parentWeights = join(experimentsFolder, manifest.pretrained.run, WEIGHTS);
    if (!existsSync(parentWeights)) {
      throw new InputError(`cannot reproduce ${name}: its parent run ${manifest.pretrained.run} is gone`);
    }
    if ((await sha256File(parentWeights)) !== manifest.pretrained.weightsSha256) {
      refuse(`the weights of its parent run ${manifest.pretrained.run} changed since it was trained`);
    }
  }

  const runName = options.runName ?? nextReproName(experimentsFolder, manifest);
  const result = await train(
    { ...manifest.config, runName, experimentsFolder },
    {
      log: options.log,
      progress: options.progress,
      signal: options.signal,
      stopNow: options.stopNow,
      reproductionOf: name,
      checkData: (now) => {
        const recorded = manifest.dataset.checksums;
        const changed = Object.keys({ ...recorded, ...now }).filter((k) => recorded[k] !== now[k]);
        if (changed.length > 0) {
          refuse(
            `the data changed since it was trained (${changed
              .map((k) => `${k}: ${short(recorded[k])} -> ${short(now[k])}`)
              .join(', ')})`,
          );
        }
      },
    },
  );

  const weights = {
    original: manifest.files[WEIGHTS] ?? '',
    reproduction: result.manifest.files[WEIGHTS] ?? '',
  };
  const metricDifferences = compareMetrics(original.metrics, result.metrics);
  const environmentDifferences = compareEnvironment(manifest, result.manifest);
  const identical = weights.original === weights.reproduction && metricDifferences.length === 0;
  return {
    original: name,
    reproduction: `${manifest.experiment}/${runName}`,
    reproductionPath: result.runPath,
    identical,
    weights,
    metricDifferences,
    environmentDifferences,
    inputChanges,
    changedFiles,
    lineage,
    verdict: verdict(
      identical,
      inputChanges,
      changedFiles,
      environmentDifferences,
      manifest,
      result.manifest,
    ),
  };
}

function short(hash: string | undefined): string {
  return hash === undefined ? 'none' : hash.slice(0, 12);
}

function nextReproName(experimentsFolder: string, manifest: Manifest): string {
  for (let n = 1; ; n++) {
    const candidate = `${manifest.run}-repro-${n}`;
    const folder = join(experimentsFolder, manifest.experiment);
    if (!existsSync(join(folder, candidate)) && !existsSync(join(folder, partialName(candidate))))
      return candidate;
  }
}

/** The chain of --pretrained-model parents, as far as their manifests can be read. */
async function followLineage(manifest: Manifest, experimentsFolder: string): Promise<string[]> {
  const chain: string[] = [];
  let current: Manifest | undefined = manifest;
  while (current?.pretrained?.run && chain.length < 100 && !chain.includes(current.pretrained.run)) {
    chain.push(current.pretrained.run);
    try {
      current = await readManifest(findRunFolder(current.pretrained.run, experimentsFolder));
    } catch {
      current = undefined;
    }
  }
  return chain;
}

/** Every metric that training computed (not timings), compared exactly. */
function compareMetrics(a: Metrics, b: Metrics): string[] {
  const out: string[] = [];
  const fields = [
    'trainLoss',
    'trainAccuracy',
    'validationLoss',
    'validationAccuracy',
    'learningRate',
  ] as const;
  if (a.history.length !== b.history.length) {
    out.push(`epochs: ${a.history.length} -> ${b.history.length}`);
  }
  a.history.forEach((ha, i) => {
    const hb = b.history[i];
    if (!hb) return;
    for (const f of fields) if (ha[f] !== hb[f]) out.push(`epoch ${ha.epoch} ${f}: ${ha[f]} -> ${hb[f]}`);
  });
  // No test images: NaN in memory, null read back from metrics.json; the same "no result".
  const same = (x: number | null, y: number | null) => Object.is(x ?? NaN, y ?? NaN);
  if (!same(a.test.accuracy, b.test.accuracy))
    out.push(`test accuracy: ${a.test.accuracy} -> ${b.test.accuracy}`);
  if (!same(a.test.loss, b.test.loss)) out.push(`test loss: ${a.test.loss} -> ${b.test.loss}`);
  if (JSON.stringify(a.test.perClassAccuracy) !== JSON.stringify(b.test.perClassAccuracy)) {
    out.push('test per-class accuracy differs');
  }
  if (JSON.stringify(a.test.confusion) !== JSON.stringify(b.test.confusion))
    out.push('test confusion matrix differs');
  return out;
}

/** The environment fields that can change a run's bits (and the commit of the code). */
function environment(m: Manifest): Record<string, string> {
  return {
    node: m.versions.node,
    package: m.versions.package,
    tfjs: m.versions.tfjs,
    backend: m.backend.name,
    'backend package': m.backend.package,
    device: m.backend.device,
    threads: String(m.backend.threads),
    os: m.system.os,
    arch: m.system.arch,
    cpu: m.system.cpu,
    'git commit': m.git?.commit ?? 'none',
    'uncommitted changes': String(m.git?.dirty ?? false),
  };
}

function compareEnvironment(a: Manifest, b: Manifest): string[] {
  const ea = environment(a);
  const eb = environment(b);
  return Object.keys(ea)
    .filter((k) => ea[k] !== eb[k])
    .map((k) => `${k}: ${ea[k]} -> ${eb[k]}`);
}

function verdict(
  identical: boolean,
  inputChanges: string[],
  changedFiles: string[],
  envDiffs: string[],
  a: Manifest,
  b: Manifest,
): string {
  const edited = `the original run's files changed since it was written (${changedFiles.join(', ')}; see \`verify ${a.experiment}/${a.run}\`)`;
  if (identical) {
    const note = changedFiles.length > 0 ? `; note: ${edited}` : '';
    return `bit-identical: same weights and the same metrics${note}`;
  }
  if (changedFiles.length > 0) return `not identical: ${edited}`;
  if (inputChanges.length > 0) return `not identical: ${inputChanges[0]}`;
  const codeChanged =
    a.git?.commit !== b.git?.commit ||
    a.git?.dirty === true ||
    b.git?.dirty === true ||
    a.versions.package !== b.versions.package;
  if (codeChanged) {
    const from = a.git?.commit?.slice(0, 10) ?? 'unknown';
    const to = b.git?.commit?.slice(0, 10) ?? 'unknown';
    const dirty = a.git?.dirty || b.git?.dirty ? ' (with uncommitted changes)' : '';
    return `not identical: the code changed since the recorded commit (${from} -> ${to}${dirty})`;
  }
  // Thread counts do not change our results (the kernels split work deterministically).
  const relevant = envDiffs.filter((d) => !d.startsWith('threads:'));
  if (relevant.length > 0) return `not identical: the environment differs (${relevant.join('; ')})`;
  return 'not identical in the same environment: this is a bug, please report it with both run folders';
}
