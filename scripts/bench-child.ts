// One measurement of `npm run bench`, in a process of its own: scripts/bench.ts spawns this file once
// per configuration, so backends never share a process and peak RSS is that configuration's alone.
//
//   tsx scripts/bench-child.ts '<json ChildSpec>'
//
// Prints one line `@@bench-result <json>` on stdout (logs go to stderr) and exits.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { parseRunConfig } from '../src/config.js';
import { probeBackends, selectBackend, webgpuOptions } from '../src/backends/select.js';
import { Random } from '../src/data/random.js';
import { buildModel, INPUT_SHAPE } from '../src/models/index.js';
import { Sgd } from '../src/training/sgd.js';
import { trainStep } from '../src/training/step.js';
import { train } from '../src/index.js';
import {
  RESULT_MARKER,
  type ChildResult,
  type ChildSpec,
  type ThroughputResult,
  type ThroughputSpec,
  type TimeToAccuracyResult,
  type TimeToAccuracySpec,
} from './bench-protocol.js';

// The PyTorch reference's throughput mode trains at this rate; random labels at the recipe's peak
// rate could diverge, and NaNs would make the timing unrepresentative.
const LEARNING_RATE = 0.001;
// A few distinct batches cycled: the data changes step to step without holding a whole data set in
// memory that the trainer would not (it keeps uint8 images and one float batch).
const DISTINCT_BATCHES = 4;
const NUM_CLASSES = 10;

function peakRssMB(): number {
  // maxRSS is in kilobytes.
  return process.resourceUsage().maxRSS / 1024;
}

async function throughput(spec: ThroughputSpec): Promise<ThroughputResult> {
  // GPU timestamps for the profile (Dawn exposes them only with its unsafe APIs allowed).
  webgpuOptions.dawnFlags = ['enable-dawn-features=allow_unsafe_apis'];
  const backend = await selectBackend({ device: 'auto', backend: spec.backend, threads: spec.threads });
  // The default recipe's optimiser settings (Nesterov, weight decay, label smoothing), so the step
  // costs what it costs in a default run.
  const config = parseRunConfig({
    experimentName: 'bench',
    runName: 'bench',
    model: spec.model,
    batchSize: spec.batch,
  });
  const model = buildModel(spec.model, { inputShape: INPUT_SHAPE, numClasses: NUM_CLASSES, seed: 0 });
  // As trainEpochs does: the optimiser works on the layers' variables directly.
  const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const optimizer = new Sgd(variables, config);

  const imageSize = INPUT_SHAPE[0] * INPUT_SHAPE[1] * INPUT_SHAPE[2];
  const random = new Random(0);
  const batches = Array.from({ length: DISTINCT_BATCHES }, () => {
    const x = new Float32Array(spec.batch * imageSize);
    for (let i = 0; i < x.length; i++) x[i] = random.normal();
    const y = Int32Array.from({ length: spec.batch }, () => random.int(NUM_CLASSES));
    return { x, y };
  });
  const learner = {
    model,
    variables,
    optimizer,
    numClasses: NUM_CLASSES,
    labelSmoothing: config.labelSmoothing,
  };
  const step = async (i: number): Promise<number> => {
    const { x, y } = batches[i % DISTINCT_BATCHES]!;
    const [loss] = await trainStep(learner, { x, y, n: spec.batch }, LEARNING_RATE);
    return loss;
  };

  for (let i = 0; i < spec.warmupSteps; i++) await step(i);
  const steps = Math.max(1, Math.round(spec.images / spec.batch));
  let finalLoss = NaN;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  // trainStep reads the loss back each step, so every step has finished when the clock stops.
  for (let i = 0; i < steps; i++) finalLoss = await step(i);
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const topKernels = backend.device === 'gpu' ? await profileStep(() => step(0)) : undefined;
  optimizer.dispose();
  model.dispose();
  return {
    kind: 'throughput',
    backend: backend.name,
    package: backend.package,
    threads: backend.threads,
    model: spec.model,
    batch: spec.batch,
    images: steps * spec.batch,
    seconds,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    imagesPerSecond: (steps * spec.batch) / seconds,
    peakRssMB: peakRssMB(),
    finalLoss,
    topKernels,
  };
}

/** GPU time by kernel name in one step (needs timestamp queries: webgpuOptions below). */
async function profileStep(step: () => Promise<unknown>): Promise<ThroughputResult['topKernels']> {
  const info = await tf.profile(async () => {
    await step();
  });
  const byName = new Map<string, { name: string; ms: number; calls: number }>();
  for (const k of info.kernels) {
    const entry = byName.get(k.name) ?? { name: k.name, ms: 0, calls: 0 };
    entry.ms += Number(k.kernelTimeMs) || 0;
    entry.calls += 1;
    byName.set(k.name, entry);
  }
  return [...byName.values()].sort((a, b) => b.ms - a.ms).slice(0, 10);
}

async function timeToAccuracy(spec: TimeToAccuracySpec): Promise<TimeToAccuracyResult> {
  const experimentsFolder = mkdtempSync(join(tmpdir(), 'ic-bench-experiments-'));
  try {
    const t0 = performance.now();
    // The default recipe: only the data, the epochs and where things go are set.
    const { manifest, metrics } = await train(
      {
        experimentName: 'bench',
        runName: 'time-to-accuracy',
        experimentsFolder,
        dataset: 'image-folder',
        datasetFolder: spec.data,
        dataFolder: spec.cacheFolder,
        epochs: spec.epochs,
        backend: spec.backend,
      },
      { log: (line) => process.stderr.write(`  ${line}\n`) },
    );
    return {
      kind: 'time-to-accuracy',
      backend: manifest.backend.name,
      threads: manifest.backend.threads,
      trainImages: manifest.dataset.trainImages,
      validationImages: manifest.dataset.validationImages,
      testImages: manifest.dataset.testImages,
      history: metrics.history.map((h) => ({
        epoch: h.epoch,
        seconds: h.seconds,
        validationAccuracy: h.validationAccuracy,
        trainLoss: h.trainLoss,
      })),
      testAccuracy: metrics.test.accuracy,
      wallSeconds: (performance.now() - t0) / 1000,
      peakRssMB: peakRssMB(),
    };
  } finally {
    rmSync(experimentsFolder, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? '') as ChildSpec;
  let result: ChildResult;
  if (spec.kind === 'probe') result = { kind: 'probe', backends: await probeBackends(spec.threads) };
  else if (spec.kind === 'throughput') result = await throughput(spec);
  else result = await timeToAccuracy(spec);
  // Exit explicitly: the threaded wasm build's worker threads would otherwise keep Node alive.
  process.stdout.write(RESULT_MARKER + JSON.stringify(result) + '\n', () => process.exit(0));
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
