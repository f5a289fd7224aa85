// Runs, signals and sweeps at their hard cases, as a user meets them: Ctrl-C at awkward moments and
// twice, a disk that fills while a checkpoint or the run is written, two processes on one run name,
// a run that diverges, too little data for the recipe, sweeps rerun with other flags or data or with
// absurd grids, `reproduce` of an edited run, and the `runs` table. Every case checks the exit code,
// the message, and what is left on disk (a finished run, a resumable `.<run>.partial`, or nothing;
// never a `.<run>.tmp-*` folder).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { train, type EpochMetrics } from '../src/index.js';
import { notice, terminalProgress } from '../src/reports/progress.js';
import { CLI, runCli, tempFolder, type CliResult } from './helpers/cli.js';
import { makeFolder, quickImageFolderArgs } from './helpers/images.js';

// The tutorial net on generated data (1,800 training images): about a second an epoch.
const QUICK = ['--dataset', 'synthetic', '--model', 'net', '--batch-size', '32', '--learning-rate', '0.05'];
const FULL_DISK = join(import.meta.dirname, 'helpers', 'full-disk.mjs');

/** What is in an experiment's folder (hidden entries included); [] when it does not exist. */
function entries(experiments: string, experiment: string): string[] {
  const path = join(experiments, experiment);
  return existsSync(path) ? readdirSync(path).sort() : [];
}

function lastLine(text: string): string {
  return text.trim().split('\n').at(-1)!;
}

/** The trainer's own messages on stderr (not the progress lines that go there too). */
function messages(stderr: string): string[] {
  return stderr.split('\n').filter((line) => line.startsWith('image-classifier-trainer:'));
}

interface Signalled extends CliResult {
  /** stdout and stderr in the order they came. */
  all: string;
}

/**
 * Runs the CLI and sends it SIGINT each time its output (stdout and stderr together) first matches
 * the next of `triggers`; `onMatch` runs instead of a signal for a trigger given as a function pair.
 */
function runInterrupted(
  args: string[],
  cwd: string,
  triggers: Array<RegExp | [RegExp, () => void]>,
  env: NodeJS.ProcessEnv = {},
): Promise<Signalled> {
  return new Promise((done, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let all = '';
    let next = 0;
    const check = () => {
      while (next < triggers.length) {
        const trigger = triggers[next]!;
        const [pattern, action] = Array.isArray(trigger) ? trigger : [trigger, () => child.kill('SIGINT')];
        if (!pattern.test(all)) return;
        next++;
        action();
      }
    };
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      all += d.toString();
      check();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      all += d.toString();
      check();
    });
    child.on('error', reject);
    child.on('close', (code) => done({ code, stdout, stderr, all }));
  });
}

describe('Ctrl-C', () => {
  const cwd = tempFolder();
  const experiments = join(cwd, 'experiments');

  it('on small data stops within the epoch (every step is checked), then resumes', async () => {
    // 6 steps an epoch: signals used to be looked at every 8 steps, i.e. only at the epoch's end.
    const args = [
      '--experiment-name',
      'small',
      '--run-name',
      'r',
      ...QUICK,
      '--batch-size',
      '300',
      '--epochs',
      '3',
    ];
    const r = await runInterrupted(args, cwd, [/epoch 2\/3: \d+\/1800 images/]);
    expect(r.code, r.all).toBe(130);
    expect(r.stdout).toMatch(/^interrupted in epoch 2 after [1-5] steps; checkpoint saved$/m);
    expect(lastLine(r.stderr)).toMatch(
      /^image-classifier-trainer: interrupted in epoch 2; checkpoint saved in .*\.r\.partial; resume with: image-classifier-trainer --experiment-name small --run-name r --resume$/,
    );
    expect(entries(experiments, 'small')).toEqual(['.r.partial']);
    expect(existsSync(join(experiments, 'small', '.r.partial', 'checkpoint', 'state.json'))).toBe(true);

    const resumed = await runCli(['--experiment-name', 'small', '--run-name', 'r', '--resume'], { cwd });
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(/resumed: epoch 2, [1-5] steps done/);
    expect(entries(experiments, 'small')).toEqual(['r']);
  });

  it('after the last step lets the run complete, with exit code 0', async () => {
    const args = ['--experiment-name', 'last', '--run-name', 'r', ...QUICK, '--epochs', '2'];
    // The epoch's line is logged once its steps and validation are done.
    const r = await runInterrupted(args, cwd, [/epoch 2\/2: train loss/]);
    expect(r.code, r.all).toBe(0);
    expect(r.stderr).toMatch(/SIGINT: stopping after this step/);
    expect(r.stdout).toMatch(/stop asked for after the last step: the run is completed/);
    expect(r.stdout).toMatch(/^done: test accuracy/m);
    expect(entries(experiments, 'last')).toEqual(['r']);
    expect(readdirSync(join(experiments, 'last', 'r'))).not.toContain('checkpoint');
    // Enough steps for the recipe: no warning about small data.
    expect(r.stdout).not.toMatch(/warning/);
  });

  it('twice stops at once, keeps the last checkpoint written and says how to resume', async () => {
    const args = ['--experiment-name', 'twice', '--run-name', 'r', ...QUICK, '--epochs', '2'];
    const r = await runInterrupted(args, cwd, [/epoch 2\/2: \d+\/1800 images/, /SIGINT: stopping/]);
    expect(r.code, r.all).toBe(130);
    expect(r.stderr).toMatch(/SIGINT again: stopping at once/);
    // The stop at once may land before or after the checkpoint of the first stop is written.
    const message = lastLine(r.stderr);
    expect(message).toMatch(
      /^image-classifier-trainer: (stopped at once; the checkpoint of (the end of epoch 1|epoch 2 after \d+ steps) is kept in|interrupted in epoch 2; checkpoint saved in) \S+\.r\.partial; resume with: image-classifier-trainer --experiment-name twice --run-name r --resume$/,
    );
    expect(entries(experiments, 'twice')).toEqual(['.r.partial']);
    expect(existsSync(join(experiments, 'twice', '.r.partial', 'checkpoint', 'state.json'))).toBe(true);
    const resumed = await runCli(['--experiment-name', 'twice', '--run-name', 'r', '--resume'], { cwd });
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(entries(experiments, 'twice')).toEqual(['r']);
  });

  it('twice in the first epoch leaves a resumable checkpoint or nothing, never a temporary folder', async () => {
    const args = ['--experiment-name', 'early', '--run-name', 'r', ...QUICK, '--epochs', '3'];
    const r = await runInterrupted(args, cwd, [/epoch 1\/3: \d+\/1800 images/, /SIGINT: stopping/]);
    expect(r.code, r.all).toBe(130);
    const message = lastLine(r.stderr);
    if (/nothing was kept/.test(message)) {
      expect(message).toBe(
        'image-classifier-trainer: stopped at once before the first checkpoint (end of epoch 1); nothing was kept',
      );
      expect(entries(experiments, 'early')).toEqual([]);
    } else {
      expect(message).toMatch(/checkpoint.* in \S+\.r\.partial; resume with: .*--resume$/);
      expect(entries(experiments, 'early')).toEqual(['.r.partial']);
      expect(existsSync(join(experiments, 'early', '.r.partial', 'checkpoint', 'state.json'))).toBe(true);
    }
  });

  it('while the data loads stops at once and writes nothing', async () => {
    const images = join(cwd, 'many-images');
    await makeFolder(images, 40);
    const args = ['--experiment-name', 'loading', '--run-name', 'r', ...quickImageFolderArgs(images)];
    // The backend line comes just before the 120 images are decoded.
    const r = await runInterrupted(args, cwd, [/^backend: /m]);
    expect(r.code, r.all).toBe(130);
    expect(lastLine(r.stderr)).toBe(
      'image-classifier-trainer: interrupted before training started; no run was written',
    );
    expect(entries(experiments, 'loading')).toEqual([]);
  });
});

describe('the progress bar on a terminal', () => {
  it('and a Ctrl-C notice never overwrite each other, and an unknown ETA reads --', async () => {
    // A terminal as the bar sees one: a TTY stream whose bytes are kept.
    const terminal = Object.assign(new PassThrough(), { isTTY: true, columns: 200 });
    let bytes = '';
    terminal.on('data', (d: Buffer) => (bytes += d.toString()));
    const stream = terminal as unknown as NodeJS.WriteStream;
    const bar = terminalProgress(stream)('epoch 1/2', 100, 'images');
    bar.update(10, { loss: '2.3' });
    notice('SIGINT: stopping after this step', stream);
    await new Promise((r) => setTimeout(r, 250));
    bar.update(20, { loss: '2.2' });
    bar.stop();
    notice('interrupted in epoch 1 after 2 steps; checkpoint saved', stream);
    // No cursor save/restore: cli-progress jumped back to where the bar began and overwrote the notice.
    expect(bytes).not.toContain('\x1b7');
    expect(bytes).not.toContain('\x1b8');
    expect(bytes).not.toMatch(/LLs/);
    expect(bytes).toMatch(/ETA -- \|/);
    // Each notice starts on a cleared line and ends it; the bar is drawn again below the first.
    expect(bytes).toContain('\r\x1b[2KSIGINT: stopping after this step\n');
    const afterNotice = bytes.slice(bytes.indexOf('SIGINT: stopping after this step\n'));
    expect(afterNotice.startsWith('SIGINT: stopping after this step\n\x1b[1Gepoch 1/2 [')).toBe(true);
    expect(bytes.endsWith('interrupted in epoch 1 after 2 steps; checkpoint saved\n')).toBe(true);
  });
});

describe('losing work', () => {
  const cwd = tempFolder();
  const experiments = join(cwd, 'experiments');
  const fullDisk = (path: string, after: number): NodeJS.ProcessEnv => ({
    NODE_OPTIONS: `--import ${FULL_DISK}`,
    FULL_DISK_PATH: path,
    FULL_DISK_AFTER: String(after),
  });

  it("a disk that fills while epoch 2's checkpoint is written keeps epoch 1's to resume from", async () => {
    const args = ['--experiment-name', 'disk', '--run-name', 'ckpt', ...QUICK, '--epochs', '2'];
    const r = await runCli(args, { cwd, env: fullDisk('checkpoint\\.tmp/weights\\.bin$', 1) });
    expect(r.code, r.stderr).toBe(1);
    expect(messages(r.stderr)).toHaveLength(1);
    expect(lastLine(r.stderr)).toMatch(
      /^image-classifier-trainer: cannot write the checkpoint of epoch 2 \(ENOSPC: no space left on device\); the checkpoint of the end of epoch 1 is kept in \S+\.ckpt\.partial; resume with: image-classifier-trainer --experiment-name disk --run-name ckpt --resume$/,
    );
    expect(entries(experiments, 'disk')).toEqual(['.ckpt.partial']);
    // The half-written checkpoint was removed; the good one is whole.
    expect(readdirSync(join(experiments, 'disk', '.ckpt.partial')).sort()).toEqual([
      'checkpoint',
      'train.log',
    ]);
    const state = JSON.parse(
      readFileSync(join(experiments, 'disk', '.ckpt.partial', 'checkpoint', 'state.json'), 'utf8'),
    ) as { state: { epoch: number }; reason: string };
    expect([state.state.epoch, state.reason]).toEqual([1, 'epoch-end']);

    const resumed = await runCli(['--experiment-name', 'disk', '--run-name', 'ckpt', '--resume'], { cwd });
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(/resumed: epoch 1/);
    expect(entries(experiments, 'disk')).toEqual(['ckpt']);
  });

  it('a disk that fills while the finished run is written keeps its last checkpoint: resuming only writes it', async () => {
    const args = ['--experiment-name', 'disk', '--run-name', 'files', ...QUICK, '--epochs', '2'];
    const r = await runCli(args, { cwd, env: fullDisk('/model/weights\\.bin$', 0) });
    expect(r.code, r.stderr).toBe(1);
    expect(messages(r.stderr)).toHaveLength(1);
    expect(lastLine(r.stderr)).toMatch(
      /cannot write the run's files \(ENOSPC: no space left on device\); the checkpoint of the end of epoch 2 is kept in \S+\.files\.partial; resume with: .*--run-name files --resume$/,
    );
    expect(entries(experiments, 'disk')).toContain('.files.partial');
    expect(entries(experiments, 'disk').filter((n) => n.includes('.tmp-'))).toEqual([]);

    const resumed = await runCli(['--experiment-name', 'disk', '--run-name', 'files', '--resume'], { cwd });
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(/resumed: epoch 2/);
    expect(resumed.stdout).not.toMatch(/^epoch \d\/2: train/m);
    expect(existsSync(join(experiments, 'disk', 'files', 'model', 'weights.bin'))).toBe(true);
    expect(entries(experiments, 'disk').filter((n) => n.includes('files'))).toEqual(['files']);
  });

  it('a run whose name another process completed meanwhile is kept beside it, not deleted', async () => {
    const args = ['--experiment-name', 'race', '--run-name', 'r', ...QUICK, '--epochs', '2'];
    const other = join(experiments, 'race', 'r');
    const r = await runInterrupted(args, cwd, [
      [
        /epoch 1\/2: train loss/,
        () => {
          // The other process's finished run appears under the same name.
          mkdirSync(other, { recursive: true });
          writeFileSync(join(other, 'run.json'), '{"other":true}');
        },
      ],
    ]);
    expect(r.code, r.all).toBe(1);
    expect(lastLine(r.stderr)).toMatch(
      /^image-classifier-trainer: another process completed a run named r in \S+race while this one trained; this run is complete too and was kept as \S+race\/r-duplicate-1$/,
    );
    expect(entries(experiments, 'race')).toEqual(['r', 'r-duplicate-1']);
    expect(readFileSync(join(other, 'run.json'), 'utf8')).toBe('{"other":true}');
    expect(readdirSync(join(experiments, 'race', 'r-duplicate-1'))).not.toContain('checkpoint');
    const verify = await runCli(['verify', 'race/r-duplicate-1'], { cwd });
    expect(verify.code, verify.stdout).toBe(0);
  });

  it('two runs of one name started at once: one is the run, the other is refused or kept, none is lost', async () => {
    const args = ['--experiment-name', 'twin', '--run-name', 'r', ...QUICK, '--epochs', '1'];
    const [a, b] = await Promise.all([runCli(args, { cwd }), runCli(args, { cwd })]);
    const codes = [a.code, b.code].sort();
    // Whichever checks first trains; the other is refused before it starts (2) when it sees the
    // first one's folder, or, when both started before either had one, finishes and is kept beside it (1).
    expect(codes[0], a.stderr + b.stderr).toBe(0);
    expect([1, 2]).toContain(codes[1]);
    const loser = a.code === 0 ? b : a;
    expect(
      loser.stderr
        .trim()
        .split('\n')
        .filter((l) => l.startsWith('image-classifier-trainer:')),
    ).toHaveLength(1);
    const left = entries(experiments, 'twin');
    expect(left).toEqual(codes[1] === 1 ? ['r', 'r-duplicate-1'] : ['r']);
    for (const run of left) {
      const verify = await runCli(['verify', `twin/${run}`], { cwd });
      expect(verify.code, verify.stdout).toBe(0);
    }
    if (codes[1] === 1)
      expect(loser.stderr).toMatch(/this run is complete too and was kept as \S+r-duplicate-1$/m);
  });

  it('a second process on the run name being trained is refused at once', async () => {
    const args = ['--experiment-name', 'busy', '--run-name', 'r', ...QUICK, '--epochs', '2'];
    let second: Promise<CliResult> | undefined;
    const first = await runInterrupted(args, cwd, [
      [/epoch 1\/2: \d+\/1800 images/, () => (second = runCli(args, { cwd }))],
    ]);
    const refused = await second!;
    expect(refused.code, refused.stderr).toBe(2);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toMatch(
      /--run-name r: busy\/r is being trained by process \d+ \(its folder: \S+\.r\.tmp-\d+-\d+\)/,
    );
    expect(first.code, first.all).toBe(0);
    expect(entries(experiments, 'busy')).toEqual(['r']);
  });
});

describe('training that cannot work', () => {
  const cwd = tempFolder();
  const experiments = join(cwd, 'experiments');

  it('a diverging run (loss NaN) stops with one line, exit 1, and says what to try', async () => {
    const r = await runCli(
      [
        '--experiment-name',
        'nan',
        '--run-name',
        'r',
        ...QUICK,
        '--epochs',
        '2',
        '--learning-rate',
        '100',
        '--lr-schedule',
        'constant',
      ],
      { cwd },
    );
    expect(r.code, r.stdout).toBe(1);
    expect(messages(r.stderr)).toHaveLength(1);
    expect(lastLine(r.stderr)).toMatch(
      /^image-classifier-trainer: training diverged: the training loss became (NaN|-?Infinity) in epoch 1, step \d+ of 57 \(learning rate 100\); try a lower --learning-rate than 100 \(e\.g\. 25\); nothing was kept \(resuming would repeat the same steps\)$/,
    );
    expect(r.stdout).not.toMatch(/^done:/m);
    expect(entries(experiments, 'nan')).toEqual([]);
  });

  it('too few steps an epoch for the recipe gets a warning naming a batch size that fits', async () => {
    const r = await runCli(
      ['--experiment-name', 'few', '--run-name', 'r', ...QUICK, '--epochs', '1', '--batch-size', '256'],
      { cwd },
    );
    expect(r.code, r.stderr).toBe(0);
    const warning =
      'warning: 8 steps an epoch (1800 training images, --batch-size 256), 8 in all: too few for this recipe to train the model (it may end near chance); try a smaller --batch-size (e.g. 32: 57 steps an epoch) or more --epochs';
    expect(r.stdout.split('\n')).toContain(warning);
    expect(readFileSync(join(experiments, 'few', 'r', 'train.log'), 'utf8')).toContain(warning);
  });
});

describe('train() onEpoch', () => {
  const experiments = join(tempFolder(), 'experiments');
  const config = (runName: string) => ({
    experimentName: 'lib',
    runName,
    experimentsFolder: experiments,
    dataset: 'synthetic' as const,
    model: 'net' as const,
    epochs: 2,
    batchSize: 32,
    learningRate: 0.05,
  });

  it("is called after each epoch with that epoch's metrics", async () => {
    const seen: EpochMetrics[] = [];
    const result = await train(config('cb'), { onEpoch: (metrics) => void seen.push(metrics) });
    expect(seen.map((m) => m.epoch)).toEqual([1, 2]);
    expect(seen).toEqual(result.metrics.history);
    for (const m of seen) expect(Number.isFinite(m.validationAccuracy)).toBe(true);
  });

  it('a throw from it fails the run and keeps the checkpoint to resume', async () => {
    const promise = train(config('cb-throws'), {
      onEpoch: () => {
        throw new Error('dashboard unreachable');
      },
    });
    await expect(promise).rejects.toThrow(
      /^dashboard unreachable; the checkpoint of the end of epoch 1 is kept in \S+\.cb-throws\.partial; resume with: .*--resume$/,
    );
    expect(entries(experiments, 'lib').filter((n) => n.includes('cb-throws'))).toEqual([
      '.cb-throws.partial',
    ]);
  });
});

describe('sweeps', () => {
  const cwd = tempFolder();
  const experiments = join(cwd, 'experiments');

  it('rerun with another --model refuses instead of passing off the old trials as its own', async () => {
    const file = join(cwd, 'models.yaml');
    await writeFile(file, 'method: grid\nparameters:\n  learning_rate: {values: [0.02, 0.05]}\n');
    const args = ['sweep', file, '--dataset', 'synthetic', '--epochs', '1', '--batch-size', '64'];
    const first = await runCli([...args, '--model', 'net'], { cwd });
    expect(first.code, first.stderr).toBe(0);
    const before = readFileSync(join(experiments, 'models', 'trial-01', 'run.json'), 'utf8');

    const other = await runCli([...args, '--model', 'vgg'], { cwd });
    expect(other.code, other.stdout).toBe(2);
    expect(other.stderr.trim().split('\n')).toHaveLength(1);
    expect(lastLine(other.stderr)).toMatch(
      /sweep models: trial-01 in \S+models is not this sweep's trial: --model net there, vgg now \(and 1 more trial\); nothing was trained: pass --experiment-name <new name> to run this sweep as a new experiment, or delete \S+trial-01$/,
    );
    expect(other.stdout).not.toMatch(/already finished, skipped/);
    expect(readFileSync(join(experiments, 'models', 'trial-01', 'run.json'), 'utf8')).toBe(before);
    expect(entries(experiments, 'models')).toEqual(['comparison.png', 'sweep.json', 'trial-01', 'trial-02']);

    // The same flags again: the trials are this sweep's, and skipped.
    const same = await runCli([...args, '--model', 'net'], { cwd });
    expect(same.code, same.stderr).toBe(0);
    expect(same.stdout.match(/already finished, skipped/g)).toHaveLength(2);
  });

  it('rerun after the image folder changed refuses: the trials were trained on other data', async () => {
    const images = join(cwd, 'images');
    await makeFolder(images, 8);
    const file = join(cwd, 'data.yaml');
    await writeFile(file, 'method: grid\nparameters:\n  seed: {values: [0]}\n');
    const args = ['sweep', file, ...quickImageFolderArgs(images, '--epochs', '1')];
    const first = await runCli(args, { cwd });
    expect(first.code, first.stderr).toBe(0);
    // One more image in a class folder.
    await sharp({ create: { width: 24, height: 24, channels: 3, background: { r: 200, g: 20, b: 20 } } })
      .jpeg()
      .toFile(join(images, 'red', 'extra.jpg'));
    const again = await runCli(args, { cwd });
    expect(again.code, again.stdout).toBe(2);
    expect(again.stderr).toMatch(
      /trial-01 in \S+ is not this sweep's trial: trained on other data \(.*listing.* checksum differs\)/,
    );
    expect(entries(experiments, 'data')).toEqual(['comparison.png', 'sweep.json', 'trial-01']);
  });

  it('a grid of a million trials is refused; one of 10^8 with run_cap 2 gives two', async () => {
    const hundred = `[${Array.from({ length: 100 }, (_, i) => i + 1).join(', ')}]`;
    const huge = join(cwd, 'huge.yaml');
    await writeFile(
      huge,
      `method: grid\nparameters:\n  seed: {values: ${hundred}}\n  epochs: {values: ${hundred}}\n  random_crop: {values: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]}\n  batch_size: {values: [${Array.from({ length: 10 }, (_, i) => i + 1).join(', ')}]}\n`,
    );
    const refused = await runCli(['sweep', huge, '--matrix'], { cwd });
    expect(refused.code).toBe(2);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toMatch(
      /huge\.yaml: its grid has 1,000,000 trials \(100 x 100 x 10 x 10 values\), more than the 1,000 a sweep may run; list fewer values or set run_cap/,
    );

    const capped = join(cwd, 'capped.yaml');
    await writeFile(
      capped,
      `method: grid\nrun_cap: 2\nparameters:\n  seed: {values: ${hundred}}\n  epochs: {values: ${hundred}}\n  warmup_fraction: {values: [${Array.from({ length: 100 }, (_, i) => i / 100).join(', ')}]}\n  batch_size: {values: ${hundred}}\n`,
    );
    const r = await runCli(['sweep', capped, '--matrix'], { cwd });
    expect(r.code, r.stderr).toBe(0);
    const matrix = JSON.parse(r.stdout) as { include: Array<{ trial: string; params: string }> };
    expect(matrix.include.map((t) => [t.trial, t.params])).toEqual([
      ['trial-01', '--seed 1 --epochs 1 --warmup-fraction 0 --batch-size 1'],
      ['trial-02', '--seed 1 --epochs 1 --warmup-fraction 0 --batch-size 2'],
    ]);
  });

  it('Ctrl-C while a trial starts reports it interrupted (exit 130), not failed', async () => {
    const file = join(cwd, 'stop.yaml');
    await writeFile(file, 'method: grid\nparameters:\n  learning_rate: {values: [0.02, 0.05]}\n');
    const args = ['sweep', file, ...QUICK, '--epochs', '1'];
    // Sent as the first trial's process is being started.
    const r = await runInterrupted(args, cwd, [/trial-01 \(--learning-rate 0\.02\): training/]);
    expect(r.code, r.all).toBe(130);
    expect(r.stdout).toMatch(/^trial-01: interrupted after [\d.]+ s/m);
    expect(r.stdout).toMatch(/^interrupted: trial-01, trial-02 \(rerun the same command to resume\)$/m);
    expect(r.stdout).not.toMatch(/failed/);
    expect(entries(experiments, 'stop').filter((n) => n.includes('.tmp-'))).toEqual([]);
    const summary = JSON.parse(readFileSync(join(experiments, 'stop', 'sweep.json'), 'utf8')) as {
      trials: Array<{ status: string }>;
    };
    expect(summary.trials.map((t) => t.status)).toEqual(['interrupted', 'interrupted']);
  });
});

describe('reproduce and runs', () => {
  const cwd = tempFolder();
  const experiments = join(cwd, 'experiments');
  const trainRun = (experiment: string, run: string, ...extra: string[]) =>
    runCli(['--experiment-name', experiment, '--run-name', run, ...QUICK, '--epochs', '1', ...extra], {
      cwd,
    });

  it('reproduce of a run whose metrics.json was edited names the edit instead of blaming the package', async () => {
    expect((await trainRun('edited', 'r')).code).toBe(0);
    const metricsFile = join(experiments, 'edited', 'r', 'metrics.json');
    const metrics = JSON.parse(readFileSync(metricsFile, 'utf8')) as { test: { accuracy: number } };
    metrics.test.accuracy = 0.999;
    writeFileSync(metricsFile, JSON.stringify(metrics, null, 2));

    const r = await runCli(['reproduce', 'edited/r'], { cwd });
    expect(r.code, r.stderr).toBe(3);
    expect(r.stdout).toMatch(
      /warning: edited\/r's files changed since it was written \(metrics\.json changed\)/,
    );
    expect(lastLine(r.stdout)).toBe(
      "not identical: the original run's files changed since it was written (metrics.json changed; see `verify edited/r`)",
    );
    expect(r.stdout).not.toMatch(/bug/);
  });

  it('runs shows one epochs column and learning rates in a few digits', async () => {
    expect((await trainRun('table', 'a', '--learning-rate', '0.012345678901234567')).code).toBe(0);
    expect((await trainRun('table', 'b', '--epochs', '2')).code).toBe(0);
    const r = await runCli(['runs', 'table', '--no-chart'], { cwd });
    expect(r.code, r.stderr).toBe(0);
    const [header, , a, b] = r.stdout.split('\n');
    expect(header!.split(/\s{2,}/)).toEqual([
      'run',
      'status',
      'learningRate',
      'test acc',
      'val acc',
      'epochs',
      'train s',
      'img/s',
      'backend',
    ]);
    expect(a).toMatch(/^a\s+completed\s+0\.01235\s+[\d.]+%\s+[\d.]+%\s+1\s/);
    expect(b).toMatch(/^b \*?\s*completed\s+0\.05\s+[\d.]+%\s+[\d.]+%\s+2\s/);
    expect(r.stdout).not.toMatch(/\d{8,}/);
  });

  it('runs refuses an experiment path that leaves the experiments folder', async () => {
    await mkdir(join(cwd, 'outside'), { recursive: true });
    for (const name of ['../outside', '/tmp', '.']) {
      const r = await runCli(['runs', name], { cwd });
      expect(r.code, name).toBe(2);
      expect(r.stderr.trim().split('\n'), name).toHaveLength(1);
      expect(r.stderr, name).toMatch(
        /not an experiment name \(one folder inside \.\/experiments, without "\/" or "\.\."\)/,
      );
    }
    expect(readdirSync(join(cwd, 'outside'))).toEqual([]);
    expect(existsSync(join(cwd, 'comparison.png'))).toBe(false);
  });
});

describe('sweep files that are not files', () => {
  it('a device or a FIFO as the sweep file is refused at once (exit 2), not read forever', async () => {
    const cwd = tempFolder();
    const fifo = join(cwd, 'sweep.yaml');
    spawn('mkfifo', [fifo]).on('exit', () => undefined);
    await new Promise((r) => setTimeout(r, 200));
    for (const file of ['/dev/zero', fifo]) {
      const r = await runCli(['sweep', file], { cwd });
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr.trim()).toBe(
        `image-classifier-trainer: sweep file ${file}: cannot read it (not a regular file)`,
      );
    }
    expect(readdirSync(cwd)).toEqual(['sweep.yaml']);
  });
});
