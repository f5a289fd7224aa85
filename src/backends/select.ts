// Backend selection. `auto` takes the first candidate (names.ts lists them in this order) that loads
// *and* trains a tiny conv net step:
//   GPU: tensorflow-gpu (CUDA via tfjs-node-gpu) > webgpu (Dawn through the `webgpu` package)
//   CPU: tensorflow (libtensorflow, all cores) > native (wasm + our AVX2/AVX-512 addon for convolutions,
//        products, batch norm, ReLU, pooling) > wasm (XNNPACK + our training kernels) > cpu (plain JS)
// Native TensorFlow goes first where it installs because it is the fastest and most complete; our
// addon builds wherever a C compiler is (VGG: ~4x the wasm path's images/s on 2 cores); wasm is the
// fast path that installs everywhere; tfjs's `cpu` is a last resort (~10 images/s on a small CNN).
import { availableParallelism } from 'node:os';
import * as tf from '@tensorflow/tfjs';
import type { RunConfig } from '../config.js';
import { BackendError } from '../errors.js';
import { BACKEND_DEVICES, BACKEND_NAMES, type BackendDevice, type BackendName } from './names.js';
import type { NativeKernels } from './native/addon.js';
import { vulkanProblem } from './webgpu/vulkan.js';

export type { BackendName } from './names.js';

export interface BackendInfo {
  name: BackendName;
  device: BackendDevice;
  /** Threads the backend's kernels actually use. */
  threads: number;
  /** The package that provides it, with its version. */
  package: string;
  /** The GPU adapter it runs on (WebGPU), as the driver describes it. */
  adapter?: string;
  /**
   * When `auto` had a GPU backend and a CPU one to choose from: each one's measured milliseconds per
   * training step of the run's model and batch size; the faster was chosen.
   */
  measuredStepMs?: Partial<Record<BackendName, number>>;
}

/** The parts of a WebGPU adapter we read (the `webgpu` package has no types we depend on). */
interface GpuAdapter {
  info?: {
    vendor?: string;
    architecture?: string;
    device?: string;
    description?: string;
    isFallbackAdapter?: boolean;
  };
}

interface Loader {
  /** The tfjs backend it runs on, when not its own name (native runs on tfjs's wasm backend). */
  tfjsName?: string;
  /** Loads and registers the backend with tfjs; throws with the reason when it cannot. */
  load(threads: number, explicit: boolean): Promise<{ package: string; threads: number; adapter?: string }>;
}

interface Candidate extends Loader {
  name: BackendName;
  device: BackendDevice;
}

/**
 * Dawn's toggles for the WebGPU backend. scripts/profile-webgpu.ts asks for
 * `enable-dawn-features=allow_unsafe_apis`: GPU timestamps, so tf.profile reports kernel times.
 */
export const webgpuOptions = { dawnFlags: [] as string[] };

// Optional packages are imported through a variable so TypeScript and bundlers do not require them.
async function optionalImport(specifier: string): Promise<Record<string, unknown>> {
  return (await import(specifier)) as Record<string, unknown>;
}

async function packageVersion(name: string): Promise<string> {
  try {
    const { createRequire } = await import('node:module');
    const require = createRequire(import.meta.url);
    const pkg = require(`${name}/package.json`) as { version: string };
    return `${name}@${pkg.version}`;
  } catch {
    return name;
  }
}

/** The wasm backend with our training kernels (and the native addon's, for `native`). */
async function loadWasm(
  threads: number,
  native?: NativeKernels,
): Promise<{ package: string; threads: number }> {
  await import('@tensorflow/tfjs-backend-wasm');
  // tfjs-backend-wasm uses one core in Node; our loader runs its threaded build on all of them
  // (VGG: ~70 -> ~120 img/s on 2 cores). One thread keeps the stock single-threaded build.
  const { registerThreadedWasmBackend } = await import('./wasm/threads.js');
  const used = threads > 1 ? await registerThreadedWasmBackend({ threads }) : 1;
  if (native) {
    const { registerNativeKernels } = await import('./native/kernels.js');
    registerNativeKernels(native);
  } else {
    const { registerWasmTrainingKernels } = await import('./wasm/kernels.js');
    registerWasmTrainingKernels();
  }
  return { package: await packageVersion('@tensorflow/tfjs-backend-wasm'), threads: native?.threads ?? used };
}

const LOADERS: Record<BackendName, Loader> = {
  'tensorflow-gpu': {
    async load() {
      await optionalImport('@tensorflow/tfjs-node-gpu');
      return { package: await packageVersion('@tensorflow/tfjs-node-gpu'), threads: availableParallelism() };
    },
  },
  webgpu: {
    async load(_threads, explicit) {
      // Dawn needs the Vulkan loader, a driver file and the driver's libraries on Linux; without them
      // it prints native warnings to stderr and finds no adapter. Checking first keeps every run's
      // output clean and says what to install. Without a GPU device only a software Vulkan driver
      // could answer: auto does not ask, an explicit --backend webgpu does (tests use lavapipe).
      const problem = process.platform === 'linux' ? vulkanProblem() : undefined;
      if (problem !== undefined && (!explicit || !problem.startsWith('no GPU device')))
        throw new Error(problem);
      const webgpu = await optionalImport('webgpu');
      const create = webgpu.create as (options: string[]) => { requestAdapter(): Promise<GpuAdapter | null> };
      Object.assign(globalThis, webgpu.globals as object);
      const gpu = create(webgpuOptions.dawnFlags);
      const adapter = await gpu.requestAdapter();
      if (!adapter) {
        throw new Error(
          'no WebGPU adapter: Dawn found no working Vulkan driver (see its messages above; `doctor` checks the usual causes)',
        );
      }
      const info = adapter.info ?? {};
      const software = info.isFallbackAdapter === true || info.architecture === 'software';
      const adapterName = `${info.description || info.device || info.vendor || 'unknown adapter'}${software ? ' (software)' : ''}`;
      // A software adapter (Mesa's lavapipe, SwiftShader) is the CPU emulating a GPU: far slower than
      // wasm. Only an explicit --backend webgpu uses it (to exercise the WebGPU path without a GPU).
      if (software && !explicit) throw new Error(`only a software WebGPU adapter: ${adapterName}`);
      Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
      await optionalImport('@tensorflow/tfjs-backend-webgpu');
      const { registerWebGpuTrainingKernels } = await import('./webgpu/kernels.js');
      registerWebGpuTrainingKernels();
      return {
        package: await packageVersion('@tensorflow/tfjs-backend-webgpu'),
        threads: 1,
        adapter: adapterName,
      };
    },
  },
  tensorflow: {
    async load() {
      await optionalImport('@tensorflow/tfjs-node');
      return { package: await packageVersion('@tensorflow/tfjs-node'), threads: availableParallelism() };
    },
  },
  native: {
    tfjsName: 'wasm',
    async load(threads) {
      const { loadNativeAddon } = await import('./native/addon.js');
      const { addon, isa } = loadNativeAddon();
      const wasm = await loadWasm(threads, { addon, threads });
      return { ...wasm, package: `${wasm.package} + native kernels (${isa})` };
    },
  },
  wasm: {
    load: (threads) => loadWasm(threads),
  },
  cpu: {
    async load() {
      return { package: await packageVersion('@tensorflow/tfjs'), threads: 1 };
    },
  },
};

/** The backends in `auto`'s order of preference. */
const CANDIDATES: Candidate[] = BACKEND_NAMES.map((name) => ({
  name,
  device: BACKEND_DEVICES[name],
  ...LOADERS[name],
}));

/**
 * Trains one step of a tiny conv net: a backend that registers but lacks a kernel fails here, not
 * mid-run. Reads back asynchronously, as training does: WebGPU in Node has no synchronous readback.
 */
async function smokeTest(): Promise<void> {
  const w = tf.variable(tf.randomUniform([3, 3, 3, 4], -1, 1, 'float32', 2));
  const grad = tf.tidy(() => {
    const x = tf.randomUniform([2, 6, 6, 3], -1, 1, 'float32', 1) as tf.Tensor4D;
    const grads = tf.variableGrads(
      () => tf.mean(tf.maxPool(tf.relu(tf.conv2d(x, w as tf.Tensor4D, 1, 'same')), 2, 2, 'valid')),
      [w],
    );
    return grads.grads[w.name]!;
  });
  try {
    await grad.data();
  } finally {
    tf.dispose([grad, w]);
  }
}

async function tryCandidate(candidate: Candidate, threads: number, explicit = false): Promise<BackendInfo> {
  // PROD silences tfjs's console banners (e.g. the cpu backend's "install tfjs-node" advice): we say
  // which backend runs, and `doctor` says why others do not.
  tf.env().set('PROD', true);
  const loaded = await candidate.load(threads, explicit);
  const tfjsName = candidate.tfjsName ?? candidate.name;
  const ok = await tf.setBackend(tfjsName);
  if (!ok) throw new Error(`tfjs could not initialise the '${tfjsName}' backend`);
  await tf.ready();
  await smokeTest();
  return { name: candidate.name, device: candidate.device, ...loaded };
}

/** Why a backend did not load, in one line ('package not installed' for a missing optional package). */
function loadProblem(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  if (/Cannot find (package|module)/.test(text)) return 'package not installed';
  return text.split('\n')[0]!;
}

export interface BackendReport {
  name: BackendName;
  device: BackendDevice;
  works: boolean;
  /** What runs it, when it works: package versions (and the native kernels' instruction set), threads. */
  detail?: string;
  /** Milliseconds per training step, when probed with a step to measure (not for plain-JS `cpu`). */
  stepMs?: number;
  reason?: string;
}

/** Times a training step on the active backend (src/training/step.ts measureTrainingStep). */
export type MeasureStep = () => Promise<number>;

/** Makes a loaded backend the active one again (native runs on tfjs's wasm backend). */
async function activate(info: BackendInfo): Promise<void> {
  const candidate = CANDIDATES.find((c) => c.name === info.name)!;
  await tf.setBackend(candidate.tfjsName ?? candidate.name);
}

async function measureOn(info: BackendInfo, measure: MeasureStep): Promise<number> {
  await activate(info);
  return measure();
}

/** Picks and activates the backend for `device`/`backend`; explains every rejected candidate on failure. */
export async function selectBackend(
  options: Pick<RunConfig, 'device' | 'backend'> & { threads?: number; measureStep?: MeasureStep },
): Promise<BackendInfo> {
  const { device, backend } = options;
  const threads = options.threads ?? availableParallelism();
  let candidates = CANDIDATES;
  if (backend !== 'auto') {
    const chosen = CANDIDATES.find((c) => c.name === backend)!;
    if (device !== 'auto' && chosen.device !== device) {
      throw new BackendError(
        `--backend ${backend} runs on the ${chosen.device}, but --device ${device} was asked for`,
      );
    }
    candidates = [chosen];
  } else if (device !== 'auto') {
    candidates = CANDIDATES.filter((c) => c.device === device);
  }
  const failures: string[] = [];
  for (const candidate of candidates) {
    let info: BackendInfo;
    try {
      info = await tryCandidate(candidate, threads, backend !== 'auto');
    } catch (error) {
      failures.push(`${candidate.name}: ${loadProblem(error)}`);
      continue;
    }
    // A GPU is not always faster: a small model at a small batch is bound by the cost of each of its
    // hundreds of kernel calls, which a GPU pays in dispatch and a CPU backend barely at all. With a
    // step to measure, `auto` (on any device) times the GPU backend against the best CPU one and keeps
    // the faster; `--device gpu` or a named backend is taken as asked.
    if (info.device === 'gpu' && backend === 'auto' && device === 'auto' && options.measureStep) {
      const cpu = await firstWorking(
        CANDIDATES.filter((c) => c.device === 'cpu'),
        threads,
      );
      if (cpu !== undefined) {
        const gpuMs = await measureOn(info, options.measureStep);
        const cpuMs = await measureOn(cpu, options.measureStep);
        const winner = gpuMs <= cpuMs ? info : cpu;
        await activate(winner);
        return { ...winner, measuredStepMs: { [info.name]: gpuMs, [cpu.name]: cpuMs } };
      }
    }
    return info;
  }
  const what = backend !== 'auto' ? `--backend ${backend}` : `--device ${device}`;
  throw new BackendError(`no backend works for ${what} (${failures.join('; ')})`);
}

async function firstWorking(candidates: Candidate[], threads: number): Promise<BackendInfo | undefined> {
  for (const candidate of candidates) {
    try {
      return await tryCandidate(candidate, threads);
    } catch {
      // the next one
    }
  }
  return undefined;
}

/**
 * For `doctor`: tries every backend (each in turn) and says which load and why others do not; with
 * `measureStep`, each working one's step time (but plain-JS `cpu`'s: minutes).
 */
export async function probeBackends(
  threads = availableParallelism(),
  measureStep?: MeasureStep,
): Promise<BackendReport[]> {
  const reports: BackendReport[] = [];
  for (const candidate of CANDIDATES) {
    try {
      const info = await tryCandidate(candidate, threads);
      const detail = `${info.package}, ${info.threads} thread${info.threads === 1 ? '' : 's'}`;
      const stepMs = measureStep && info.name !== 'cpu' ? await measureStep() : undefined;
      reports.push({ name: candidate.name, device: candidate.device, works: true, detail, stepMs });
    } catch (error) {
      reports.push({
        name: candidate.name,
        device: candidate.device,
        works: false,
        reason: loadProblem(error),
      });
    }
  }
  return reports;
}

/**
 * The backend `auto` picks among probed ones: the first that works in order of preference, but a GPU
 * one only when its measured step is not slower than the best CPU one's.
 */
export function autoChoice(reports: BackendReport[]): BackendReport | undefined {
  const first = reports.find((r) => r.works);
  if (first?.device !== 'gpu') return first;
  const cpu = reports.find((r) => r.works && r.device === 'cpu');
  if (cpu?.stepMs === undefined || first.stepMs === undefined) return first;
  return first.stepMs <= cpu.stepMs ? first : cpu;
}
