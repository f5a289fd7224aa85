// A trained model travels alone: model.json carries the class names and the preprocessing, so plain
// @tensorflow/tfjs (examples/classify.mjs: no code of this package) loads it by URL from a static
// server and classifies as `predict` does.
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, normalize } from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModel, predict, train } from '../src/index.js';
import { tempFolder } from './helpers/cli.js';

import * as example from '../examples/classify.mjs';

/** Serves `root` read-only over HTTP, as any static server (or CDN) would. */
function staticServer(root: string): Promise<Server> {
  const server = createServer((request, response) => {
    const path = normalize(join(root, decodeURIComponent(new URL(request.url!, 'http://x').pathname)));
    if (!path.startsWith(root)) return void response.writeHead(403).end();
    readFile(path).then(
      (body) => response.writeHead(200).end(body),
      () => response.writeHead(404).end(),
    );
  });
  return new Promise((done) => server.listen(0, '127.0.0.1', () => done(server)));
}

describe('model.json alone', () => {
  const experimentsFolder = tempFolder('ic-model-json-');
  let server: Server | undefined;
  afterAll(() => server?.close());

  it('is loaded and classifies with plain @tensorflow/tfjs as predict() does', async () => {
    const { runPath, manifest } = await train({
      experimentName: 'm',
      runName: 'r',
      experimentsFolder,
      dataset: 'synthetic',
      model: 'net',
      epochs: 1,
      batchSize: 64,
      device: 'cpu',
    });
    server = await staticServer(runPath);
    const { port } = server.address() as AddressInfo;
    const classifier = await example.loadClassifier(`http://127.0.0.1:${port}/model/model.json`);
    expect(classifier.meta).toEqual({
      run: 'm/r',
      classNames: manifest.dataset.classNames,
      ...manifest.preprocessing,
    });

    // One 32x32 RGB image, as raw pixels (for the example) and as a PNG (for predict).
    const pixels = Uint8Array.from({ length: 32 * 32 * 3 }, (_, i) => (i * 37 + (i >> 5) * 11) % 256);
    const png = await sharp(Buffer.from(pixels), { raw: { width: 32, height: 32, channels: 3 } })
      .png()
      .toBuffer();
    const theirs = example.classify(classifier, pixels, 3);
    const model = await loadModel('m/r', { experimentsFolder, device: 'cpu' });
    try {
      const [ours] = await predict(model, [png], { topK: 3 });
      expect(theirs.map((t) => t.label)).toEqual(ours!.top.map((t) => t.label));
      theirs.forEach((t, i) => expect(t.probability).toBeCloseTo(ours!.top[i]!.probability, 5));
    } finally {
      model.dispose();
    }
  }, 120_000);
});
