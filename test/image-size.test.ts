// --image-size and the third model, `resnet`: image folders are decoded at the size asked for, every
// model builds for it, the size goes into run.json and model.json, and the trained run predicts on
// images of any size (they are resized to it). CIFAR-10 is 32x32 and says so.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildModel } from '../src/index.js';
import { stemPools } from '../src/models/resnet.js';
import { runCli, tempFolder } from './helpers/cli.js';
import { makeFolder, quickImageFolderArgs } from './helpers/images.js';

describe('--image-size and resnet', () => {
  const cwd = tempFolder('ic-size-');
  const images = join(cwd, 'images');
  beforeAll(async () => makeFolder(images, 20));

  it('every model builds for 32 to 256 px and gives one logit per class', () => {
    for (const name of ['net', 'vgg', 'resnet'] as const) {
      for (const size of [32, 64, 96]) {
        const model = buildModel(name, { inputShape: [size, size, 3], numClasses: 7, seed: 1 });
        expect(model.outputs[0]!.shape, `${name} at ${size}`).toEqual([null, 7]);
        model.dispose();
      }
    }
    // The residual network pools larger inputs down to about 32 px before its stages.
    expect([32, 64, 96, 128, 256].map(stemPools)).toEqual([0, 1, 2, 2, 3]);
  });

  for (const model of ['resnet', 'vgg']) {
    it(`trains ${model} on an image folder at 64 px, records the size, and predicts`, async () => {
      const train = await runCli(
        [
          '--experiment-name',
          'size',
          '--run-name',
          model,
          ...quickImageFolderArgs(images, '--model', model, '--image-size', '64', '--epochs', '1'),
        ],
        { cwd },
      );
      expect(train.code, train.stderr).toBe(0);
      const run = join(cwd, 'experiments', 'size', model);
      const manifest = JSON.parse(readFileSync(join(run, 'run.json'), 'utf8')) as {
        config: { imageSize: number; model: string };
        preprocessing: { inputShape: number[] };
      };
      expect(manifest.config).toMatchObject({ imageSize: 64, model });
      expect(manifest.preprocessing.inputShape).toEqual([64, 64, 3]);
      const modelJson = JSON.parse(readFileSync(join(run, 'model/model.json'), 'utf8')) as {
        userDefinedMetadata: { imageClassifier: { inputShape: number[] } };
      };
      expect(modelJson.userDefinedMetadata.imageClassifier.inputShape).toEqual([64, 64, 3]);
      // A 20 px image of the folder: resized to 64 px to be classified.
      const predict = await runCli(['predict', `size/${model}`, join(images, 'red', '0.jpg'), '--json'], {
        cwd,
      });
      expect(predict.code, predict.stderr).toBe(0);
      const row = JSON.parse(predict.stdout.trim().split('\n')[0]!) as { top: Array<{ label: string }> };
      expect(['red', 'green', 'blue']).toContain(row.top[0]!.label);
    }, 120_000);
  }

  it('refuses another size for CIFAR-10 in one line (exit 2)', async () => {
    const r = await runCli(['--experiment-name', 'c', '--run-name', 'r', '--image-size', '64'], { cwd });
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe(
      'image-classifier-trainer: --image-size 64: CIFAR-10 images are 32x32 (train on them at 32, or on an image folder at any size)',
    );
  });
});
