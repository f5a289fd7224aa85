// Reproducibility as a user checks it: reruns give the same bytes, an interrupted run resumes to
// the same bytes, `verify` catches a changed file, `reproduce` retrains and compares, and refuses
// when the data or the parent run changed.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Manifest, Metrics } from '../src/index.js';
import { CLI, runCli, tempFolder } from './helpers/cli.js';
import { makeFolder, quickImageFolderArgs } from './helpers/images.js';

const QUICK = ['--dataset', 'synthetic', '--model', 'net', '--batch-size', '32', '--learning-rate', '0.05'];

function weights(experiments: string, run: string): Buffer {
  return readFileSync(join(experiments, run, 'model', 'weights.bin'));
}

function manifest(experiments: string, run: string): Manifest {
  return JSON.parse(readFileSync(join(experiments, run, 'run.json'), 'utf8')) as Manifest;
}

/** The metrics without timings (which differ run to run by nature). */
function numbers(experiments: string, run: string): unknown {
  const metrics = JSON.parse(readFileSync(join(experiments, run, 'metrics.json'), 'utf8')) as Metrics;
  return {
    history: metrics.history.map(({ seconds, imagesPerSecond, ...rest }) => {
      void seconds;
      void imagesPerSecond;
      return rest;
    }),
    test: metrics.test,
  };
}

describe('bit-identical reruns', () => {
  const cwd = tempFolder();
  const experiments = join(cwd, 'experiments');
  const train = (run: string, ...extra: string[]) =>
    runCli(['--experiment-name', 'same', '--run-name', run, ...QUICK, '--epochs', '2', ...extra], { cwd });

  beforeAll(async () => {
    for (const r of [await train('a'), await train('b', '--threads', '1'), await train('c', '--seed', '1')]) {
      expect(r.code, r.stderr).toBe(0);
    }
  });

  it('the same seed gives the same weights and metrics, with 2 threads or 1', () => {
    expect(weights(experiments, 'same/a').equals(weights(experiments, 'same/b'))).toBe(true);
    expect(numbers(experiments, 'same/b')).toEqual(numbers(experiments, 'same/a'));
    const [a, b] = [manifest(experiments, 'same/a'), manifest(experiments, 'same/b')];
    expect(a.backend.threads).toBe(2);
    expect(b.backend.threads).toBe(1);
    expect(b.files['model/weights.bin']).toBe(a.files['model/weights.bin']);
  });

  it('another seed gives other weights', () => {
    expect(weights(experiments, 'same/a').equals(weights(experiments, 'same/c'))).toBe(false);
  });

  it('run.json records what a rerun needs to match', () => {
    const m = manifest(experiments, 'same/a');
    expect(m.files['model/weights.bin']).toMatch(/^[0-9a-f]{64}$/);
    expect(m.dataset.checksums.generated).toMatch(/^[0-9a-f]{64}$/);
    expect(m.versions.package).toMatch(/^image-classifier@/);
    expect(m.backend.package).toMatch(/@\d+\.\d+/);
    expect(m.system.cpu.length).toBeGreaterThan(0);
    expect(m.resumes).toEqual([]);
    expect(m.reproductionOf).toBeNull();
  });
});

describe('interrupt and --resume', () => {
  const cwd = tempFolder();
  const experiments = join(cwd, 'experiments');
  const args = (run: string) => ['--experiment-name', 'resume', '--run-name', run, ...QUICK, '--epochs', '3'];

  it('a run killed mid-epoch keeps a checkpoint and resumes to the same bits as an uninterrupted run', async () => {
    const whole = await runCli(args('whole'), { cwd });
    expect(whole.code, whole.stderr).toBe(0);

    const child = spawn(process.execPath, [CLI, ...args('cut')], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let killed = false;
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      // The progress line at a quarter of epoch 2 (plain lines, not a TTY): stop it mid-epoch, once
      // (a second signal quits at once).
      if (!killed && /epoch 2\/3: \d+\//.test(stderr)) {
        killed = true;
        child.kill('SIGTERM');
      }
    });
    child.stdout.resume();
    const code = await new Promise<number | null>((done) => child.on('close', done));
    expect(code, stderr).toBe(130);
    const resumeLine = stderr.trim().split('\n').at(-1)!;
    expect(resumeLine).toMatch(/interrupted in epoch 2; checkpoint saved in .*\.cut\.partial; resume with: /);
    expect(resumeLine).toMatch(/image-classifier-trainer --experiment-name resume --run-name cut --resume$/);
    expect(existsSync(join(experiments, 'resume', 'cut'))).toBe(false);
    expect(existsSync(join(experiments, 'resume', '.cut.partial', 'checkpoint', 'state.json'))).toBe(true);

    // Starting it afresh is refused; changing its configuration on resume is refused.
    const again = await runCli(args('cut'), { cwd });
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/was interrupted and can be resumed: add --resume/);
    const changed = await runCli(
      ['--experiment-name', 'resume', '--run-name', 'cut', '--epochs', '5', '--resume'],
      {
        cwd,
      },
    );
    expect(changed.code).toBe(2);
    expect(changed.stderr).toMatch(/--epochs is 3 in its checkpoint \(got 5\)/);

    const resumed = await runCli(['--experiment-name', 'resume', '--run-name', 'cut', '--resume'], { cwd });
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(/resumed: epoch 2, \d+ steps done/);
    expect(weights(experiments, 'resume/cut').equals(weights(experiments, 'resume/whole'))).toBe(true);
    expect(numbers(experiments, 'resume/cut')).toEqual(numbers(experiments, 'resume/whole'));
    const m = manifest(experiments, 'resume/cut');
    expect(m.resumes).toHaveLength(1);
    expect(m.resumes[0]!.epoch).toBe(2);
    // The finished run holds no checkpoint, and nothing else is left in the experiment.
    expect(existsSync(join(experiments, 'resume', 'cut', 'checkpoint'))).toBe(false);
    expect(readdirSync(join(experiments, 'resume')).sort()).toEqual(['cut', 'whole']);
  });
});

describe('verify', () => {
  const cwd = tempFolder();
  const experiments = join(cwd, 'experiments');

  it('passes an untouched run and names a tampered file (exit 3)', async () => {
    const r = await runCli(['--experiment-name', 'v', '--run-name', 'r', ...QUICK, '--epochs', '1'], { cwd });
    expect(r.code, r.stderr).toBe(0);
    const clean = await runCli(['verify', 'v/r'], { cwd });
    expect(clean.code).toBe(0);
    // The six files run.json lists, and run.json itself (its own checksum).
    expect(clean.stdout).toMatch(/all 7 files match run\.json/);

    const file = join(experiments, 'v', 'r', 'model', 'weights.bin');
    const bytes = readFileSync(file);
    bytes[10] = bytes[10]! ^ 1;
    await writeFile(file, bytes);
    const tampered = await runCli(['verify', 'v/r'], { cwd });
    expect(tampered.code).toBe(3);
    expect(tampered.stdout).toMatch(/changed\s+model\/weights\.bin/);
    expect(tampered.stdout).toMatch(/1 of 7 files changed or missing/);

    const missing = await runCli(['verify', 'v/nothing'], { cwd });
    expect(missing.code).toBe(2);
  });
});

describe('reproduce', () => {
  const cwd = tempFolder();
  const experiments = join(cwd, 'experiments');
  const images = join(cwd, 'images');
  const trainArgs = ['--experiment-name', 'repro', ...quickImageFolderArgs(images)];

  beforeAll(async () => {
    await makeFolder(images, 12);
    const base = await runCli([...trainArgs, '--run-name', 'base'], { cwd });
    expect(base.code, base.stderr).toBe(0);
  });

  it('retrains a run into <run>-repro-1 and reports it bit-identical (exit 0)', async () => {
    const r = await runCli(['reproduce', 'repro/base'], { cwd });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/reproduction of repro\/base: repro\/base-repro-1/);
    expect(r.stdout).toMatch(/weights sha256: (\w+) -> \1 \(same\)/);
    expect(r.stdout).toMatch(/metrics: all equal/);
    expect(r.stdout).toMatch(/^bit-identical/m);
    expect(manifest(experiments, 'repro/base-repro-1').reproductionOf).toBe('repro/base');
  });

  it('follows a fine-tuned run to its parent and refuses when the parent weights changed', async () => {
    const child = await runCli(
      [...trainArgs, '--run-name', 'child', '--epochs', '1', '--pretrained-model', 'repro/base'],
      {
        cwd,
      },
    );
    expect(child.code, child.stderr).toBe(0);
    const m = manifest(experiments, 'repro/child');
    expect(m.pretrained?.run).toBe('repro/base');
    expect(m.pretrained?.weightsSha256).toBe(manifest(experiments, 'repro/base').files['model/weights.bin']);

    const ok = await runCli(['reproduce', 'repro/child', '--run-name', 'child-again'], { cwd });
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/lineage: repro\/child <- repro\/base/);

    // Tamper with a copy of the parent: point the child's run at it by replacing base's weights.
    const parentWeights = join(experiments, 'repro', 'base', 'model', 'weights.bin');
    const original = readFileSync(parentWeights);
    const changed = Buffer.from(original);
    changed[20] = changed[20]! ^ 1;
    await writeFile(parentWeights, changed);
    try {
      const refused = await runCli(['reproduce', 'repro/child'], { cwd });
      expect(refused.code).toBe(2);
      expect(refused.stderr).toMatch(/weights of its parent run repro\/base changed/);
    } finally {
      await writeFile(parentWeights, original);
    }
  });

  it('refuses when a data file changed (exit 2, nothing written), and reports it with --allow-data-change (exit 3)', async () => {
    // One image repainted: same name, other pixels.
    await sharp({ create: { width: 24, height: 24, channels: 3, background: { r: 10, g: 250, b: 250 } } })
      .jpeg()
      .toFile(join(images, 'red', '0.jpg'));
    const before = readdirSync(join(experiments, 'repro')).sort();
    const refused = await runCli(['reproduce', 'repro/base'], { cwd });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/cannot reproduce repro\/base: the data changed since it was trained/);
    expect(refused.stderr).toMatch(/--allow-data-change/);
    expect(readdirSync(join(experiments, 'repro')).sort()).toEqual(before);

    const forced = await runCli(['reproduce', 'repro/base', '--allow-data-change'], { cwd });
    expect(forced.code, forced.stderr).toBe(3);
    expect(forced.stdout).toMatch(/input changed: the data changed/);
    expect(forced.stdout).toMatch(/^not identical: the data changed/m);
  });
});
