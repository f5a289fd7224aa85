// Typed access to the internals of @tensorflow/tfjs-backend-wasm 4.22 that our
// kernels need: tensor memory on the wasm heap and the compiled C entry points.
// tfjs does not export these as public API, so we describe the small part we
// use here and cast to it once, in this file.
import * as tf from '@tensorflow/tfjs';

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
  HEAPF32: Float32Array;
  HEAP32: Int32Array;
  cwrap(name: string, returnType: null | 'number', argTypes: string[]): (...args: number[]) => unknown;
}

/** The subset of `BackendWasm` our kernels rely on. */
export interface WasmBackend {
  wasm: WasmModule;
  dataIdMap: { get(dataId: object): WasmTensorData | undefined };
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  disposeData(dataId: object, force?: boolean): boolean;
}

/** Kernel functions receive the backend as `KernelBackend`; view it as wasm. */
export function asWasmBackend(backend: unknown): WasmBackend {
  // Cast: tfjs types the backend as the abstract KernelBackend; the kernels we
  // register are for 'wasm' only, so it is a BackendWasm at run time.
  const b = backend as WasmBackend;
  if (b == null || b.wasm == null || b.dataIdMap == null) {
    throw new Error('image-classifier: expected the tfjs wasm backend');
  }
  return b;
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
  const heap = backend.wasm.HEAPF32;
  const start = data.memoryOffset >>> 2;
  return heap.subarray(start, start + size);
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
