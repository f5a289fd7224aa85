// Trains the `net` CNN (batch 64) and the VGG-style net (batch 256) on random
// data with the tfjs wasm backend and our training kernels, then prints
// images/s and the kernels that took the most time in one profiled step.
//
//   npx tsc -p tsconfig.json --outDir /tmp/ictsc && node /tmp/ictsc/scripts/profile-kernels.js [options]
//
// Options:
//   --model=net|vgg|all   which model(s) (default all)
//   --steps=N             timed steps after 2 warm-up steps (default 5 for net, 3 for vgg)
//   --stock-bn            use tf.layers.batchNormalization instead of BatchNormNHWC
//   --stock-kernels=A,B   keep the stock wasm kernels for these names (see KERNEL_GROUPS)
//   --no-profile          skip the per-kernel profile
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { registerWasmTrainingKernels, type WasmTrainingKernelOptions } from '../src/backends/wasm-training-kernels.js';
import { BatchNormNHWC } from '../src/backends/batch-norm.js';

interface Options {
  models: string[];
  steps: number | undefined;
  stockBn: boolean;
  profile: boolean;
  kernelOptions: WasmTrainingKernelOptions;
}

function parseArgs(argv: string[]): Options {
  const opts: Options = { models: ['net', 'vgg'], steps: undefined, stockBn: false, profile: true, kernelOptions: {} };
  for (const arg of argv) {
    const [key, value] = arg.split('=', 2) as [string, string | undefined];
    if (key === '--model' && value !== undefined) opts.models = value === 'all' ? ['net', 'vgg'] : [value];
    else if (key === '--steps' && value !== undefined) opts.steps = Number(value);
    else if (key === '--stock-bn') opts.stockBn = true;
    else if (key === '--no-profile') opts.profile = false;
    else if (key === '--stock-kernels' && value !== undefined) opts.kernelOptions = { keepStock: value.split(',') };
    else throw new Error(`unknown option ${arg}`);
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
    model.add(stockBn ? tf.layers.batchNormalization() : new BatchNormNHWC());
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
  const loss = optimizer.minimize(
    () => {
      const logits = model.apply(x, { training: true }) as tf.Tensor;
      return tf.losses.softmaxCrossEntropy(y, logits) as tf.Scalar;
    },
    true,
  );
  if (loss === null) throw new Error('no loss');
  const value = loss.dataSync()[0]!;
  loss.dispose();
  return value;
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
    const info = await tf.profile(() => {
      trainStep(model, optimizer, x, y);
    });
    const byKernel = new Map<string, { ms: number; calls: number }>();
    let total = 0;
    for (const k of info.kernels) {
      const t = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
      const e = byKernel.get(k.name) ?? { ms: 0, calls: 0 };
      e.ms += t;
      e.calls += 1;
      byKernel.set(k.name, e);
      total += t;
    }
    const rows = [...byKernel.entries()].sort((a, b) => b[1].ms - a[1].ms).slice(0, 15);
    console.log(`  profiled step: ${total.toFixed(0)} ms in kernels`);
    for (const [k, e] of rows) {
      console.log(`  ${k.padEnd(24)} ${e.ms.toFixed(1).padStart(8)} ms  ${String(e.calls).padStart(4)} calls`);
    }
  }
  tf.dispose([x, y]);
  model.dispose();
  optimizer.dispose();
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  registerWasmTrainingKernels(opts.kernelOptions);
  await tf.setBackend('wasm');
  await tf.ready();
  for (const name of opts.models) await run(name, opts);
}

await main();
