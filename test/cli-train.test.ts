// The CLI end to end, as a user runs it: files written, their contents, exit codes and messages.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadRun } from '../src/runs/load-run.js';
import { spawn } from 'node:child_process';
import { CLI, runCli, tempFolder } from './helpers/cli.js';

// Small and fast: the tutorial net on generated data.
const QUICK = [
  '--dataset',
  'synthetic',
  '--model',
  'net',
  '--epochs',
  '2',
  '--batch-size',
  '32',
  '--learning-rate',
  '0.05',
];

describe('image-classifier-trainer', () => {
  const cwd = tempFolder();
  const experiments = join(cwd, 'experiments');
  let first: Awaited<ReturnType<typeof runCli>>;

  beforeAll(async () => {
    first = await runCli(['--experiment-name', 'exp', '--run-name', 'run-1', ...QUICK], { cwd });
  });

  it('--help lists the flags with their defaults, and examples', async () => {
    const { code, stdout } = await runCli(['--help']);
    expect(code).toBe(0);
    for (const flag of [
      '--experiment-name',
      '--run-name',
      '--learning-rate',
      '--momentum',
      '--epochs',
      '--batch-size',
      '--pretrained-model',
      '--dataset-folder',
      '--device',
      '--config',
      '--seed',
      '--num-workers',
      '--validation-split',
    ]) {
      expect(stdout).toContain(flag);
    }
    expect(stdout).toContain('[default: 0.2]');
    expect(stdout).toContain('Examples:');
  });

  it('doctor lists the backends, their step times and which one auto picks', async () => {
    const { code, stdout } = await runCli(['doctor']);
    expect(code).toBe(0);
    expect(stdout).toMatch(
      /^wasm +cpu +works \(@tensorflow\/tfjs-backend-wasm@[\d.]+, \d+ threads?; vgg@256 step \d+\.\d ms\)$/m,
    );
    expect(stdout).toMatch(/^tensorflow +cpu +(works \(.+\)|unavailable: .+)$/m);
    // The native kernels say which instruction set they run, or why they cannot.
    expect(stdout).toMatch(
      /^native +cpu +(works \(.+native kernels \((avx2|avx512)\).+\)|unavailable: .+)$/m,
    );
    expect(stdout).toMatch(/--device auto uses: \w+/);
  });

  it('trains on synthetic data and writes a complete run', async () => {
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/backend: \w+/);
    expect(first.stdout).toMatch(/epoch 2\/2: train loss/);
    const runDir = join(experiments, 'exp', 'run-1');
    for (const file of [
      'model/model.json',
      'model/weights.bin',
      'metrics.json',
      'metrics.png',
      'curves.png',
      'confusion.png',
      'run.json',
      'train.log',
    ]) {
      expect(existsSync(join(runDir, file)), file).toBe(true);
    }
    // No temporary folder is left next to the run.
    expect(readdirSync(join(experiments, 'exp'))).toEqual(['run-1']);
    const png = readFileSync(join(runDir, 'metrics.png'));
    expect(png.subarray(1, 4).toString()).toBe('PNG');

    const run = await loadRun('exp/run-1', experiments);
    expect(run.manifest.config.model).toBe('net');
    expect(run.manifest.config.epochs).toBe(2);
    expect(run.manifest.seed).toBe(0);
    expect(run.manifest.versions.node).toBe(process.version);
    expect(run.manifest.versions.tfjs).toMatch(/^4\./);
    expect(run.manifest.backend.name).toMatch(/^(native|wasm|tensorflow|cpu)$/);
    expect(run.manifest.dataset.kind).toBe('synthetic');
    expect(Object.keys(run.manifest.dataset.checksums).length).toBeGreaterThan(0);
    expect(run.manifest.timing.imagesPerSecond).toBeGreaterThan(0);
    expect(run.manifest.command).toContain('--run-name run-1');
    expect(run.metrics.history).toHaveLength(2);
    expect(run.metrics.test.confusion).toHaveLength(10);
    // Generated data is easy: the tutorial net learns it in two epochs.
    expect(run.metrics.test.accuracy).toBeGreaterThan(0.5);
    expect(run.manifest.results.testAccuracy).toBe(run.metrics.test.accuracy);
    const model = await run.loadLayersModel();
    expect(model.outputs[0]!.shape).toEqual([null, 10]);
    model.dispose();
    expect(readFileSync(join(runDir, 'train.log'), 'utf8')).toContain('test: accuracy');
  });

  it('never overwrites an existing run', async () => {
    const before = readFileSync(join(experiments, 'exp', 'run-1', 'run.json'), 'utf8');
    const { code, stderr } = await runCli(['--experiment-name', 'exp', '--run-name', 'run-1', ...QUICK], {
      cwd,
    });
    expect(code).toBe(2);
    expect(stderr).toMatch(/already exists/);
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(readFileSync(join(experiments, 'exp', 'run-1', 'run.json'), 'utf8')).toBe(before);
  });

  it('fine-tunes from --pretrained-model and records the parent', async () => {
    const { code, stderr } = await runCli(
      [
        '--experiment-name',
        'exp',
        '--run-name',
        'ft',
        ...QUICK,
        '--epochs',
        '1',
        '--lr-schedule',
        'constant',
        '--learning-rate',
        '0.005',
        '--pretrained-model',
        'exp/run-1',
      ],
      { cwd },
    );
    expect(code, stderr).toBe(0);
    const run = await loadRun('exp/ft', experiments);
    expect(run.manifest.pretrained?.run).toBe(join('exp', 'run-1'));
    expect(run.manifest.pretrained?.weightsSha256).toMatch(/^[0-9a-f]{64}$/);
    // Starting from trained weights, one epoch is already good.
    expect(run.metrics.history[0]!.validationAccuracy).toBeGreaterThan(0.5);
  });

  const refusals: [string, string[], RegExp][] = [
    ['a negative learning rate', ['--learning-rate', '-1'], /--learning-rate must be > 0 \(got -1\)/],
    ['batch size 0', ['--batch-size', '0'], /--batch-size must be >= 1 \(got 0\)/],
    ['an unknown model', ['--model', 'resnet9000'], /--model must be one of vgg, net/],
    ['a run name with /', ['--run-name', 'a/b'], /--run-name must be letters/],
    ['a run name ..', ['--run-name', '..'], /--run-name must be letters/],
    [
      'a missing pretrained model',
      ['--pretrained-model', 'exp/nope'],
      /--pretrained-model exp\/nope: no model found/,
    ],
    [
      'a pretrained model of another architecture',
      ['--pretrained-model', 'exp/run-1', '--model', 'vgg'],
      /is a 'net' model, but --model is 'vgg'/,
    ],
    ['an unknown flag', ['--learnin-rate', '0.1'], /Unknown argument/i],
    ['a non-number', ['--epochs', 'many'], /--epochs must be a number/],
    ['a fractional epoch count', ['--epochs', '1.5'], /--epochs must be an integer \(got 1.5\)/],
    [
      'an unknown dataset',
      ['--dataset', 'mnist'],
      /--dataset must be one of cifar10, image-folder, synthetic/,
    ],
    ['image-folder without a folder', ['--dataset', 'image-folder'], /--dataset-folder is required/],
    ['a missing run name', ['--run-name'], /run-name/],
  ];
  for (const [what, args, message] of refusals) {
    it(`refuses ${what} in one line, with no run folder`, async () => {
      const base = ['--experiment-name', 'refused', '--run-name', 'r', ...QUICK];
      const { code, stderr, stdout } = await runCli([...base, ...args], { cwd });
      expect(code, stdout + stderr).toBe(2);
      expect(stderr).toMatch(message);
      expect(stderr.trim().split('\n')).toHaveLength(1);
      expect(existsSync(join(experiments, 'refused'))).toBe(false);
    });
  }

  it('merges --config under the flags', async () => {
    const file = join(cwd, 'base.yaml');
    writeFileSync(
      file,
      'experiment_name: cfg\nrun-name: from-file\ndataset: synthetic\nmodel: net\nepochs: 1\nbatchSize: 64\nseed: 3\nlearning-rate: 0.05\n',
    );
    const { code, stderr } = await runCli(['--config', file, '--run-name', 'from-flag', '--seed', '5'], {
      cwd,
    });
    expect(code, stderr).toBe(0);
    const run = await loadRun('cfg/from-flag', experiments);
    expect(run.manifest.config).toMatchObject({
      epochs: 1,
      batchSize: 64,
      seed: 5,
      model: 'net',
      runName: 'from-flag',
    });
  });

  it('names the bad key of a config file', async () => {
    const file = join(cwd, 'bad.yaml');
    writeFileSync(file, 'experiment-name: cfg\nrun-name: x\nlearning-rat: 0.1\n');
    const { code, stderr } = await runCli(['--config', file], { cwd });
    expect(code).toBe(2);
    expect(stderr).toMatch(/bad\.yaml: unknown option --learning-rat/);
  });

  it('says where to put CIFAR-10 when it cannot be downloaded', async () => {
    const { code, stderr } = await runCli(
      [
        '--experiment-name',
        'offline',
        '--run-name',
        'r',
        '--data-folder',
        join(cwd, 'empty-cache'),
        '--download-url',
        'http://127.0.0.1:9/cifar-10-binary.tar.gz',
      ],
      { cwd },
    );
    expect(code).toBe(1);
    expect(stderr).toMatch(/--dataset-folder/);
    expect(stderr).toMatch(/--dataset synthetic/);
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(existsSync(join(experiments, 'offline'))).toBe(false);
  });

  it('Ctrl-C stops the run after the step, keeps a checkpoint to resume, exits 130 and writes no run', async () => {
    const child = spawn(
      process.execPath,
      [CLI, '--experiment-name', 'sig', '--run-name', 'r', ...QUICK, '--epochs', '20'],
      {
        cwd,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      if (d.toString().includes('epoch 1/20:')) child.kill('SIGINT');
    });
    const code = await new Promise<number | null>((done) => child.on('close', done));
    expect(code).toBe(130);
    expect(stderr).toMatch(/interrupted in epoch 2; checkpoint saved in .*; resume with: .* --resume/);
    expect(readdirSync(join(experiments, 'sig'))).toEqual(['.r.partial']);
  });
});
