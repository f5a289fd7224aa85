import { mkdir, mkdtemp, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ImageSet } from '../src/data/dataset.js';
import { loadImageFolder, type ImageFolderOptions } from '../src/data/image-folder.js';
import { loadDataset } from '../src/data/load.js';
import { silentProgress, type ProgressFactory } from '../src/reports/progress.js';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'ic-imagefolder-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

type Rgb = [number, number, number];

async function png(
  file: string,
  colour: Rgb,
  size: { width: number; height: number } = { width: 8, height: 8 },
): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  await sharp({ create: { ...size, channels: 3, background: { r: colour[0], g: colour[1], b: colour[2] } } })
    .png()
    .toFile(file);
}

function pixel(set: ImageSet, index: number, y = 0, x = 0): Rgb {
  const at = ((index * set.height + y) * set.width + x) * set.channels;
  return [set.images[at]!, set.images[at + 1]!, set.images[at + 2]!];
}

function options(folder: string, extra: Partial<ImageFolderOptions> = {}): ImageFolderOptions {
  return {
    folder,
    imageSize: { height: 8, width: 8 },
    validationSplitForTest: 0.2,
    seed: 1,
    numWorkers: 3,
    cacheFolder: path.join(tmp, 'cache'),
    progress: silentProgress,
    log: () => {},
    ...extra,
  };
}

/** Records which progress bars were started. */
function recordingProgress(): { factory: ProgressFactory; started: string[] } {
  const started: string[] = [];
  return {
    started,
    factory: (label, total) => (started.push(`${label}:${total}`), { update() {}, stop() {} }),
  };
}

describe('image folder with train/ and test/', () => {
  let root: string;
  beforeAll(async () => {
    root = path.join(tmp, 'split-layout');
    await png(path.join(root, 'train/dog/1.png'), [200, 10, 10]);
    await png(path.join(root, 'train/dog/2.PNG'), [190, 20, 20], { width: 12, height: 10 }); // resized, upper-case extension
    await png(path.join(root, 'train/cat/a.png'), [10, 200, 10]);
    await png(path.join(root, 'train/cat/b.png'), [20, 190, 20]);
    await png(path.join(root, 'train/frog/x.png'), [10, 10, 200]);
    // Greyscale and RGBA sources still give 3 channels.
    await mkdir(path.join(root, 'train/frog'), { recursive: true });
    await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 100, g: 100, b: 100 } } })
      .greyscale()
      .png()
      .toFile(path.join(root, 'train/frog/grey.png'));
    await sharp({
      create: { width: 8, height: 8, channels: 4, background: { r: 30, g: 60, b: 90, alpha: 0.5 } },
    })
      .png()
      .toFile(path.join(root, 'train/frog/rgba.png'));
    await writeFile(path.join(root, 'train/frog/notes.txt'), 'not an image');
    await png(path.join(root, 'test/cat/t.png'), [0, 255, 0]);
    await png(path.join(root, 'test/dog/t.png'), [255, 0, 0]);
    await mkdir(path.join(root, 'test/frog'), { recursive: true });
    await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 0, g: 0, b: 255 } } })
      .jpeg({ quality: 100 })
      .toFile(path.join(root, 'test/frog/t.jpg'));
  });

  it('decodes every image to RGB at the requested size, classes sorted, files in name order', async () => {
    const progress = recordingProgress();
    const lines: string[] = [];
    const dataset = await loadImageFolder(
      options(root, { progress: progress.factory, log: (l) => lines.push(l) }),
    );
    expect(dataset.kind).toBe('image-folder');
    expect(dataset.source).toBe(root);
    expect(dataset.classNames).toEqual(['cat', 'dog', 'frog']);
    expect(dataset.train).toMatchObject({ count: 7, height: 8, width: 8, channels: 3 });
    expect(dataset.test).toMatchObject({ count: 3, height: 8, width: 8, channels: 3 });
    expect(Array.from(dataset.train.labels)).toEqual([0, 0, 1, 1, 2, 2, 2]);
    expect(Array.from(dataset.test.labels)).toEqual([0, 1, 2]);
    expect(pixel(dataset.train, 0)).toEqual([10, 200, 10]); // cat/a.png
    expect(pixel(dataset.train, 3, 7, 7)).toEqual([190, 20, 20]); // dog/2.PNG, resized from 12x10
    expect(pixel(dataset.train, 4)).toEqual([100, 100, 100]); // frog/grey.png
    expect(pixel(dataset.train, 5)).toEqual([30, 60, 90]); // frog/rgba.png, alpha dropped
    expect(pixel(dataset.train, 6)).toEqual([10, 10, 200]); // frog/x.png
    const jpegBlue = pixel(dataset.test, 2);
    expect(jpegBlue[2]).toBeGreaterThan(240);
    expect(dataset.checksums.decoded).toMatch(/^[0-9a-f]{64}$/);
    expect(progress.started).toEqual(['Decoding images:10']);
    expect(lines.join('\n')).toMatch(/Skipped 1 entries/);
  });

  it('reads the decode cache on the second load, and decodes again when a file changes', async () => {
    const cacheFolder = path.join(tmp, 'cache-reuse');
    const victim = path.join(root, 'train/cat/b.png');
    const mtime = new Date(1_700_000_000_000); // whole milliseconds, so it can be restored exactly
    await utimes(victim, mtime, mtime);
    const first = await loadImageFolder(options(root, { cacheFolder }));
    expect(await readdir(path.join(cacheFolder, 'image-folder-cache'))).toHaveLength(1);

    // Overwrite one image with garbage of the same size and restore its mtime: only a load that
    // trusts the cache can still succeed.
    await writeFile(victim, Buffer.alloc((await stat(victim)).size, 0x41));
    await utimes(victim, mtime, mtime);

    const progress = recordingProgress();
    const lines: string[] = [];
    const second = await loadImageFolder(
      options(root, { cacheFolder, progress: progress.factory, log: (l) => lines.push(l) }),
    );
    expect(progress.started).toEqual([]);
    expect(lines.join('\n')).toMatch(/from the cache/);
    expect(second.checksums).toEqual(first.checksums);
    expect(Buffer.compare(second.train.images, first.train.images)).toBe(0);

    // A new mtime misses the cache, and the garbage file is then reported by name.
    await utimes(victim, new Date(), new Date());
    await expect(loadImageFolder(options(root, { cacheFolder }))).rejects.toThrow(
      /^1 image could not be read: train\/cat\/b\.png \(/,
    );
    await png(victim, [20, 190, 20]);
  });

  it('requires the same classes in train/ and test/', async () => {
    const other = path.join(tmp, 'mismatch');
    await png(path.join(other, 'train/a/1.png'), [1, 2, 3]);
    await png(path.join(other, 'train/b/1.png'), [1, 2, 3]);
    await png(path.join(other, 'test/a/1.png'), [1, 2, 3]);
    await png(path.join(other, 'test/c/1.png'), [1, 2, 3]);
    await expect(loadImageFolder(options(other))).rejects.toThrow(/only in train\/: b; only in test\/: c/);
  });
});

describe('broken images', () => {
  it('lists unreadable files by name and count, and caches nothing', async () => {
    const root = path.join(tmp, 'broken');
    for (let i = 0; i < 3; i++) await png(path.join(root, `train/cat/${i}.png`), [i, i, i]);
    await png(path.join(root, 'train/dog/ok.png'), [9, 9, 9]);
    await mkdir(path.join(root, 'test/cat'), { recursive: true });
    await png(path.join(root, 'test/dog/ok.png'), [9, 9, 9]);
    await writeFile(path.join(root, 'train/cat/bad.png'), 'this is text, not a PNG');
    await writeFile(path.join(root, 'train/dog/empty.jpg'), '');
    const cacheFolder = path.join(tmp, 'cache-broken');
    const error = await loadImageFolder(options(root, { cacheFolder })).catch((e: unknown) => e as Error);
    expect(error).toBeInstanceOf(Error);
    const message = (error as Error).message;
    expect(message).toMatch(
      /^2 images could not be read: train\/cat\/bad\.png \(.+\), train\/dog\/empty\.jpg \(.+\)$/,
    );
    expect(message).not.toContain('\n');
    const cached = await readdir(path.join(cacheFolder, 'image-folder-cache')).catch(() => []);
    expect(cached).toEqual([]);
  });
});

describe('single image folder', () => {
  let root: string;
  beforeAll(async () => {
    root = path.join(tmp, 'single');
    for (const [c, name] of ['ant', 'bee', 'cow'].entries()) {
      for (let i = 0; i < 10; i++)
        await png(path.join(root, name, `${String(i).padStart(2, '0')}.png`), [c * 60, i * 20, 7]);
    }
  });

  it('holds out a seeded, per-class fraction as the test split, the same every time', async () => {
    const a = await loadImageFolder(options(root, { seed: 7, numWorkers: 1 }));
    const b = await loadImageFolder(
      options(root, { seed: 7, numWorkers: 8, cacheFolder: path.join(tmp, 'cache-single') }),
    );
    expect(a.classNames).toEqual(['ant', 'bee', 'cow']);
    expect(a.train.count).toBe(24);
    expect(a.test.count).toBe(6);
    expect(Array.from(a.test.labels)).toEqual([0, 0, 1, 1, 2, 2]);
    expect(Buffer.compare(a.test.images, b.test.images)).toBe(0);
    expect(Buffer.compare(a.train.images, b.train.images)).toBe(0);
    expect(a.checksums.decoded).toBe(b.checksums.decoded);

    const c = await loadImageFolder(options(root, { seed: 8 }));
    expect(Buffer.compare(a.test.images, c.test.images)).not.toBe(0);
    // Train and test never share an image.
    const key = (set: ImageSet, i: number) => pixel(set, i).join(',');
    const trainKeys = new Set(Array.from({ length: a.train.count }, (_, i) => key(a.train, i)));
    for (let i = 0; i < a.test.count; i++) expect(trainKeys.has(key(a.test, i))).toBe(false);
  });

  it('needs a usable test fraction when there is no test/ folder', async () => {
    await expect(loadImageFolder(options(root, { validationSplitForTest: 0 }))).rejects.toThrow(
      /no test\/ folder/,
    );
  });
});

describe('loadDataset with image-folder', () => {
  it('requires --dataset-folder', async () => {
    await expect(
      loadDataset({
        dataset: 'image-folder',
        cacheFolder: tmp,
        imageSize: { height: 8, width: 8 },
        seed: 1,
        numWorkers: 1,
        progress: silentProgress,
        log: () => {},
      }),
    ).rejects.toThrow('--dataset-folder is required with --dataset image-folder');
  });

  it('passes the folder, size and test split through', async () => {
    const root = path.join(tmp, 'via-load');
    for (let i = 0; i < 4; i++) {
      await png(path.join(root, 'x', `${i}.png`), [i, 0, 0], { width: 5, height: 5 });
      await png(path.join(root, 'y', `${i}.png`), [0, i, 0], { width: 5, height: 5 });
    }
    const dataset = await loadDataset({
      dataset: 'image-folder',
      datasetFolder: root,
      cacheFolder: path.join(tmp, 'cache-load'),
      imageSize: { height: 4, width: 6 },
      seed: 3,
      numWorkers: 2,
      testSplit: 0.5,
      progress: silentProgress,
      log: () => {},
    });
    expect(dataset.train).toMatchObject({ count: 4, height: 4, width: 6, channels: 3 });
    expect(dataset.test.count).toBe(4);
  });
});
