// Image-folder fixtures: <root>/<class>/<i>.jpg of solid colours, a few sizes.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';

const CLASSES: Record<string, [number, number, number]> = {
  red: [220, 30, 30],
  green: [30, 200, 40],
  blue: [40, 40, 230],
};

/** Writes `perClass` JPEGs for each of three colour classes (red, green, blue). */
export async function makeFolder(root: string, perClass: number): Promise<void> {
  for (const [name, [r, g, b]] of Object.entries(CLASSES)) {
    await mkdir(join(root, name), { recursive: true });
    for (let i = 0; i < perClass; i++) {
      // Different sizes on purpose: the trainer resizes to the model's 32x32 input.
      const size = 20 + (i % 3) * 10;
      const shade = (i * 7) % 40;
      await sharp({
        create: { width: size, height: size, channels: 3, background: { r: r - shade, g: g - shade, b } },
      })
        .jpeg()
        .toFile(join(root, name, `${i}.jpg`));
    }
  }
}

/**
 * Flags for a quick `net` run on an image folder made by makeFolder: a few seconds for 2 epochs.
 * `extra` flags follow (and override) them.
 */
export function quickImageFolderArgs(images: string, ...extra: string[]): string[] {
  return [
    '--dataset',
    'image-folder',
    '--dataset-folder',
    images,
    '--model',
    'net',
    '--epochs',
    '2',
    '--batch-size',
    '16',
    '--learning-rate',
    '0.05',
    ...extra,
  ];
}
