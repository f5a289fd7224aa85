// Classifying with a trained run's model.json and nothing of this package: plain @tensorflow/tfjs.
// model.json carries the class names and the preprocessing (userDefinedMetadata.imageClassifier), so
// the model travels alone: serve the run's model/ folder anywhere (a CDN, `npx http-server`) and load
// it by URL, in Node or in a browser (see browser.html beside this file).
//
//   node examples/classify.mjs http://localhost:8000/model/model.json image.raw 32 32
//
// `pixels` are RGB bytes, row by row, at the model's input size (decode and resize with whatever you
// have: sharp in Node, an <img> and a canvas in a browser, as browser.html does).
import * as tf from '@tensorflow/tfjs';

/** Loads a model.json by URL (http:, https:, or anything tf.loadLayersModel takes) and its metadata. */
export async function loadClassifier(url) {
  const model = await tf.loadLayersModel(url);
  const meta = model.getUserDefinedMetadata()?.imageClassifier;
  if (!meta) throw new Error(`${url} has no imageClassifier metadata (a model saved before it was added?)`);
  return { model, meta };
}

/** The k most probable classes of one image: [{ label, probability }], most probable first. */
export function classify({ model, meta }, pixels, k = 3) {
  const [height, width, channels] = meta.inputShape;
  if (pixels.length !== height * width * channels)
    throw new Error(
      `expected ${height}x${width} RGB pixels (${height * width * channels} bytes), got ${pixels.length}`,
    );
  return tf.tidy(() => {
    const x = tf
      .tensor4d(Float32Array.from(pixels), [1, height, width, channels])
      .mul(meta.scale)
      .sub(tf.tensor1d(meta.mean))
      .div(tf.tensor1d(meta.std));
    const probabilities = tf.softmax(model.predict(x)).dataSync();
    return [...probabilities]
      .map((probability, i) => ({ label: meta.classNames[i], probability }))
      .sort((a, b) => b.probability - a.probability)
      .slice(0, k);
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [url, file, height, width] = process.argv.slice(2);
  const { readFileSync } = await import('node:fs');
  const classifier = await loadClassifier(url);
  const pixels = new Uint8Array(readFileSync(file));
  if (height && width && pixels.length !== Number(height) * Number(width) * 3)
    throw new Error(`${file} is not ${height}x${width} RGB`);
  for (const { label, probability } of classify(classifier, pixels))
    console.log(`${label}\t${(probability * 100).toFixed(1)}%`);
}
