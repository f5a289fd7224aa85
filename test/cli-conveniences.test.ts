// The small things a CLI user expects: --json on doctor, verify and reproduce; --print-config that
// --config loads back; options from IMAGE_CLASSIFIER_* variables; a shell completion script.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { runCli, tempFolder } from './helpers/cli.js';

const cwd = tempFolder('ic-conveniences-');
const QUICK = [
  '--dataset',
  'synthetic',
  '--model',
  'net',
  '--epochs',
  '1',
  '--batch-size',
  '64',
  '--backend',
  'wasm',
];

describe('CLI conveniences', () => {
  beforeAll(async () => {
    const r = await runCli(['--experiment-name', 'e', '--run-name', 'r', ...QUICK], { cwd });
    expect(r.code, r.stderr).toBe(0);
  }, 120_000);

  it('--print-config prints YAML that --config loads back to the same configuration', async () => {
    const printed = await runCli(
      ['--experiment-name', 'e', '--run-name', 'p', ...QUICK, '--seed', '7', '--print-config'],
      { cwd },
    );
    expect(printed.code, printed.stderr).toBe(0);
    const yaml = parse(printed.stdout) as Record<string, unknown>;
    expect(yaml).toMatchObject({ 'experiment-name': 'e', 'run-name': 'p', seed: 7, epochs: 1, model: 'net' });
    // Defaults are spelled out too: the file is the whole recipe.
    expect(yaml['learning-rate']).toBe(0.2);
    writeFileSync(join(cwd, 'printed.yaml'), printed.stdout);
    const again = await runCli(['--config', 'printed.yaml', '--print-config'], { cwd });
    expect(again.stdout).toBe(printed.stdout);
  });

  it('takes options from IMAGE_CLASSIFIER_* below the flags, and refuses a bad one in one line', async () => {
    const env = {
      IMAGE_CLASSIFIER_EPOCHS: '3',
      IMAGE_CLASSIFIER_RANDOM_FLIP: 'false',
      IMAGE_CLASSIFIER_SEED: '5',
    };
    const r = await runCli(['--experiment-name', 'e', '--run-name', 'x', '--seed', '9', '--print-config'], {
      cwd,
      env,
    });
    expect(parse(r.stdout)).toMatchObject({ epochs: 3, 'random-flip': false, seed: 9 });
    const bad = await runCli(['--experiment-name', 'e', '--run-name', 'x', '--print-config'], {
      cwd,
      env: { IMAGE_CLASSIFIER_BATCH_SIZE: '64k' },
    });
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toBe(
      'image-classifier-trainer: $IMAGE_CLASSIFIER_BATCH_SIZE must be a number (got "64k")',
    );
  });

  it('verify --json and doctor --json print JSON', async () => {
    const verify = await runCli(['verify', 'e/r', '--json'], { cwd });
    expect(verify.code, verify.stderr).toBe(0);
    const report = JSON.parse(verify.stdout) as {
      ok: boolean;
      files: Array<{ file: string; status: string }>;
    };
    expect(report.ok).toBe(true);
    expect(report.files.map((f) => f.file)).toContain('model/weights.bin');

    const doctor = await runCli(['doctor', '--json'], { cwd });
    expect(doctor.code, doctor.stderr).toBe(0);
    const backends = (JSON.parse(doctor.stdout) as { backends: Array<{ name: string; works: boolean }> })
      .backends;
    expect(backends.find((b) => b.name === 'wasm')?.works).toBe(true);
  }, 120_000);

  it('reproduce --json prints the report on stdout, its log on stderr, and exits 0 when identical', async () => {
    const r = await runCli(['reproduce', 'e/r', '--json'], { cwd });
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as { identical: boolean; reproduction: string };
    expect(report.identical).toBe(true);
    expect(report.reproduction).toBe('e/r-repro-1');
    expect(r.stderr).toMatch(/epoch 1\/1/);
  }, 120_000);

  it('prints a shell completion script', async () => {
    const r = await runCli(['completion'], { cwd });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/image-classifier-trainer/);
    expect(r.stdout).toMatch(/complete -o/);
  });
});
