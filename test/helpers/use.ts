// Fixtures for the tests of evaluate, predict and serve: one quick run on a folder of coloured JPEGs,
// and images made to order (good, truncated, not images at all).
import { join } from 'node:path';
import sharp from 'sharp';
import { runCli, tempFolder } from './cli.js';
import { makeFolder, quickImageFolderArgs } from './images.js';

export interface QuickRun {
  /** Working directory of the CLI calls (experiments/ and data/ are under it). */
  cwd: string;
  experiments: string;
  /** The training images: <images>/{blue,green,red}/<i>.jpg. */
  images: string;
  /** '<experiment>/<run>' */
  run: string;
}

/** Trains `net` for 2 epochs on 3 colour classes through the CLI (a few seconds). */
export async function quickRun(perClass = 20): Promise<QuickRun> {
  const cwd = tempFolder('ic-use-');
  const images = join(cwd, 'images');
  await makeFolder(images, perClass);
  const { code, stderr } = await runCli(
    [
      '--experiment-name',
      'colours',
      '--run-name',
      'r1',
      ...quickImageFolderArgs(images, '--backend', 'wasm'),
    ],
    { cwd },
  );
  if (code !== 0) throw new Error(`training the fixture run failed (${code}): ${stderr}`);
  return { cwd, experiments: join(cwd, 'experiments'), images, run: 'colours/r1' };
}

/** A PNG of random pixels (not a solid colour, so it does not compress to nothing). */
export function noisePng(width = 48, height = 40, seed = 1): Promise<Buffer> {
  const pixels = Buffer.alloc(width * height * 3);
  let s = seed;
  for (let i = 0; i < pixels.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    pixels[i] = s >>> 24;
  }
  return sharp(pixels, { raw: { width, height, channels: 3 } })
    .png()
    .toBuffer();
}

/** A solid-colour image in any format sharp writes. */
export function solidImage(
  rgb: [number, number, number],
  format: 'png' | 'jpeg' | 'webp' | 'gif' | 'tiff',
  size = 24,
): Promise<Buffer> {
  const [r, g, b] = rgb;
  return sharp({ create: { width: size, height: size, channels: 3, background: { r, g, b } } })
    .toFormat(format)
    .toBuffer();
}

/** Lines of stderr that are ours (native libraries may print their own warnings there). */
export function ourLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.startsWith('image-classifier-trainer:'));
}
