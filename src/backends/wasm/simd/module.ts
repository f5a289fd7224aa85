// Small WebAssembly SIMD loops that run directly on the tfjs wasm backend's heap (they import its
// memory): batch norm's full-size passes, the conv filter gradient, the max-pool gradient, the bias
// Add and the SGD update, one file each in this folder. Plain JS loops over the heap ran 4-8x
// slower; these are built at run time with ./asm.ts. All loops run in a fixed order, so results
// are bit-identical run to run. Pointers are byte offsets into the heap.
import { buildModule } from './asm.js';
import type { WasmMemory } from '../internals.js';
import { addFuncs, type AddSimd } from './add.js';
import { batchNormFuncs, type BatchNormSimd } from './batch-norm.js';
import { convFilterGradFuncs, type ConvFilterGradSimd } from './conv-filter-grad.js';
import { maxPoolGradFuncs, type MaxPoolGradSimd } from './max-pool-grad.js';
import { sgdFuncs, type SgdSimd } from './sgd.js';

/** The parts of the global WebAssembly API we use (not in our tsconfig libs). */
interface WebAssemblyApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: Record<string, Record<string, unknown>>) => { exports: unknown };
}
// Cast: Node always provides WebAssembly; only its typings are missing here.
const WA = (globalThis as unknown as { WebAssembly: WebAssemblyApi }).WebAssembly;

/** The module's exports. */
export type SimdKernels = BatchNormSimd & ConvFilterGradSimd & MaxPoolGradSimd & AddSimd & SgdSimd;

/** Compiled modules: for a plain and for a shared (threaded build) memory. */
const compiled = new Map<boolean, object | null>();
const instances = new WeakMap<WasmMemory, SimdKernels>();

/**
 * Our kernels as a compiled WebAssembly.Module, importing a plain or a shared
 * memory; null where WebAssembly SIMD is not available.
 */
export function simdModule(sharedMemory: boolean): object | null {
  let mod = compiled.get(sharedMemory);
  if (mod === undefined) {
    const bytes = buildModule(
      [...batchNormFuncs(), ...convFilterGradFuncs(), ...maxPoolGradFuncs(), ...addFuncs(), ...sgdFuncs()],
      sharedMemory,
    );
    mod = WA.validate(bytes) ? new WA.Module(bytes) : null;
    compiled.set(sharedMemory, mod);
  }
  return mod;
}

/**
 * The kernels bound to `memory`, or null where WebAssembly SIMD is not
 * available (callers then use their plain JS loops).
 */
export function simdKernels(memory: WasmMemory | undefined): SimdKernels | null {
  if (memory === undefined) return null;
  let k = instances.get(memory);
  if (k !== undefined) return k;
  const shared = typeof SharedArrayBuffer !== 'undefined' && memory.buffer instanceof SharedArrayBuffer;
  const mod = simdModule(shared);
  if (mod === null) return null;
  const instance = new WA.Instance(mod, { env: { memory } });
  // Cast: the exports are the functions defined in this folder.
  k = instance.exports as unknown as SimdKernels;
  instances.set(memory, k);
  return k;
}
