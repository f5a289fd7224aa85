// Issue 12, hard cases of the input: numbers and flags every command reads, batches too large for the
// wasm heap, data with no test split, and the charts and documents that describe them. Through the
// CLI: the exit code, the one line said, and what is (not) left on disk.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_BATCH_SIZE } from '../src/config.js';
import { bestRun, type RunRow } from '../notebooks/compare-runs.js';
import { runCli, tempFolder } from './helpers/cli.js';
import { makeFolder } from './helpers/images.js';

const PROGRAM = 'image-classifier-trainer';
const NATIVE_ADDON = join(import.meta.dirname, '../build/Release/image_classifier_native.node');

const root = tempFolder('ic-inputs-');
/** Inputs the cases read (sweep files, config files, image folders): never in a case's cwd. */
const inputs = join(root, 'inputs');
/** The data cache of every case: decoded image folders are cached, which is not a run. */
const cache = join(root, 'cache');
mkdirSync(inputs);
afterAll(() => rmSync(root, { recursive: true, force: true }));

let cases = 0;
/** A fresh, empty working folder: the run would go to its ./experiments. */
function freshCwd(): string {
  const cwd = join(root, `case-${++cases}`);
  mkdirSync(cwd);
  return cwd;
}

/** A quick run's flags: the run (if any) goes to ./experiments/inputs/r. */
const RUN = ['--experiment-name', 'inputs', '--run-name', 'r', '--data-folder', cache];
const DATA = ['--dataset', 'synthetic', '--model', 'net', '--device', 'cpu'];
const QUICK = [...DATA, '--epochs', '1'];

/**
 * Runs the CLI in an empty folder and expects a refusal: exit 2, exactly one error line, `line` (after
 * the program's name; what came before, such as the backend chosen or a decoding bar, is progress),
 * and nothing written: the folder is still empty (no run folder, no hidden temporary or partial one).
 */
async function expectRefused(args: string[], line: string): Promise<void> {
  const cwd = freshCwd();
  const { code, stdout, stderr } = await runCli(args, { cwd });
  expect(code, stdout + stderr).toBe(2);
  expect(stderr.split('\n').filter((l) => l.startsWith(`${PROGRAM}:`))).toEqual([`${PROGRAM}: ${line}`]);
  expect(stderr.trimEnd().split('\n').at(-1)).toBe(`${PROGRAM}: ${line}`);
  expect(stdout).not.toMatch(/^(done|run written)/m);
  expect(readdirSync(cwd)).toEqual([]);
}

describe('numbers on the command line: one line naming the flag, exit 2, nothing written', () => {
  const numberCases: Array<[string, string[], string]> = [
    ['an empty momentum is not 0', ['--momentum', ''], '--momentum needs a number (got an empty value)'],
    ['an empty seed is not 0', ['--seed', ''], '--seed needs a number (got an empty value)'],
    ['an empty value after =', ['--epochs='], '--epochs needs a number (got an empty value)'],
    ['Infinity epochs', ['--epochs', 'Infinity'], '--epochs must be a finite number (got Infinity)'],
    [
      '-Infinity is a value, not flags',
      ['--epochs', '-Infinity'],
      '--epochs must be a finite number (got -Infinity)',
    ],
    ['NaN', ['--learning-rate', 'NaN'], '--learning-rate must be a finite number (got NaN)'],
    ['-x is a value, not a flag', ['--momentum', '-x'], '--momentum must be a number (got "-x")'],
    ['a negative learning rate', ['--learning-rate', '-0.1'], '--learning-rate must be > 0 (got -0.1)'],
    [
      'a negative value through an old alias',
      ['--learning_rate', '-1e-3'],
      '--learning-rate must be > 0 (got -0.001)',
    ],
    ['hex is not decimal', ['--epochs', '0x10'], '--epochs must be a number (got "0x10")'],
    [
      'a flag where the value should be',
      ['--momentum', '--seed', '1'],
      '--momentum needs a number (got the flag --seed)',
    ],
    ['a number flag given last without a value', ['--seed'], '--seed needs a number (got nothing)'],
    ['a 1e400 overflow', ['--weight-decay', '1e400'], '--weight-decay must be a finite number (got 1e400)'],
  ];
  for (const [what, args, line] of numberCases) {
    it(`refuses ${what}`, async () => {
      await expectRefused([...RUN, ...QUICK, ...args], line);
    });
  }

  it('refuses Infinity from a config file, shown as Infinity (not "got null")', async () => {
    const file = join(inputs, 'inf.yaml');
    writeFileSync(file, 'epochs: .inf\n');
    await expectRefused(
      [...RUN, ...DATA, '--config', file],
      '--epochs must be a finite number (got Infinity)',
    );
  });

  it('refuses a bad number for the subcommands too: sweep --parallel abc is one line, not a TypeError', async () => {
    const file = join(inputs, 'sweep.yaml');
    writeFileSync(file, 'method: grid\nparameters:\n  seed: { values: [1, 2] }\n');
    await expectRefused(
      ['sweep', file, ...QUICK, '--parallel', 'abc'],
      '--parallel must be a number (got "abc")',
    );
    await expectRefused(['sweep', file, ...QUICK, '--parallel', '0'], '--parallel must be >= 1 (got 0)');
    await expectRefused(
      ['sweep', file, ...QUICK, '--parallel', '1.5'],
      '--parallel must be an integer (got 1.5)',
    );
  });

  it('refuses a bad number for the serving commands before loading anything', async () => {
    // The run does not exist: the flag is refused first, so the message is about the flag.
    await expectRefused(
      ['predict', 'nowhere/r', 'x.png', '--top-k', ''],
      '--top-k needs a number (got an empty value)',
    );
    await expectRefused(['serve', 'nowhere/r', '--port', 'http'], '--port must be a number (got "http")');
    await expectRefused(
      ['evaluate', 'nowhere/r', '--threads', '-Infinity'],
      '--threads must be a finite number (got -Infinity)',
    );
  });

  it('still takes ordinary numbers: 1e3 epochs and a repeated flag (the last wins) pass the parser', async () => {
    // A bad --backend stops the run right after the numbers are read: they were accepted.
    await expectRefused(
      [...RUN, ...QUICK, '--epochs', '1e3', '--seed', '1', '--seed', '2', '--backend', 'abacus'],
      '--backend must be one of auto, tensorflow, tensorflow-gpu, webgpu, native, wasm, cpu (got "abacus")',
    );
  });
});

describe('the data folder', () => {
  it('a --dataset-folder that does not exist is bad input (exit 2), not a failure', async () => {
    await expectRefused(
      [...RUN, ...QUICK, '--dataset', 'image-folder', '--dataset-folder', join(inputs, 'missing')],
      `--dataset-folder ${join(inputs, 'missing')}: no such folder (${join(inputs, 'missing')})`,
    );
  });

  it('with only 2 images a class there is nothing to validate on: refused before training', async () => {
    const images = join(inputs, 'two-each');
    await makeFolder(images, 2);
    rmSync(join(images, 'blue'), { recursive: true });
    await expectRefused(
      [...RUN, ...QUICK, '--dataset', 'image-folder', '--dataset-folder', images],
      'no images to validate on: --validation-split 0.1 of 4 training images holds out none, and the data has no test images (--test-split rounds per class: 0.1 holds one out of 5); use --validation-split 0.13 or more, or add images',
    );
  });
});

describe('large batches', () => {
  it(`refuses a batch over ${MAX_BATCH_SIZE} up front, for every command that takes one`, async () => {
    await expectRefused(
      [...RUN, '--dataset', 'synthetic', '--model', 'vgg', '--batch-size', '2048'],
      `--batch-size must be <= ${MAX_BATCH_SIZE} (got 2048)`,
    );
    await expectRefused(
      [...RUN, ...QUICK, '--batch-size', String(MAX_BATCH_SIZE + 1)],
      `--batch-size must be <= ${MAX_BATCH_SIZE} (got ${MAX_BATCH_SIZE + 1})`,
    );
    const file = join(inputs, 'big.yaml');
    writeFileSync(file, 'method: grid\nparameters:\n  batch_size: { values: [256, 65536] }\n');
    await expectRefused(
      ['sweep', file, ...QUICK],
      `sweep file ${file}: trial-02 (--batch-size 65536): --batch-size must be <= ${MAX_BATCH_SIZE} (got 65536)`,
    );
    await expectRefused(
      ['predict', 'nowhere/r', 'x.png', '--batch-size', '5000'],
      `--batch-size must be <= ${MAX_BATCH_SIZE} (got 5000)`,
    );
  });

  // The largest batch allowed, on the networks' own backends: vgg on native (its heap use is what
  // sets the bound; ~15 s), the small net on wasm. Both finish, with one step an epoch or two.
  it.skipIf(!existsSync(NATIVE_ADDON))(
    `trains vgg with --batch-size ${MAX_BATCH_SIZE} on the native backend`,
    async () => {
      const cwd = freshCwd();
      const { code, stdout, stderr } = await runCli(
        [
          ...RUN,
          '--dataset',
          'synthetic',
          '--model',
          'vgg',
          '--epochs',
          '1',
          '--batch-size',
          String(MAX_BATCH_SIZE),
          '--backend',
          'native',
        ],
        { cwd },
      );
      expect(code, stdout + stderr).toBe(0);
      expect(stdout).toMatch(/^done: test accuracy \d+\.\d\d% -> /m);
      expect(readdirSync(join(cwd, 'experiments', 'inputs'))).toEqual(['r']);
    },
    180_000,
  );

  it(`trains net with --batch-size ${MAX_BATCH_SIZE} on the wasm backend`, async () => {
    const cwd = freshCwd();
    const { code, stdout, stderr } = await runCli(
      [...RUN, ...QUICK, '--batch-size', String(MAX_BATCH_SIZE), '--backend', 'wasm'],
      { cwd },
    );
    expect(code, stdout + stderr).toBe(0);
    expect(stdout).toMatch(/^done: test accuracy \d+\.\d\d% -> /m);
  }, 120_000);
});

describe('a run with no test images', () => {
  const cwd = join(root, 'no-test');
  const experiments = join(cwd, 'experiments');
  const runPath = join(experiments, 'small', 'no-test');
  let train: { code: number | null; stdout: string; stderr: string };

  beforeAll(async () => {
    mkdirSync(cwd);
    // 4 images a class: --test-split 0.1 holds none out (it rounds per class), validation gets 1.
    const images = join(inputs, 'four-each');
    await makeFolder(images, 4);
    const common = [
      '--experiment-name',
      'small',
      '--data-folder',
      cache,
      '--model',
      'net',
      '--epochs',
      '1',
      '--batch-size',
      '4',
      '--device',
      'cpu',
    ];
    train = await runCli(
      [...common, '--run-name', 'no-test', '--dataset', 'image-folder', '--dataset-folder', images],
      { cwd },
    );
    // A second run of the experiment, with a test split, for the comparison.
    // (At a rate batch 4 trains at: 0.2 can take the tutorial net to NaN on generated data.)
    const second = await runCli(
      [...common, '--run-name', 'with-test', '--dataset', 'synthetic', '--learning-rate', '0.05'],
      { cwd },
    );
    expect(second.code, second.stderr).toBe(0);
  }, 120_000);

  it('trains and says there was no test split, never "accuracy 0.00%"', () => {
    expect(train.code, train.stdout + train.stderr).toBe(0);
    expect(train.stdout).toContain(
      'test: no test images (the data has no test split), so no test accuracy; the validation accuracy is the result',
    );
    expect(train.stdout).toMatch(
      /^done: no test split, so no test accuracy; validation accuracy \d+\.\d\d% -> /m,
    );
    expect(train.stdout).not.toMatch(/on 0 images|test accuracy \d/);
  });

  it('writes null, not 0, for the test results in metrics.json and run.json', () => {
    const metrics = JSON.parse(readFileSync(join(runPath, 'metrics.json'), 'utf8')) as {
      test: { count: number; accuracy: number | null; loss: number | null };
    };
    expect(metrics.test).toMatchObject({ count: 0, accuracy: null, loss: null });
    const manifest = JSON.parse(readFileSync(join(runPath, 'run.json'), 'utf8')) as {
      results: Record<string, number | null>;
      dataset: { testImages: number };
    };
    expect(manifest.results.testAccuracy).toBeNull();
    expect(manifest.results.testLoss).toBeNull();
    expect(manifest.results.validationAccuracy).toEqual(expect.any(Number));
    expect(manifest.dataset.testImages).toBe(0);
    expect(existsSync(join(runPath, 'metrics.png'))).toBe(true);
  });

  it('evaluate refuses the empty test split: exit 2, one line, no evaluation files', async () => {
    const { code, stdout, stderr } = await runCli(['evaluate', 'small/no-test'], { cwd });
    expect(code, stdout + stderr).toBe(2);
    expect(stderr.trimEnd().split('\n').at(-1)).toBe(
      `${PROGRAM}: small/no-test: the data has no test images (its classes have too few images for --test-split to hold one out): nothing to evaluate; give other data with --dataset-folder`,
    );
    expect(readdirSync(runPath).filter((f) => f.startsWith('evaluation-'))).toEqual([]);
  });

  it('evaluate with --dataset image-folder and no folder is bad input (exit 2), not a failure', async () => {
    const { code, stdout, stderr } = await runCli(
      ['evaluate', 'small/with-test', '--dataset', 'image-folder'],
      {
        cwd,
      },
    );
    expect(code, stdout + stderr).toBe(2);
    expect(stderr.trimEnd().split('\n').at(-1)).toBe(
      `${PROGRAM}: --dataset-folder is required with --dataset image-folder`,
    );
  });

  it('runs compares it with "-" for its test accuracy and writes comparison.png', async () => {
    const { code, stdout, stderr } = await runCli(['runs', 'small'], { cwd });
    expect(code, stderr).toBe(0);
    const row = stdout.split('\n').find((l) => l.startsWith('no-test'))!;
    expect(row).toMatch(/\s-\s+\d+\.\d\d%/);
    expect(
      readFileSync(join(experiments, 'small', 'comparison.png'))
        .subarray(1, 4)
        .toString(),
    ).toBe('PNG');
  });
});

describe('charts and documents', () => {
  it('the notebook picks the best run by validation accuracy, as runs and sweep do', () => {
    const row = (run: string, validationAccuracy: number, testAccuracy: number) =>
      ({ run, validationAccuracy, testAccuracy, bestValidationAccuracy: validationAccuracy }) as RunRow;
    expect(bestRun([row('a', 0.6, 0.9), row('b', 0.7, 0.5)])!.run).toBe('b');
  });

  it('k8s names the image by the tag docker:build gives (the package version), never :latest', () => {
    const { version } = JSON.parse(readFileSync(join(import.meta.dirname, '../package.json'), 'utf8')) as {
      version: string;
    };
    const k8s = join(import.meta.dirname, '../k8s');
    for (const file of ['overlays/cpu-serving/serve.yaml', 'overlays/cpu-training/train-job.yaml']) {
      const text = readFileSync(join(k8s, file), 'utf8');
      expect(text, file).toContain(`image: image-classifier:${version}`);
      expect(text, file).not.toMatch(/image-classifier:latest/);
    }
    expect(readFileSync(join(k8s, 'overlays/cpu-serving/kustomization.yaml'), 'utf8')).toMatch(
      new RegExp(`newTag: ${version.replace(/\./g, '\\.')}\\b`),
    );
    const readme = readFileSync(join(k8s, 'README.md'), 'utf8');
    expect(readme).toContain(`docker tag image-classifier:${version} `);
    expect(readme).not.toMatch(/image-classifier:latest/);
  });

  it('the training and sweep workflows can train on an image folder of the repository', () => {
    for (const file of ['training.yml', 'sweep.yml']) {
      const text = readFileSync(join(import.meta.dirname, '../.github/workflows', file), 'utf8');
      expect(text, file).toMatch(/^ {6}dataset_folder:$/m);
      expect(text, file).toMatch(/^ {10}- image-folder$/m);
      expect(text, file).toContain('DATASET_FOLDER: ${{ inputs.dataset_folder }}');
      expect(text, file).toContain('args+=(--dataset-folder "$DATASET_FOLDER")');
    }
  });
});
