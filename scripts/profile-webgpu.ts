// Where a WebGPU training step's time goes, on the GPU machine (or on lavapipe, for a dry run):
//
//   npx tsx scripts/profile-webgpu.ts [--models vgg,net] [--steps 20] [--stock A,B] [--no-kernels] [--json FILE]
//
// For each model (vgg at batch 256, net at batch 64, the benchmark's sizes) it prints:
// - images/s with the loss read back after every step (what the trainer did before issue 13) and with
//   the steps queued back to back, read back once at the end (the GPU's own pace);
// - the profile of one step: GPU time per kernel name from timestamp queries (Dawn's
//   allow_unsafe_apis), the number of kernel calls, and the wall time of the step's encoding;
// - (unless --no-kernels) the filter gradient alone on VGG's layer shapes: tfjs's kernel and ours.
// `--stock A,B` keeps tfjs's kernels of those names instead of ours (e.g. Conv2DBackpropFilter).
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { selectBackend, webgpuOptions } from '../src/backends/select.js';
import { filterGradTuning } from '../src/backends/webgpu/conv-filter-grad.js';
import { registerWebGpuTrainingKernels } from '../src/backends/webgpu/kernels.js';
import { parseRunConfig, type ModelName } from '../src/config.js';
import { Random } from '../src/data/random.js';
import { buildModel, INPUT_SHAPE } from '../src/models/index.js';
import { Sgd } from '../src/training/sgd.js';
import { trainStep } from '../src/training/step.js';

const BATCH: Record<ModelName, number> = { net: 64, vgg: 256, resnet: 128 };
const NUM_CLASSES = 10;

const { values } = parseArgs({
  options: {
    models: { type: 'string', default: 'vgg,net' },
    steps: { type: 'string', default: '20' },
    stock: { type: 'string', default: '' },
    'no-kernels': { type: 'boolean', default: false },
    json: { type: 'string' },
  },
});
const steps = Number(values.steps);
const keepStock = values.stock.split(',').filter(Boolean);
const report: Record<string, unknown> = {};

webgpuOptions.dawnFlags = ['enable-dawn-features=allow_unsafe_apis'];
const backend = await selectBackend({ device: 'auto', backend: 'webgpu' });
registerWebGpuTrainingKernels({ keepStock });
report.backend = backend;
console.log(
  `backend: ${backend.name} on ${backend.adapter}; stock kernels kept: ${keepStock.join(',') || 'none'}`,
);

async function modelReport(name: ModelName): Promise<Record<string, unknown>> {
  const batch = BATCH[name];
  const config = parseRunConfig({ experimentName: 'p', runName: 'p', model: name, batchSize: batch });
  const model = buildModel(name, { inputShape: INPUT_SHAPE, numClasses: NUM_CLASSES, seed: 0 });
  const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const optimizer = new Sgd(variables, config);
  const random = new Random(0);
  const x = Float32Array.from({ length: batch * 32 * 32 * 3 }, () => random.normal());
  const y = Int32Array.from({ length: batch }, () => random.int(NUM_CLASSES));
  const learner = { model, variables, optimizer, numClasses: NUM_CLASSES, labelSmoothing: 0.2 };
  const step = () => trainStep(learner, { x, y, n: batch }, 0.001);
  for (let i = 0; i < 3; i++) await step();

  let t0 = performance.now();
  for (let i = 0; i < steps; i++) await step();
  const synced = (steps * batch) / ((performance.now() - t0) / 1000);

  t0 = performance.now();
  const pending: Array<Promise<[number, number]>> = [];
  for (let i = 0; i < steps; i++) pending.push(step());
  const encodeMs = (performance.now() - t0) / steps;
  const losses = await Promise.all(pending);
  const queued = (steps * batch) / ((performance.now() - t0) / 1000);

  const info = await tf.profile(async () => {
    await step();
  });
  const byName = new Map<string, { ms: number; calls: number }>();
  for (const k of info.kernels) {
    const entry = byName.get(k.name) ?? { ms: 0, calls: 0 };
    entry.ms += Number(k.kernelTimeMs) || 0;
    entry.calls += 1;
    byName.set(k.name, entry);
  }
  const top = [...byName.entries()].sort((a, b) => b[1].ms - a[1].ms);
  const gpuMs = top.reduce((s, [, v]) => s + v.ms, 0);
  console.log(
    `${name}@${batch}: ${Math.round(synced)} img/s reading the loss every step, ${Math.round(queued)} img/s queued ` +
      `(encoding ${encodeMs.toFixed(2)} ms a step; last loss ${losses.at(-1)![0].toFixed(4)})`,
  );
  console.log(
    `  one step: ${info.kernels.length} kernel calls, ${gpuMs.toFixed(2)} ms of GPU time; top kernels:`,
  );
  for (const [k, v] of top.slice(0, 15))
    console.log(`    ${k.padEnd(34)} ${v.ms.toFixed(3).padStart(8)} ms  x${v.calls}`);
  optimizer.dispose();
  model.dispose();
  return {
    batch,
    synced,
    queued,
    encodeMs,
    kernelCalls: info.kernels.length,
    gpuMs,
    top: top.slice(0, 25).map(([k, v]) => ({ kernel: k, ...v })),
  };
}

for (const name of values.models.split(',') as ModelName[]) report[name] = await modelReport(name);

/** Median ms of `reps` filter-gradient calls, queued, on one of VGG's shapes. */
async function filterGradMs(shape: number[], f: number, reps = 20): Promise<number> {
  const [n, h, w, c] = shape as [number, number, number, number];
  const x = tf.randomNormal([n, h, w, c]) as tf.Tensor4D;
  const dy = tf.randomNormal([n, h, w, f]) as tf.Tensor4D;
  const call = () =>
    tf
      .engine()
      .runKernel(
        tf.Conv2DBackpropFilter,
        { x, dy },
        { strides: 1, pad: 'same', dataFormat: 'NHWC', filterShape: [3, 3, c, f] },
      ) as tf.Tensor;
  const warm = call();
  await warm.data();
  warm.dispose();
  const t0 = performance.now();
  const outs = Array.from({ length: reps }, call);
  await outs.at(-1)!.data();
  const ms = (performance.now() - t0) / reps;
  tf.dispose([...outs, x, dy]);
  return ms;
}

if (!values['no-kernels']) {
  const layers: Array<[number[], number]> = [
    [[256, 32, 32, 3], 32],
    [[256, 32, 32, 32], 32],
    [[256, 16, 16, 32], 64],
    [[256, 16, 16, 64], 64],
    [[256, 8, 8, 64], 128],
    [[256, 8, 8, 128], 128],
  ];
  const variants: Array<[string, Partial<typeof filterGradTuning> | 'stock']> = [
    ['stock', 'stock'],
    ['ours', {}],
    ['tk32', { tk: 32 }],
    ['groups256', { targetGroups: 256 }],
    ['groups4096', { targetGroups: 4096 }],
    ['tile32', { maxTileM: 32, maxTileN: 32 }],
  ];
  const saved = { ...filterGradTuning };
  const rows: Array<Record<string, unknown>> = [];
  for (const [shape, f] of layers) {
    const row: Record<string, unknown> = { shape: `${shape.join('x')}->${f}` };
    for (const [label, v] of variants) {
      registerWebGpuTrainingKernels({ keepStock: v === 'stock' ? ['Conv2DBackpropFilter'] : [] });
      Object.assign(filterGradTuning, saved, v === 'stock' ? {} : v);
      const ms = await filterGradMs(shape, f, v === 'stock' ? 3 : 20);
      const flops = 2 * shape.reduce((a, b) => a * b, 1) * 9 * f;
      row[label] = { ms, gflops: flops / ms / 1e6 };
    }
    rows.push(row);
    console.log(
      `filter grad ${String(row.shape).padEnd(22)} ` +
        variants
          .map(([label]) => {
            const r = row[label] as { ms: number; gflops: number };
            return `${label} ${r.ms.toFixed(2)} ms (${Math.round(r.gflops)} GF/s)`;
          })
          .join(' | '),
    );
  }
  Object.assign(filterGradTuning, saved);
  registerWebGpuTrainingKernels({ keepStock });
  report.filterGrad = rows;
}

if (values.json) writeFileSync(values.json, JSON.stringify(report, null, 2));
process.exit(0);
