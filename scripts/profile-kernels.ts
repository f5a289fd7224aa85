// Trains the `net` CNN (batch 64) and the VGG-style net (batch 256) on random
// data with the tfjs wasm backend and our training kernels, then prints
// images/s and the kernels that took the most time in one profiled step.
//
//   npx tsc -p tsconfig.json --outDir experiments/ictsc && node experiments/ictsc/scripts/profile-kernels.js [options]
//
// (The output folder must sit inside the repository: Node resolves the tfjs
// packages from node_modules and the ES module format from package.json.)
// Timings are CPU time as well as wall time: on a shared machine the wall
// clock also counts time other processes had the cores.
//
// Options:
//   --model=net|vgg|all   which model(s) (default all)
//   --steps=N             timed steps after 2 warm-up steps (default 20 for net, 3 for vgg)
//   --stock-bn            use tf.layers.batchNormalization instead of BatchNormNHWC
//   --stock-kernels=A,B   keep the stock wasm kernels with these names (e.g.
//                         Conv2DBackpropInput,MaxPoolGrad,Identity,BatchMatMul)
//   --filter-grad=F       Conv2DBackpropFilter form: simd (default), xnn-rows
//                         (XNNPACK, split by dy row) or xnn-whole (XNNPACK, one call)
//   --baseline            the state before this work's tuning (the first probe):
//                         --stock-bn, --filter-grad=xnn-whole and stock
//                         MaxPoolGrad/Identity/BatchMatMul/Equal
//   --threads=N           use the threaded wasm build with N threads
//                         (registerThreadedWasmBackend; default: the stock
//                         single-threaded backend)
//   --no-profile          skip the per-kernel profile
//   --native              the native backend: our addon's convolutions and matrix products
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { registerWasmTrainingKernels, type WasmTrainingKernelOptions } from '../src/backends/wasm/kernels.js';
import { BatchNormNHWC } from '../src/models/layers/batch-norm.js';
import { convGradTuning } from '../src/backends/wasm/conv-grad.js';
import { loadNativeAddon } from '../src/backends/native/addon.js';
import { registerNativeKernels } from '../src/backends/native/kernels.js';
import { registerThreadedWasmBackend } from '../src/backends/wasm/threads.js';

interface Options {
  models: string[];
  steps: number | undefined;
  stockBn: boolean;
  profile: boolean;
  kernelOptions: WasmTrainingKernelOptions;
  filterGrad: 'simd' | 'xnn-rows' | 'xnn-whole';
  threads: number | undefined;
  native: boolean;
}

function parseArgs(argv: string[]): Options {
  const opts: Options = {
    models: ['net', 'vgg'],
    steps: undefined,
    stockBn: false,
    profile: true,
    kernelOptions: {},
    filterGrad: 'simd',
    threads: undefined,
    native: false,
  };
  for (const arg of argv) {
    const [key, value] = arg.split('=', 2) as [string, string | undefined];
    if (key === '--model' && value !== undefined) opts.models = value === 'all' ? ['net', 'vgg'] : [value];
    else if (key === '--steps' && value !== undefined) opts.steps = Number(value);
    else if (key === '--stock-bn') opts.stockBn = true;
    else if (key === '--no-profile') opts.profile = false;
    else if (key === '--native') opts.native = true;
    else if (key === '--threads' && value !== undefined) opts.threads = Number(value);
    else if (key === '--stock-kernels' && value !== undefined)
      opts.kernelOptions = { keepStock: value.split(',') };
    else if (key === '--filter-grad' && (value === 'simd' || value === 'xnn-rows' || value === 'xnn-whole')) {
      opts.filterGrad = value;
    } else if (key === '--baseline') {
      opts.stockBn = true;
      opts.filterGrad = 'xnn-whole';
      opts.kernelOptions = { keepStock: ['MaxPoolGrad', 'Identity', 'BatchMatMul', 'Equal'] };
    } else throw new Error(`unknown option ${arg}`);
  }
  return opts;
}

/** The PyTorch tutorial CNN. */
function buildNet(): tf.LayersModel {
  return tf.sequential({
    layers: [
      tf.layers.conv2d({ inputShape: [32, 32, 3], filters: 6, kernelSize: 5, activation: 'relu' }),
      tf.layers.maxPooling2d({ poolSize: 2 }),
      tf.layers.conv2d({ filters: 16, kernelSize: 5, activation: 'relu' }),
      tf.layers.maxPooling2d({ poolSize: 2 }),
      tf.layers.flatten(),
      tf.layers.dense({ units: 120, activation: 'relu' }),
      tf.layers.dense({ units: 84, activation: 'relu' }),
      tf.layers.dense({ units: 10 }),
    ],
  });
}

/** Six 3x3 convs (32,32,64,64,128,128), BN + ReLU, pool every 2nd, global max pool. */
function buildVgg(stockBn: boolean): tf.LayersModel {
  const model = tf.sequential();
  const widths = [32, 32, 64, 64, 128, 128];
  widths.forEach((filters, i) => {
    model.add(
      tf.layers.conv2d({
        ...(i === 0 ? { inputShape: [32, 32, 3] } : {}),
        filters,
        kernelSize: 3,
        padding: 'same',
        useBias: false,
      }),
    );
    // As src/models/vgg.ts configures it (PyTorch's BatchNorm2d defaults).
    const bnArgs = { axis: -1, momentum: 0.9, epsilon: 1e-5 };
    model.add(stockBn ? tf.layers.batchNormalization(bnArgs) : new BatchNormNHWC(bnArgs));
    model.add(tf.layers.reLU());
    if (i % 2 === 1) model.add(tf.layers.maxPooling2d({ poolSize: 2 }));
  });
  model.add(tf.layers.globalMaxPooling2d({}));
  model.add(tf.layers.dense({ units: 10 }));
  return model;
}

function randomBatch(batch: number): { x: tf.Tensor4D; y: tf.Tensor2D } {
  return tf.tidy(() => {
    const x = tf.randomNormal([batch, 32, 32, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
    const labels = tf.randomUniform([batch], 0, 10, 'int32', 2);
    return { x, y: tf.oneHot(labels as tf.Tensor1D, 10).toFloat() as tf.Tensor2D };
  });
}

function trainStep(model: tf.LayersModel, optimizer: tf.Optimizer, x: tf.Tensor, y: tf.Tensor): number {
  const loss = optimizer.minimize(() => {
    const logits = model.apply(x, { training: true }) as tf.Tensor;
    return tf.losses.softmaxCrossEntropy(y, logits) as tf.Scalar;
  }, true);
  if (loss === null) throw new Error('no loss');
  const value = loss.dataSync()[0]!;
  loss.dispose();
  return value;
}

interface KernelRow {
  name: string;
  cpuMs: number;
  wallMs: number;
  calls: number;
}

/**
 * Runs `step` with every wasm kernel wrapped to time it, CPU time as well as
 * wall time (tf.profile measures wall time only, which on a shared machine
 * also counts time other processes had the core). Kernels called from inside
 * other kernels (not through the registry) count toward their caller.
 */
function profileStep(step: () => void): KernelRow[] {
  const stats = new Map<string, KernelRow>();
  const originals = tf.getKernelsForBackend('wasm');
  let depth = 0;
  for (const k of originals) {
    tf.unregisterKernel(k.kernelName, k.backendName);
    tf.registerKernel({
      ...k,
      kernelFunc: (params) => {
        if (depth > 0) return k.kernelFunc(params);
        depth++;
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        try {
          return k.kernelFunc(params);
        } finally {
          const c = process.cpuUsage(c0);
          const row = stats.get(k.kernelName) ?? { name: k.kernelName, cpuMs: 0, wallMs: 0, calls: 0 };
          row.cpuMs += (c.user + c.system) / 1000;
          row.wallMs += performance.now() - t0;
          row.calls++;
          stats.set(k.kernelName, row);
          depth--;
        }
      },
    });
  }
  try {
    step();
  } finally {
    for (const k of originals) {
      tf.unregisterKernel(k.kernelName, k.backendName);
      tf.registerKernel(k);
    }
  }
  return [...stats.values()].sort((a, b) => b.cpuMs - a.cpuMs);
}

async function run(name: string, opts: Options): Promise<void> {
  const batch = name === 'net' ? 64 : 256;
  const steps = opts.steps ?? (name === 'net' ? 20 : 3);
  const model = name === 'net' ? buildNet() : buildVgg(opts.stockBn);
  const optimizer = tf.train.momentum(0.01, 0.9);
  const { x, y } = randomBatch(batch);

  for (let i = 0; i < 2; i++) trainStep(model, optimizer, x, y);
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  let loss = 0;
  for (let i = 0; i < steps; i++) loss = trainStep(model, optimizer, x, y);
  const ms = (performance.now() - t0) / steps;
  const cpu = process.cpuUsage(cpu0);
  // CPU time as well as wall time: on a shared machine the wall clock also
  // counts time other processes had the cores.
  const cpuMs = (cpu.user + cpu.system) / 1000 / steps;
  const rate = (t: number): string => ((batch * 1000) / t).toFixed(0);
  console.log(
    `${name}@${batch}: ${ms.toFixed(0)} ms/step wall (${rate(ms)} img/s), ` +
      `${cpuMs.toFixed(0)} ms/step cpu (${rate(cpuMs)} img/s), loss ${loss.toFixed(3)}`,
  );

  if (opts.profile) {
    const rows = profileStep(() => trainStep(model, optimizer, x, y));
    const total = rows.reduce((a, r) => a + r.cpuMs, 0);
    console.log(`  one profiled step: ${total.toFixed(0)} ms cpu in kernels`);
    for (const r of rows.slice(0, 15)) {
      console.log(
        `  ${r.name.padEnd(34)} ${r.cpuMs.toFixed(1).padStart(8)} ms cpu ${r.wallMs.toFixed(1).padStart(8)} ms wall ${String(r.calls).padStart(5)} calls`,
      );
    }
  }
  tf.dispose([x, y]);
  model.dispose();
  optimizer.dispose();
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  registerWasmTrainingKernels(opts.kernelOptions);
  convGradTuning.simdFilterGrad = opts.filterGrad === 'simd';
  convGradTuning.rowsThresholdBytes = opts.filterGrad === 'xnn-whole' ? Infinity : 0;
  if (opts.threads !== undefined) {
    console.log(
      `threaded wasm build: ${await registerThreadedWasmBackend({ threads: opts.threads })} threads`,
    );
  }
  if (opts.native) {
    const { addon, isa } = loadNativeAddon();
    const threads = opts.threads ?? 1;
    registerNativeKernels({ addon, threads }, opts.kernelOptions);
    console.log(`native kernels: ${isa}, ${threads} threads`);
  }
  await tf.setBackend('wasm');
  await tf.ready();
  for (const name of opts.models) await run(name, opts);
  // Ends the threaded build's pthread workers (else they keep Node alive).
  tf.removeBackend('wasm');
}

await main();
