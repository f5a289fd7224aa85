// The CLI on a folder of images: trains from <root>/<class>/*, and names unreadable files.
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadRun } from '../src/runs/load-run.js';
import { runCli, tempFolder } from './helpers/cli.js';
import { makeFolder } from './helpers/images.js';

describe('image-classifier-trainer --dataset image-folder', () => {
  const cwd = tempFolder();
  const images = join(cwd, 'images');
  beforeAll(async () => makeFolder(images, 30));

  it('trains on <root>/<class>/* with a held-out test split', async () => {
    const args = [
      '--experiment-name',
      'colours',
      '--run-name',
      'r1',
      '--dataset',
      'image-folder',
      '--dataset-folder',
      images,
    ];
    const { code, stdout, stderr } = await runCli(
      [...args, '--model', 'net', '--epochs', '3', '--batch-size', '16', '--learning-rate', '0.05'],
      { cwd },
    );
    expect(code, stderr).toBe(0);
    expect(stdout).toMatch(/data: image-folder/);
    const run = await loadRun('colours/r1', join(cwd, 'experiments'));
    expect(run.manifest.dataset.classNames).toEqual(['blue', 'green', 'red']);
    expect(run.manifest.dataset.testImages).toBe(9); // 10% of 90
    expect(run.metrics.test.confusion).toHaveLength(3);
    expect(run.metrics.test.accuracy).toBeGreaterThan(0.6);
  });

  it('names an unreadable image in one line and writes no run', async () => {
    const broken = join(cwd, 'broken');
    await makeFolder(broken, 4);
    await writeFile(join(broken, 'red', 'not-an-image.jpg'), 'this is text');
    const args = [
      '--experiment-name',
      'broken',
      '--run-name',
      'r1',
      '--dataset',
      'image-folder',
      '--dataset-folder',
      broken,
      '--model',
      'net',
    ];
    const { code, stderr } = await runCli(args, { cwd });
    expect(code).toBe(1);
    // Progress lines may precede it; the error itself is one line, and the last.
    const lines = stderr.trim().split('\n');
    expect(lines.filter((l) => l.startsWith('image-classifier-trainer:'))).toHaveLength(1);
    expect(lines.at(-1)).toMatch(
      /^image-classifier-trainer: 1 image could not be read: red\/not-an-image\.jpg/,
    );
    expect(existsSync(join(cwd, 'experiments', 'broken'))).toBe(false);
  });
});
