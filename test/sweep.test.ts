// Sweeps and run comparison as a user runs them: a grid sweep trains its trials as runs of one
// experiment, names the best, writes comparison.png; a rerun skips finished trials; a failing trial
// does not stop the others; random search is seeded; `runs` compares any experiment.
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCli, tempFolder } from './helpers/cli.js';
import { makeFolder } from './helpers/images.js';

const PNG_MAGIC = Buffer.from([0x89, 0x50, 0x4e, 0x47]);

interface SweepSummary {
  trials: Array<{ name: string; status: string; metric: number | null; params: Record<string, unknown> }>;
  best: string | null;
}

describe('image-classifier-trainer sweep', () => {
  const cwd = tempFolder();
  const experiments = join(cwd, 'experiments');
  const gridFile = join(cwd, 'grid.yaml');
  const sweepArgs = ['sweep', gridFile, '--dataset', 'synthetic', '--epochs', '1', '--parallel', '2'];
  let first: Awaited<ReturnType<typeof runCli>>;

  beforeAll(async () => {
    await writeFile(
      gridFile,
      [
        'name: grid',
        'method: grid',
        'metric: {name: validation_accuracy, goal: maximize}',
        'parameters:',
        '  learning_rate: {values: [0.02, 0.05]}',
        '  batch_size: {values: [32, 64]}',
        '  model: {value: net}',
        // W&B files name their program; it is ignored here.
        'program: train.py',
      ].join('\n'),
    );
    first = await runCli(sweepArgs, { cwd });
  });

  it('trains a 4-trial grid as runs of one experiment, names the best and writes the comparison', () => {
    expect(first.code, first.stderr).toBe(0);
    const summary = JSON.parse(readFileSync(join(experiments, 'grid', 'sweep.json'), 'utf8')) as SweepSummary;
    expect(summary.trials.map((t) => [t.name, t.status])).toEqual([
      ['trial-01', 'completed'],
      ['trial-02', 'completed'],
      ['trial-03', 'completed'],
      ['trial-04', 'completed'],
    ]);
    expect(summary.trials.map((t) => [t.params.learningRate, t.params.batchSize])).toEqual([
      [0.02, 32],
      [0.02, 64],
      [0.05, 32],
      [0.05, 64],
    ]);
    const best = summary.trials.reduce((a, b) => (b.metric! > a.metric! ? b : a));
    expect(summary.best).toBe(best.name);
    expect(first.stdout).toMatch(new RegExp(`best trial: ${best.name} \\(--learning-rate`));
    // The table shows the keys that differ, not the ones all trials share.
    expect(first.stdout).toMatch(/run\s+status\s+batchSize\s+learningRate\s+test acc/);
    expect(first.stdout).not.toMatch(/\bmodel\b.*test acc/);
    const png = readFileSync(join(experiments, 'grid', 'comparison.png'));
    expect(png.subarray(0, 4).equals(PNG_MAGIC)).toBe(true);
    // Two trials at a time on a 2-core machine: one thread each.
    const manifest = JSON.parse(readFileSync(join(experiments, 'grid', 'trial-01', 'run.json'), 'utf8')) as {
      backend: { threads: number };
    };
    expect(manifest.backend.threads).toBe(1);
  });

  it('skips finished trials when the same sweep runs again', async () => {
    const again = await runCli(sweepArgs, { cwd });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout.match(/already finished, skipped/g)).toHaveLength(4);
    expect(again.stdout).not.toMatch(/: training$/m);
  });

  it('--no-train summarises the trials there and names the missing ones (the CI job after the matrix)', async () => {
    const other = join(cwd, 'other-experiments');
    const r = await runCli([...sweepArgs, '--no-train', '--experiments-folder', other], { cwd });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/missing: trial-01, trial-02, trial-03, trial-04/);
    expect(r.stdout).toMatch(/no trial finished/);
  });

  it('runs <experiment> prints the table, or JSON', async () => {
    const table = await runCli(['runs', 'grid', '--no-chart'], { cwd });
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout.match(/^trial-0\d/gm)).toHaveLength(4);
    const json = await runCli(['runs', 'grid', '--json'], { cwd });
    const parsed = JSON.parse(json.stdout) as { differingKeys: string[]; rows: unknown[]; best: string };
    expect(parsed.differingKeys).toEqual(['batchSize', 'learningRate']);
    expect(parsed.rows).toHaveLength(4);
    expect(parsed.best).toMatch(/^trial-0\d$/);
    const missing = await runCli(['runs', 'nothing'], { cwd });
    expect(missing.code).toBe(2);
  });
});

describe('sweep with a failing trial', () => {
  it('reports the failure, finishes the other trials and exits 1', async () => {
    const cwd = tempFolder();
    const images = join(cwd, 'images');
    await makeFolder(images, 8);
    const file = join(cwd, 'folders.yaml');
    await writeFile(
      file,
      JSON.stringify({
        method: 'grid',
        parameters: {
          dataset: { value: 'image-folder' },
          dataset_folder: { values: [images, join(cwd, 'no-such-folder')] },
        },
      }),
    );
    const r = await runCli(['sweep', file, '--model', 'net', '--epochs', '1', '--batch-size', '16'], { cwd });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout).toMatch(/trial-01: done/);
    expect(r.stdout).toMatch(/trial-02: failed after [\d.]+ s: .*no-such-folder/);
    expect(r.stdout).toMatch(/best trial: trial-01/);
    expect(r.stdout).toMatch(/failed: trial-02 \(/);
  });
});

describe('sweep files', () => {
  const cwd = tempFolder();

  it('random search is seeded: the same file gives the same trials, as a CI matrix', async () => {
    const file = join(cwd, 'random.yaml');
    const write = (seed: number) =>
      writeFile(
        file,
        [
          'method: random',
          'run_cap: 3',
          `seed: ${seed}`,
          'parameters:',
          '  learning_rate: {distribution: log_uniform_values, min: 0.001, max: 0.1}',
          '  momentum: {distribution: uniform, min: 0.8, max: 0.95}',
          '  batch_size: {values: [32, 64, 128]}',
        ].join('\n'),
      );
    await write(0);
    const a = await runCli(['sweep', file, '--matrix'], { cwd });
    const b = await runCli(['sweep', file, '--matrix'], { cwd });
    expect(a.code, a.stderr).toBe(0);
    expect(a.stdout).toBe(b.stdout);
    const matrix = JSON.parse(a.stdout) as {
      include: Array<{ trial: string; experiment: string; params: string }>;
    };
    expect(matrix.include.map((t) => t.trial)).toEqual(['trial-01', 'trial-02', 'trial-03']);
    // Named after the file when the sweep has no name.
    expect(new Set(matrix.include.map((t) => t.experiment))).toEqual(new Set(['random']));
    for (const t of matrix.include) {
      const lr = Number(/--learning-rate ([\d.e-]+)/.exec(t.params)![1]);
      expect(lr).toBeGreaterThanOrEqual(0.001);
      expect(lr).toBeLessThanOrEqual(0.1);
    }
    await write(1);
    const c = await runCli(['sweep', file, '--matrix'], { cwd });
    expect(c.stdout).not.toBe(a.stdout);
  });

  it('refuses a bad sweep file in one line (exit 2) before training anything', async () => {
    const cases: Array<[string, RegExp]> = [
      [
        'method: grid\nparameters:\n  learning_rate: {distribution: uniform, min: 0, max: 1}',
        /grid search needs values for learningRate/,
      ],
      ['method: random\nparameters:\n  epochs: {values: [1]}', /random search needs run_cap/],
      [
        'method: grid\nparameters:\n  learning_rate: {values: [-1]}',
        /trial-01 \(--learning-rate -1\): --learning-rate must be > 0/,
      ],
      ['method: grid\nparameters:\n  no_such_flag: {values: [1]}', /unknown option/],
      ['method: sideways\nparameters: {}', /method/],
    ];
    for (const [text, message] of cases) {
      const file = join(cwd, 'bad.yaml');
      await writeFile(file, text);
      const r = await runCli(['sweep', file], { cwd });
      expect(r.code, text).toBe(2);
      expect(r.stderr.trim().split('\n'), text).toHaveLength(1);
      expect(r.stderr, text).toMatch(message);
    }
  });
});

describe('.github/workflows/sweep.yml', () => {
  it('passes the sweep command only options it has', async () => {
    const help = await runCli(['sweep', '--help']);
    const known = new Set([...help.stdout.matchAll(/--([a-z][a-z0-9-]*)/g)].map((m) => m[1]));
    const workflow = readFileSync(new URL('../.github/workflows/sweep.yml', import.meta.url), 'utf8');
    // The trainer's arguments: the `sweep ...` command lines and the args arrays built for it.
    const lines = workflow.split('\n').filter((l) => /main\.js sweep|args\+?=\(/.test(l));
    expect(lines.length).toBeGreaterThanOrEqual(3);
    const used = lines.flatMap((l) => [...l.matchAll(/(?:^|[\s(])--([a-z][a-z0-9-]*)/g)].map((m) => m[1]!));
    expect(used).toEqual(expect.arrayContaining(['matrix', 'trial', 'no-train', 'experiment-name']));
    for (const flag of used) {
      // --no-x is yargs' negation of --x.
      expect(known.has(flag) || known.has(flag.replace(/^no-/, '')), `--${flag}`).toBe(true);
    }
  });
});
