// `predict` and `evaluate` through the CLI on a quick run: rows, formats, unreadable files, and the
// same predictions as evaluate and as the model itself gives on the same images.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, readdir, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backends/select.js';
import { decodeImage } from '../src/data/image-folder.js';
import { loadRun } from '../src/runs/load-run.js';
import type { EvaluationFile } from '../src/training/evaluate-run.js';
import { runCli } from './helpers/cli.js';
import { makeFolder } from './helpers/images.js';
import { noisePng, ourLines, quickRun, solidImage, type QuickRun } from './helpers/use.js';

interface JsonRow {
  file: string;
  label: string;
  probability: number;
  top: Array<{ label: string; probability: number }>;
  probabilities: Record<string, number>;
}

function jsonRows(stdout: string): JsonRow[] {
  return stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as JsonRow);
}

/** Skips probing the GPU backends: a second or so per call on a busy machine. */
const WASM = ['--backend', 'wasm'];

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

describe('predict and evaluate', () => {
  let fx: QuickRun;
  /** A separate folder of new images, <class>/*, to predict and evaluate on. */
  let fresh: string;
  beforeAll(async () => {
    fx = await quickRun();
    fresh = join(fx.cwd, 'fresh');
    await makeFolder(fresh, 4);
    // Other formats and sizes than training's JPEGs: predict reads whatever sharp reads.
    await writeFile(join(fresh, 'red', 'extra.png'), await solidImage([230, 20, 20], 'png', 64));
    await writeFile(join(fresh, 'green', 'extra.webp'), await solidImage([20, 210, 30], 'webp', 17));
    await writeFile(join(fresh, 'blue', 'extra.gif'), await solidImage([30, 30, 240], 'gif', 40));
    await writeFile(join(fresh, 'notes.txt'), 'not an image: skipped by extension');
  });

  it('--json: one row per image, probabilities summing to 1, the label their argmax', async () => {
    const single = join(fx.images, 'red', '0.jpg');
    const { code, stdout, stderr } = await runCli(
      ['predict', fx.run, fresh, single, '--json', '--top-k', '2'],
      {
        cwd: fx.cwd,
      },
    );
    expect(code, stderr).toBe(0);
    const rows = jsonRows(stdout);
    expect(rows).toHaveLength(15 + 1);
    expect(rows.at(-1)!.file).toBe(single);
    // Folders are walked in name order: blue/, green/, red/.
    expect(rows[0]!.file).toBe(join(fresh, 'blue', '0.jpg'));
    for (const row of rows) {
      const probabilities = Object.values(row.probabilities);
      expect(Object.keys(row.probabilities).sort()).toEqual(['blue', 'green', 'red']);
      expect(sum(probabilities)).toBeCloseTo(1, 6);
      const best = Object.entries(row.probabilities).sort((a, b) => b[1] - a[1])[0]!;
      expect(row.label).toBe(best[0]);
      expect(row.probability).toBe(best[1]);
      expect(row.top).toHaveLength(2);
      expect(row.top[0]).toEqual({ label: row.label, probability: row.probability });
      expect(row.top[0]!.probability).toBeGreaterThanOrEqual(row.top[1]!.probability);
    }
    // A model trained on these colours gets most of them right.
    const right = rows.filter((r) => r.file.split('/').at(-2) === r.label).length;
    expect(right / rows.length).toBeGreaterThan(0.6);
  });

  it('--csv and the default table: a header, then one row per image', async () => {
    const csv = await runCli(['predict', fx.run, join(fresh, 'red'), '--csv', ...WASM], { cwd: fx.cwd });
    expect(csv.code, csv.stderr).toBe(0);
    const [header, ...rows] = csv.stdout.trim().split('\n');
    expect(header).toBe('file,label_1,probability_1,label_2,probability_2,label_3,probability_3');
    expect(rows).toHaveLength(5);
    for (const row of rows) {
      const cells = row.split(',');
      const probabilities = [cells[2], cells[4], cells[6]].map(Number);
      expect(sum(probabilities)).toBeCloseTo(1, 4);
      expect(probabilities[0]).toBe(Math.max(...probabilities));
      expect(new Set([cells[1], cells[3], cells[5]])).toEqual(new Set(['blue', 'green', 'red']));
    }

    const table = await runCli(['predict', fx.run, join(fresh, 'green'), '--top-k', '1', ...WASM], {
      cwd: fx.cwd,
    });
    expect(table.code, table.stderr).toBe(0);
    const lines = table.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^file\s+prediction$/);
    expect(lines).toHaveLength(1 + 5);
    expect(lines[1]).toMatch(/green\/0\.jpg\s+(red|green|blue) \d+\.\d%$/);
  });

  it('names unreadable files on stderr, skips them and exits 1', async () => {
    const mixed = join(fx.cwd, 'mixed');
    await mkdir(mixed);
    await copyFile(join(fx.images, 'blue', '1.jpg'), join(mixed, 'good.jpg'));
    await writeFile(join(mixed, 'text.png'), 'this is text, not a PNG');
    const png = await noisePng();
    await writeFile(join(mixed, 'truncated.png'), png.subarray(0, Math.floor(png.length / 2)));
    const missing = join(fx.cwd, 'no-such-file.jpg');
    const { code, stdout, stderr } = await runCli(['predict', fx.run, mixed, missing, '--json', ...WASM], {
      cwd: fx.cwd,
    });
    expect(code).toBe(1);
    expect(jsonRows(stdout).map((r) => r.file)).toEqual([join(mixed, 'good.jpg')]);
    const lines = ourLines(stderr);
    expect(lines.some((l) => l.includes(`skipped ${join(mixed, 'text.png')}:`))).toBe(true);
    expect(lines.some((l) => l.includes(`skipped ${join(mixed, 'truncated.png')}:`))).toBe(true);
    expect(lines).toContain(`image-classifier-trainer: skipped ${missing}: no such file or folder`);
    expect(lines.at(-1)).toBe('image-classifier-trainer: 1 image predicted, 3 could not be read');
  });

  it('refuses a folder without images (exit 2) and bad flags', async () => {
    const empty = join(fx.cwd, 'empty');
    await mkdir(empty);
    const none = await runCli(['predict', fx.run, empty, ...WASM], { cwd: fx.cwd });
    expect(none.code).toBe(2);
    expect(ourLines(none.stderr)).toEqual([expect.stringMatching(/no image files in .*empty/)]);
    const both = await runCli(['predict', fx.run, empty, '--json', '--csv'], { cwd: fx.cwd });
    expect(both.code).toBe(2);
    const topK = await runCli(['predict', fx.run, fx.images, '--top-k', '0'], { cwd: fx.cwd });
    expect(topK.code).toBe(2);
    expect(ourLines(topK.stderr)).toEqual([
      'image-classifier-trainer: --top-k must be a positive integer (got 0)',
    ]);
  });

  it('predicts what evaluate counts, and what the model itself computes, on the same images', async () => {
    const evaluated = await runCli(
      ['evaluate', fx.run, '--dataset', 'image-folder', '--dataset-folder', fresh, '--json', ...WASM],
      { cwd: fx.cwd },
    );
    expect(evaluated.code, evaluated.stderr).toBe(0);
    const evaluation = JSON.parse(evaluated.stdout) as EvaluationFile & { dataset: { split: string } };
    // A folder other than the run's is evaluated whole.
    expect(evaluation.count).toBe(15);
    expect(evaluation.dataset.split).toBe('all');
    expect(evaluation.name).toBe('fresh');

    const predicted = await runCli(['predict', fx.run, fresh, '--json', ...WASM], { cwd: fx.cwd });
    expect(predicted.code, predicted.stderr).toBe(0);
    const rows = jsonRows(predicted.stdout);
    const classes = evaluation.classNames;
    const confusion = classes.map(() => classes.map(() => 0));
    for (const row of rows) {
      const truth = classes.indexOf(relative(fresh, row.file).split('/')[0]!);
      confusion[truth]![classes.indexOf(row.label)]!++;
    }
    expect(confusion).toEqual(evaluation.confusion);

    // The model run here by hand, with the normalisation written out: the same top-1 for every image.
    await selectBackend({ device: 'auto', backend: 'wasm' });
    const run = await loadRun(fx.run, fx.experiments);
    const { mean, std, inputShape } = run.manifest.preprocessing;
    const [h, w, c] = inputShape;
    const model = await run.loadLayersModel();
    try {
      for (const row of rows) {
        const pixels = await decodeImage(row.file, { height: h, width: w });
        const x = Float32Array.from(pixels, (v, i) => (v / 255 - mean[i % c]!) / std[i % c]!);
        const logits = tf.tidy(() => model.predict(tf.tensor4d(x, [1, h, w, c])) as tf.Tensor);
        const argmax = (await tf.argMax(logits, 1).data())[0]!;
        const probabilities = await tf.softmax(logits).data();
        logits.dispose();
        expect(row.label, row.file).toBe(classes[argmax]);
        expect(row.probability).toBeCloseTo(probabilities[argmax]!, 4);
      }
    } finally {
      model.dispose();
    }
  });

  it('evaluate writes evaluation-<name>.json and .png, refuses to overwrite, and leaves verify passing', async () => {
    const runPath = join(fx.experiments, 'colours', 'r1');
    const manifest = JSON.parse(readFileSync(join(runPath, 'run.json'), 'utf8')) as {
      files: Record<string, string>;
    };
    const before = Object.fromEntries(Object.keys(manifest.files).map((f) => [f, sha256(join(runPath, f))]));
    const runJson = sha256(join(runPath, 'run.json'));

    const first = await runCli(['evaluate', fx.run, ...WASM], { cwd: fx.cwd });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/^test: 6 images \(image-folder, test split of /);
    expect(first.stdout).toMatch(/accuracy \d+\.\d\d%/);
    expect(first.stdout).toContain('confusion matrix');
    expect(first.stdout).toContain(`wrote evaluation-test.json and evaluation-test.png in ${runPath}`);
    const saved = JSON.parse(readFileSync(join(runPath, 'evaluation-test.json'), 'utf8')) as EvaluationFile;
    const { metrics } = await loadRun(fx.run, fx.experiments);
    // The run's own test split: the numbers training wrote.
    expect(saved.accuracy).toBe(metrics.test.accuracy);
    expect(saved.confusion).toEqual(metrics.test.confusion);
    expect(saved.run).toBe('colours/r1');
    expect(saved.weightsSha256).toBe(manifest.files['model/weights.bin']);
    expect(readFileSync(join(runPath, 'evaluation-test.png')).subarray(1, 4).toString()).toBe('PNG');

    const again = await runCli(['evaluate', fx.run], { cwd: fx.cwd });
    expect(again.code).toBe(2);
    expect(ourLines(again.stderr)).toEqual([
      `image-classifier-trainer: evaluation-test.json and evaluation-test.png already in ${runPath}: choose another --name, or --overwrite`,
    ]);
    const overwrite = await runCli(['evaluate', fx.run, '--overwrite', '--name', 'test', ...WASM], {
      cwd: fx.cwd,
    });
    expect(overwrite.code, overwrite.stderr).toBe(0);
    const named = await runCli(['evaluate', fx.run, '--name', 'bad/name'], { cwd: fx.cwd });
    expect(named.code).toBe(2);

    const files = await readdir(runPath);
    expect(files.filter((f) => f.startsWith('evaluation-')).sort()).toEqual([
      'evaluation-fresh.json',
      'evaluation-fresh.png',
      'evaluation-test.json',
      'evaluation-test.png',
    ]);
    for (const [file, hash] of Object.entries(before)) expect(sha256(join(runPath, file)), file).toBe(hash);
    expect(sha256(join(runPath, 'run.json'))).toBe(runJson);
    const verify = await runCli(['verify', fx.run], { cwd: fx.cwd });
    expect(verify.code, verify.stdout).toBe(0);
    expect(existsSync(join(runPath, 'evaluation-test.json.tmp'))).toBe(false);
  });
});
