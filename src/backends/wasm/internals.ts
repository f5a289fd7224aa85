// Typed access to the internals of @tensorflow/tfjs-backend-wasm 4.22 that our
// kernels need: tensor memory on the wasm heap and the compiled C entry points.
// tfjs does not export these as public API, so we describe the small part we
// use here and cast to it once, in this file.
import * as tf from '@tensorflow/tfjs';

/**
 * A WebAssembly.Memory. Our tsconfig's libs (ES2022, no DOM) do not declare
 * the WebAssembly namespace, so we name the little we use ourselves.
 */
export interface WasmMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
}

/** What the wasm backend keeps per tensor (its `dataIdMap` values). */
interface WasmTensorData {
  /** Id that the C++ side knows the tensor by. */
  id: number;
  /** Byte offset of the tensor's data on the wasm heap. */
  memoryOffset: number;
  shape: number[];
  dtype: tf.DataType;
}

/** The Emscripten module behind the backend (the parts we touch). */
interface WasmModule {
  /** The instance's exports; `memory` is the heap (single-threaded builds). */
  asm?: { memory?: WasmMemory };
  /** The heap of a threaded build (imported, not exported; see threads.ts). */
  wasmMemory?: WasmMemory;
  HEAPF32: Float32Array;
  HEAP32: Int32Array;
  /** The heap's allocator: 0 when the heap cannot grow enough. */
  _malloc(bytes: number): number;
  cwrap(name: string, returnType: null | 'number', argTypes: string[]): (...args: number[]) => unknown;
}

/** The subset of `BackendWasm` our kernels rely on. */
export interface WasmBackend {
  wasm: WasmModule;
  dataIdMap: { get(dataId: object): WasmTensorData | undefined };
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  disposeData(dataId: object, force?: boolean): boolean;
  incRef(dataId: object): void;
  /** How many tensors share this data. */
  refCount(dataId: object): number;
}

/** Kernel functions receive the backend as `KernelBackend`; view it as wasm. */
export function asWasmBackend(backend: unknown): WasmBackend {
  // Cast: tfjs types the backend as the abstract KernelBackend; the kernels we
  // register are for 'wasm' only, so it is a BackendWasm at run time.
  const b = backend as WasmBackend;
  if (b == null || b.wasm == null || b.dataIdMap == null) {
    throw new Error('image-classifier: expected the tfjs wasm backend');
  }
  guardHeap(b.wasm);
  return b;
}

const guarded = new WeakSet<WasmModule>();

/**
 * tfjs-backend-wasm does not check malloc: when the heap cannot grow (4 GiB, all that wasm32
 * addresses) it places the tensor at address 0 and writes it over the heap's own bookkeeping: the
 * process then hangs in malloc at 100% CPU, deaf to Ctrl-C, or traps ("divide by zero"). A failed
 * allocation throws instead. Installed by the first of our kernels to run (the backend's smoke test
 * runs one), before any large tensor.
 */
function guardHeap(module: WasmModule): void {
  if (guarded.has(module)) return;
  guarded.add(module);
  const malloc = module._malloc.bind(module);
  module._malloc = (bytes: number): number => {
    const offset = malloc(bytes);
    if (offset === 0 && bytes > 0) {
      throw new Error(
        `out of memory: ${Math.ceil(bytes / 2 ** 20)} MiB more do not fit the WebAssembly heap (4 GiB at most); use a smaller --batch-size`,
      );
    }
    return offset;
  };
}

function tensorData(backend: WasmBackend, t: tf.TensorInfo): WasmTensorData {
  const data = backend.dataIdMap.get(t.dataId);
  if (data === undefined) throw new Error('image-classifier: tensor is not on the wasm backend');
  return data;
}

/** The C++ id of a tensor (what the wasm entry points take). */
export function wasmId(backend: WasmBackend, t: tf.TensorInfo): number {
  return tensorData(backend, t).id;
}

/**
 * A Float32Array view of a float32 tensor's data on the heap. Views go stale
 * when the heap grows (any allocation may grow it), so take views after
 * allocating the outputs of a step and do not keep them across allocations.
 */
export function f32View(backend: WasmBackend, t: tf.TensorInfo): Float32Array {
  const data = tensorData(backend, t);
  const size = t.shape.reduce((a, b) => a * b, 1);
  // The memory's current buffer rather than the module's HEAPF32: with the
  // threaded build a worker thread can grow the heap, and the main thread's
  // HEAP views are only refreshed lazily.
  const memory = heapMemory(backend);
  if (memory !== undefined) return new Float32Array(memory.buffer, data.memoryOffset, size);
  const start = data.memoryOffset >>> 2;
  return backend.wasm.HEAPF32.subarray(start, start + size);
}

/** Byte offset of a tensor's data on the heap (a pointer for wasm code). */
export function heapOffset(backend: WasmBackend, t: tf.TensorInfo): number {
  return tensorData(backend, t).memoryOffset;
}

/** The backend's heap as a WebAssembly.Memory (for our own wasm modules). */
export function heapMemory(backend: WasmBackend): WasmMemory | undefined {
  return backend.wasm.asm?.memory ?? backend.wasm.wasmMemory;
}

/** A typed view of a tensor's data (float32, int32 or bool) on the heap; see f32View. */
export function dataView(backend: WasmBackend, t: tf.TensorInfo): Float32Array | Int32Array | Uint8Array {
  const data = tensorData(backend, t);
  const size = t.shape.reduce((a, b) => a * b, 1);
  const memory = heapMemory(backend);
  const buffer = memory !== undefined ? memory.buffer : backend.wasm.HEAPF32.buffer;
  if (t.dtype === 'float32') return new Float32Array(buffer, data.memoryOffset, size);
  if (t.dtype === 'int32') return new Int32Array(buffer, data.memoryOffset, size);
  if (t.dtype === 'bool') return new Uint8Array(buffer, data.memoryOffset, size);
  throw new Error(`image-classifier: no heap view for ${t.dtype}`);
}

/** Allocate an uninitialised float32 tensor on the heap. */
export function allocF32(backend: WasmBackend, shape: number[]): tf.TensorInfo {
  return backend.makeOutput(shape, 'float32');
}

/** Free a temporary created with `allocF32` (never a kernel input or output). */
export function freeTemp(backend: WasmBackend, t: tf.TensorInfo): void {
  backend.disposeData(t.dataId, true);
}

type Conv2DFn = (
  xId: number,
  batch: number,
  inHeight: number,
  inWidth: number,
  filterId: number,
  filterHeight: number,
  filterWidth: number,
  padTop: number,
  padRight: number,
  padBottom: number,
  padLeft: number,
  isSamePad: number,
  dilationHeight: number,
  dilationWidth: number,
  strideHeight: number,
  strideWidth: number,
  inChannels: number,
  outChannels: number,
  outId: number,
) => void;

// One cwrap per Emscripten module; a new backend instance means a new module.
const conv2dFns = new WeakMap<WasmModule, Conv2DFn>();

/**
 * The backend's compiled `Conv2D` (XNNPACK, NHWC, filter HWIO, no bias).
 * Note that XNNPACK caches the packed filter keyed by the filter's tensor id
 * until that tensor is disposed, so a filter's data must not change while it
 * lives (true for all tfjs tensors; our temporaries are freed after one use).
 */
export function wasmConv2D(backend: WasmBackend): Conv2DFn {
  let fn = conv2dFns.get(backend.wasm);
  if (fn === undefined) {
    const raw = backend.wasm.cwrap('Conv2D', null, new Array<string>(19).fill('number'));
    fn = raw as Conv2DFn;
    conv2dFns.set(backend.wasm, fn);
  }
  return fn;
}

/**
 * Calls a stock kernel we replaced, for the cases we hand back to it. The
 * engine runs a kernel's setup only for kernels registered when the backend
 * initialises, and ours may have displaced the stock one before that, so run
 * its setup here, once per backend instance.
 */
export function stockCaller(
  config: tf.KernelConfig | undefined,
  kernelName: string,
): (params: Parameters<tf.KernelFunc>[0]) => ReturnType<tf.KernelFunc> {
  const setUp = new WeakSet<object>();
  return (params) => {
    if (config === undefined) throw new Error(`image-classifier: no stock wasm ${kernelName} for this case`);
    if (!setUp.has(params.backend)) {
      config.setupFunc?.(params.backend);
      setUp.add(params.backend);
    }
    return config.kernelFunc(params);
  };
}
