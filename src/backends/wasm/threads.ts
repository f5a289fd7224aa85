// A multi-threaded tfjs wasm backend for Node. tfjs-backend-wasm ships a
// threaded SIMD build (XNNPACK with a pthreads pool) but never uses it in Node:
// its feature check says no, and its loader hands the pthread workers a
// blob: URL that Node's worker_threads cannot load. The Emscripten glue itself
// supports Node workers, so we instantiate that build ourselves with the
// worker script written to a file and register it as the 'wasm' backend.
//
// The build also caps its pool at (logical cores / 2), i.e. one thread on a
// 2-core machine; we report the requested count to it instead. XNNPACK splits
// work by output tiles, each computed by one thread in a fixed order, so
// results stay bit-identical run to run and across thread counts.
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import * as tfWasm from '@tensorflow/tfjs-backend-wasm';
import { setKernelThreads } from './workers.js';

export interface ThreadedWasmOptions {
  /** Threads for XNNPACK's pool (default: all logical cores, at most 8). */
  threads?: number;
}

/** The Emscripten module factory of the threaded build (the parts we use). */
type ModuleFactory = (config: Record<string, unknown>) => Promise<EmscriptenModule>;
interface EmscriptenModule {
  cwrap(name: string, returnType: null | 'number', argTypes: string[]): (...args: number[]) => unknown;
  tfjs?: unknown;
  /** The heap; a threaded build imports it rather than exporting it. */
  wasmMemory?: unknown;
  /** Emscripten's pthread bookkeeping: its (pre-spawned) Node workers. */
  PThread?: { unusedWorkers?: Array<{ unref?: () => void }>; runningWorkers?: Array<{ unref?: () => void }> };
}
/** The parts of the global WebAssembly API we use (not in our tsconfig libs). */
interface WebAssemblyApi {
  instantiate(bytes: Uint8Array, imports: object): Promise<{ instance: object; module: object }>;
}
type Imports = Record<string, Record<string, unknown>>;

const BUILD = 'tfjs-backend-wasm-threaded-simd';

function wasmOutDir(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'wasm-out');
}

/** Writes the pthread worker script to a file (Node workers need a path). */
function workerScript(dir: string): string {
  const require = createRequire(import.meta.url);
  // Cast: the package's worker module exports the script as a string.
  const { wasmWorkerContents } = require(join(dir, `${BUILD}.worker.js`)) as { wasmWorkerContents: string };
  // The string holds real newlines where the script has "\n" escapes inside
  // string literals (tfjs escapes them the same way before using it).
  const contents = wasmWorkerContents.replace(/\n/g, '\\n');
  const { version } = require('@tensorflow/tfjs-backend-wasm/package.json') as { version: string };
  const folder = join(tmpdir(), 'image-classifier');
  mkdirSync(folder, { recursive: true });
  // .cjs: the script is CommonJS whatever package.json is found above the folder.
  const file = join(folder, `${BUILD}-${version}.worker.cjs`);
  if (!existsSync(file) || readFileSync(file, 'utf8') !== contents) writeFileSync(file, contents);
  return file;
}

/**
 * Registers the threaded SIMD build of tfjs-backend-wasm as tfjs's 'wasm'
 * backend (replacing the single-threaded one); call `tf.setBackend('wasm')`
 * afterwards. Our training kernels (registerWasmTrainingKernels) work on it
 * unchanged. Resolves to the thread count asked of the pool (after
 * `tf.setBackend('wasm')`, tfjs-backend-wasm's `getThreadsCount()` confirms it).
 *
 * The thread pool's workers do not keep Node alive; `tf.removeBackend('wasm')`
 * ends them explicitly.
 */
export async function registerThreadedWasmBackend(options: ThreadedWasmOptions = {}): Promise<number> {
  const threads = Math.max(1, Math.min(8, Math.floor(options.threads ?? availableParallelism())));
  const dir = wasmOutDir();
  const require = createRequire(import.meta.url);
  // Cast: the build's glue is a CommonJS module exporting its factory.
  const factory = require(join(dir, `${BUILD}.js`)) as ModuleFactory;
  const wasmBytes = readFileSync(join(dir, `${BUILD}.wasm`));
  // Cast: Node always provides WebAssembly; only its typings are missing here.
  const WA = (globalThis as unknown as { WebAssembly: WebAssemblyApi }).WebAssembly;
  const worker = workerScript(dir);
  let memory: unknown;

  const module = await factory({
    locateFile: (path: string, prefix: string) => (path.endsWith('.worker.js') ? worker : prefix + path),
    // What each pthread worker evaluates to define the module factory.
    mainScriptUrlOrBlob: join(dir, `${BUILD}.js`),
    instantiateWasm: (info: Imports, receiveInstance: (instance: object, module: object) => void) => {
      // The pool size is capped at half of what this import reports.
      memory = info['env']?.['memory'];
      const env = { ...info['env'], emscripten_num_logical_cores: () => 2 * threads };
      void WA.instantiate(wasmBytes, { ...info, env }).then(({ instance, module: compiled }) =>
        receiveInstance(instance, compiled),
      );
      return {};
    },
  });
  // Where our SIMD kernels find the heap (see heapMemory in internals.ts).
  module.wasmMemory = memory;
  // The bridge tfjs's own loader sets up on the module.
  module.tfjs = {
    init: module.cwrap('init', null, []),
    initWithThreadsCount: module.cwrap('init_with_threads_count', null, ['number']),
    getThreadsCount: module.cwrap('get_threads_count', 'number', []),
    registerTensor: module.cwrap('register_tensor', null, ['number', 'number', 'number']),
    disposeData: module.cwrap('dispose_data', null, ['number']),
    dispose: module.cwrap('dispose', null, []),
  };
  tfWasm.setThreadsCount(threads);
  // Our own SIMD kernels split their work over as many threads.
  setKernelThreads(threads);
  if (tf.engine().registryFactory['wasm'] !== undefined) tf.removeBackend('wasm');
  // Cast: BackendWasm's constructor is typed with the package's module type,
  // which our structural view of the same object does not name.
  const Backend = tfWasm.BackendWasm as unknown as new (m: EmscriptenModule) => tf.KernelBackend;
  tf.registerBackend(
    'wasm',
    () => {
      // Constructing the backend starts the pool's threads, and Emscripten
      // keeps a running thread's worker referenced: the pool would then keep
      // Node alive after the program is done. Its threads never exit, so
      // unreference every worker.
      const backend = new Backend(module);
      const { unusedWorkers = [], runningWorkers = [] } = module.PThread ?? {};
      for (const w of [...unusedWorkers, ...runningWorkers]) w.unref?.();
      return backend;
    },
    2,
  );
  return threads;
}
