// The native addon (native/addon.c, a Node-API module built by node-gyp at install time where a C
// compiler and Node's headers exist): its functions with their parameters, and loading it.
// Tensors live on the tfjs wasm backend's heap: every kernel takes a Uint8Array over that heap
// (heapBytes) and byte offsets into it, computes in place and returns. The addon refuses a call
// with another number of arguments (a TypeError naming the function).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { heapMemory, type WasmBackend } from '../wasm/internals.js';

/**
 * The addon's functions. Offsets (x, filter, out, ...) are byte offsets into `heap`; shapes are NHWC
 * (n, h, w, c), filters HWIO (kh, kw, c, f); `threads` is how many OpenMP threads may run the kernel.
 */
export interface NativeAddon {
  /** The best instruction set this CPU has: 2 AVX-512, 1 AVX2 with FMA, 0 neither. */
  isa(): number;
  /** Restricts the kernels to instruction set `isa` (-1: the best); returns the one used. */
  useIsa(isa: number): number;
  /** out [n, oh, ow, f] = x conv filter (+ bias; -1: none), then ReLU when relu is 1. */
  convForward(
    heap: Uint8Array,
    x: number,
    n: number,
    h: number,
    w: number,
    c: number,
    filter: number,
    kh: number,
    kw: number,
    f: number,
    sh: number,
    sw: number,
    pt: number,
    pl: number,
    oh: number,
    ow: number,
    bias: number,
    relu: number,
    out: number,
    threads: number,
  ): void;
  /** dx [n, h, w, c] of a convolution given dy [n, oh, ow, f] and its filter. */
  convBackpropInput(
    heap: Uint8Array,
    dy: number,
    n: number,
    oh: number,
    ow: number,
    f: number,
    filter: number,
    kh: number,
    kw: number,
    c: number,
    pt: number,
    pl: number,
    h: number,
    w: number,
    dx: number,
    threads: number,
    sh: number,
    sw: number,
  ): void;
  /** dw [kh, kw, c, f] of a convolution given its input x and dy [n, oh, ow, f]. */
  convBackpropFilter(
    heap: Uint8Array,
    x: number,
    n: number,
    h: number,
    w: number,
    c: number,
    dy: number,
    oh: number,
    ow: number,
    f: number,
    kh: number,
    kw: number,
    sh: number,
    sw: number,
    pt: number,
    pl: number,
    dw: number,
    threads: number,
  ): void;
  /** out [m, n] = op(a) op(b) (+ bias; -1: none; then ReLU when relu is 1); not both transposed. */
  matMul(
    heap: Uint8Array,
    a: number,
    b: number,
    out: number,
    m: number,
    k: number,
    n: number,
    transposeA: number,
    transposeB: number,
    bias: number,
    relu: number,
    threads: number,
  ): void;
  /** Batch norm's passes, as our SIMD loops' (src/backends/wasm/simd/batch-norm.ts), any c. */
  bnStats(
    heap: Uint8Array,
    x: number,
    rows: number,
    c: number,
    sum: number,
    sumSq: number,
    threads: number,
  ): void;
  bnApply(
    heap: Uint8Array,
    x: number,
    y: number,
    rows: number,
    c: number,
    scale: number,
    shift: number,
    threads: number,
  ): void;
  bnGradStats(
    heap: Uint8Array,
    dy: number,
    x: number,
    mean: number,
    rows: number,
    c: number,
    sumDy: number,
    sumDyXc: number,
    threads: number,
  ): void;
  bnGradApply(
    heap: Uint8Array,
    dy: number,
    x: number,
    dx: number,
    rows: number,
    c: number,
    a: number,
    b: number,
    mean: number,
    d: number,
    threads: number,
  ): void;
  /** y = max(x, 0) over n floats. */
  relu(heap: Uint8Array, x: number, y: number, n: number, threads: number): void;
  /** dx = dy * (x > 0 ? 1 : 0) over n floats. */
  reluGrad(heap: Uint8Array, dy: number, x: number, dx: number, n: number, threads: number): void;
  /** y [n, oh, ow, c]: max pooling of x with a kh x kw window. */
  maxPool(
    heap: Uint8Array,
    x: number,
    n: number,
    h: number,
    w: number,
    c: number,
    kh: number,
    kw: number,
    sh: number,
    sw: number,
    pt: number,
    pl: number,
    oh: number,
    ow: number,
    y: number,
    threads: number,
  ): void;
  /** dx for dy, given the pooling's input x and output y. */
  maxPoolGrad(
    heap: Uint8Array,
    x: number,
    n: number,
    h: number,
    w: number,
    c: number,
    kh: number,
    kw: number,
    sh: number,
    sw: number,
    pt: number,
    pl: number,
    oh: number,
    ow: number,
    y: number,
    dy: number,
    dx: number,
    threads: number,
  ): void;
}

/** A max pooling's geometry, as maxPool and maxPoolGrad take it after x. */
export type PoolGeometry = [
  n: number,
  h: number,
  w: number,
  c: number,
  kh: number,
  kw: number,
  sh: number,
  sw: number,
  pt: number,
  pl: number,
  oh: number,
  ow: number,
];

/** The addon and the threads its kernels may use: what the wasm backend takes to run natively. */
export interface NativeKernels {
  addon: NativeAddon;
  threads: number;
}

export const NATIVE_ADDON_PATH = fileURLToPath(
  new URL('../../../build/Release/image_classifier_native.node', import.meta.url),
);

const ISA_NAMES = ['none', 'avx2', 'avx512'] as const;
export type NativeIsa = (typeof ISA_NAMES)[number];

let loaded: NativeAddon | undefined;

/**
 * Loads the addon (once) and names the instruction set its kernels use; throws
 * with the reason it cannot be used (not built, no AVX2/FMA). The addon's
 * `useIsa` restricts the instruction set (tests compare the two builds).
 */
export function loadNativeAddon(): { addon: NativeAddon; isa: NativeIsa } {
  if (loaded === undefined) {
    if (!existsSync(NATIVE_ADDON_PATH)) {
      throw new Error(
        'native addon not built (needs a C compiler and Node headers: npm rebuild image-classifier)',
      );
    }
    // OpenMP's threads otherwise spin for a while after each kernel, taking the
    // cores from the wasm backend's threads that run the next (non-native) kernel.
    process.env.OMP_WAIT_POLICY ??= 'PASSIVE';
    const require = createRequire(import.meta.url);
    // Cast: a Node-API module's exports are untyped; native/addon.c defines them as above.
    loaded = require(NATIVE_ADDON_PATH) as NativeAddon;
  }
  const isa = ISA_NAMES[loaded.isa()] ?? 'none';
  if (isa === 'none') throw new Error('this CPU has neither AVX2 with FMA nor AVX-512');
  return { addon: loaded, isa };
}

// A view over the whole heap, per heap buffer (a grown heap is a new buffer).
const heapViews = new WeakMap<ArrayBufferLike, Uint8Array>();

/** The addon's `heap` argument: the whole wasm heap as bytes. */
export function heapBytes(backend: WasmBackend): Uint8Array {
  const buffer = heapMemory(backend)?.buffer ?? backend.wasm.HEAPF32.buffer;
  let view = heapViews.get(buffer);
  if (view === undefined) {
    view = new Uint8Array(buffer);
    heapViews.set(buffer, view);
  }
  return view;
}
