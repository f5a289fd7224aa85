// Comparing the runs of an experiment: one row per run (finished or interrupted), the configuration
// keys on which they differ, results, timing; and comparison.png in the experiment folder.
import { existsSync, readdirSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { type RunConfig, DEFAULT_EXPERIMENTS_FOLDER } from '../config.js';
import { renderComparison } from '../reports/charts.js';
import type { Metrics } from './metrics.js';
import { hasCheckpoint, loadCheckpoint } from './checkpoint.js';
import { loadRun } from './load-run.js';
import { InputError } from '../errors.js';
import { COMPARISON_FILE, partialRunName, RUN_FILES } from './layout.js';
import { percent, plural } from '../reports/format.js';

export interface RunRow {
  run: string;
  status: 'completed' | 'interrupted';
  /** The values of the configuration keys that differ between the runs compared. */
  differences: Record<string, unknown>;
  config: RunConfig;
  testAccuracy: number | null;
  validationAccuracy: number | null;
  epochs: number;
  trainSeconds: number;
  imagesPerSecond: number | null;
  backend: string | null;
  history: Metrics['history'];
}

export interface Comparison {
  experiment: string;
  /** Absolute path of the experiment folder. */
  path: string;
  /** Configuration keys whose values differ between runs. */
  differingKeys: string[];
  rows: RunRow[];
  /** The completed run with the best validation accuracy (ties: the earlier name). */
  best: string | null;
  /** comparison.png, when written. */
  chart: string | null;
}

/** Keys that differ between every pair of runs by nature. */
const NAME_KEYS = new Set<string>(['runName']);

/** The configuration keys whose values differ between runs (the run's name aside), sorted. */
export function differingKeys(configs: RunConfig[]): string[] {
  const keys = [...new Set(configs.flatMap((c) => Object.keys(c)))].sort();
  return keys.filter(
    (k) =>
      !NAME_KEYS.has(k) &&
      new Set(configs.map((c) => JSON.stringify((c as Record<string, unknown>)[k]))).size > 1,
  );
}

async function readRow(folder: string, name: string): Promise<RunRow | null> {
  const runFolder = join(folder, name);
  if (existsSync(join(runFolder, RUN_FILES.manifest))) {
    const { manifest, metrics } = await loadRun(runFolder);
    return {
      run: name,
      status: 'completed',
      differences: {},
      config: manifest.config,
      testAccuracy: manifest.results.testAccuracy,
      validationAccuracy: manifest.results.validationAccuracy,
      epochs: metrics.history.length,
      trainSeconds: manifest.timing.trainSeconds,
      imagesPerSecond: manifest.timing.imagesPerSecond,
      backend: `${manifest.backend.name} (${plural(manifest.backend.threads, 'thread')})`,
      history: metrics.history,
    };
  }
  const partial = partialRunName(name);
  if (partial !== null && hasCheckpoint(runFolder)) {
    const checkpoint = await loadCheckpoint(runFolder);
    const history = checkpoint.state.history;
    const last = history[history.length - 1];
    return {
      run: partial,
      status: 'interrupted',
      differences: {},
      config: checkpoint.config,
      testAccuracy: null,
      validationAccuracy: last?.validationAccuracy ?? null,
      epochs: history.length,
      trainSeconds: history.reduce((s, h) => s + h.seconds, 0),
      imagesPerSecond: null,
      backend: null,
      history,
    };
  }
  return null;
}

/**
 * Reads every run of `experiment` (finished, and interrupted ones waiting for --resume), finds the
 * configuration keys on which they differ and the best run, and writes comparison.png (unless
 * `writeChart` is false).
 */
export async function compareRuns(
  experiment: string,
  options: { experimentsFolder?: string; writeChart?: boolean } = {},
): Promise<Comparison> {
  const folder = options.experimentsFolder ?? DEFAULT_EXPERIMENTS_FOLDER;
  const path = resolve(folder, experiment);
  // One folder inside the experiments folder: `../x` or `/tmp` would read, and write comparison.png, elsewhere.
  if (dirname(path) !== resolve(folder) || experiment.includes('/') || experiment.includes('\\')) {
    throw new InputError(
      `${experiment}: not an experiment name (one folder inside ${folder}, without "/" or "..")`,
    );
  }
  if (!existsSync(path)) throw new InputError(`no experiment ${experiment} in ${folder}`);
  const rows: RunRow[] = [];
  for (const name of readdirSync(path).sort()) {
    const row = await readRow(path, name);
    if (row) rows.push(row);
  }
  const differing = differingKeys(rows.map((r) => r.config));
  for (const row of rows) {
    row.differences = Object.fromEntries(
      differing.map((k) => [k, (row.config as Record<string, unknown>)[k]]),
    );
  }
  let best: RunRow | null = null;
  for (const row of rows) {
    if (row.status !== 'completed' || row.validationAccuracy === null) continue;
    if (best === null || row.validationAccuracy > best.validationAccuracy!) best = row;
  }
  let chart: string | null = null;
  if (options.writeChart !== false && rows.length > 0) {
    chart = join(path, COMPARISON_FILE);
    const png = renderComparison(
      experiment,
      rows.map((r) => ({ name: r.run, testAccuracy: r.testAccuracy, history: r.history })),
      best?.run ?? null,
    );
    // Written whole and renamed: a reader never sees half a PNG.
    await writeFile(`${chart}.tmp`, png);
    await rename(`${chart}.tmp`, chart);
  }
  return { experiment, path, differingKeys: differing, rows, best: best?.run ?? null, chart };
}

function shortValue(v: unknown): string {
  if (v === undefined) return '-';
  // Four significant digits: a learning rate drawn by a random sweep has seventeen.
  if (typeof v === 'number') return String(Number(v.toPrecision(4)));
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/**
 * The comparison as an aligned text table (the best run marked with *). The configured epochs are in
 * the epochs column (done/configured for an interrupted run), not in a column of their own.
 */
export function comparisonTable(c: Comparison): string {
  const keys = c.differingKeys.filter((k) => k !== 'epochs');
  const header = ['run', 'status', ...keys, 'test acc', 'val acc', 'epochs', 'train s', 'img/s', 'backend'];
  const lines = c.rows.map((r) => [
    r.run === c.best ? `${r.run} *` : r.run,
    r.status,
    ...keys.map((k) => shortValue(r.differences[k])),
    percent(r.testAccuracy),
    percent(r.validationAccuracy),
    r.epochs === r.config.epochs ? String(r.epochs) : `${r.epochs}/${r.config.epochs}`,
    r.trainSeconds.toFixed(1),
    r.imagesPerSecond === null ? '-' : String(Math.round(r.imagesPerSecond)),
    r.backend ?? '-',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (cells: string[]) =>
    cells
      .map((cell, i) => cell.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [fmt(header), fmt(widths.map((w) => '-'.repeat(w))), ...lines.map(fmt)].join('\n');
}
