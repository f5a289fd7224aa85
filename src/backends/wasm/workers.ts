// Worker threads for our own SIMD kernels on the threaded wasm build, whose
// heap is a shared memory: each worker instantiates our kernel module on that
// same memory and runs one slice of a job while the calling thread runs
// another. Jobs are handed over through a small shared control block with
// Atomics (the caller blocks until every slice is done, as a kernel must).
// Callers split work into disjoint outputs, each summed in the same order
// whatever the split, so results do not depend on the thread count.
import { Worker } from 'node:worker_threads';
import { heapMemory, type WasmBackend, type WasmMemory } from './internals.js';
import { simdKernels, simdModule, type SimdKernels } from './simd/module.js';

export interface KernelPool {
  /** Threads that run slices: the caller plus the workers. */
  readonly threads: number;
  /**
   * Runs export `fn` of our SIMD module once per call (its arguments), with
   * calls[t] run in order by thread t (0: the calling thread, others:
   * workers); returns when all are done. Every call has the same arity.
   */
  run(fn: keyof SimdKernels, calls: number[][][]): void;
  /** Ends the workers. */
  stop(): void;
}

// Control block (Int32Array) per worker: [0] job sequence number (-1: stop),
// [1] sequence number of the last finished job (negated if it failed),
// [2] number of calls, [3] arguments per call, [4] export name length,
// [5..] export name chars, then the calls' arguments.
const CTRL_INTS = 1024;

// Plain JS: runs as an eval'd CommonJS worker script.
const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { memory, module, ctrlBuffer } = workerData;
const ctrl = new Int32Array(ctrlBuffer);
let exportsObj = null;
try {
  exportsObj = new WebAssembly.Instance(module, { env: { memory } }).exports;
} catch (e) {
  exportsObj = null;
}
let seen = 0;
for (;;) {
  Atomics.wait(ctrl, 0, seen);
  const seq = Atomics.load(ctrl, 0);
  if (seq === -1) break;
  seen = seq;
  let ok = exportsObj !== null;
  if (ok) {
    try {
      const calls = ctrl[2];
      const arity = ctrl[3];
      const nameLength = ctrl[4];
      let name = '';
      for (let i = 0; i < nameLength; i++) name += String.fromCharCode(ctrl[5 + i]);
      const fn = exportsObj[name];
      for (let c = 0; c < calls; c++) {
        const base = 5 + nameLength + c * arity;
        fn(...ctrl.subarray(base, base + arity));
      }
    } catch (e) {
      ok = false;
    }
  }
  Atomics.store(ctrl, 1, ok ? seq : -seq);
  Atomics.notify(ctrl, 1);
}
`;

let requestedThreads = 1;

/** Threads our kernels may use on a shared-memory (threaded) heap; set by registerThreadedWasmBackend. */
export function setKernelThreads(threads: number): void {
  requestedThreads = Math.max(1, Math.floor(threads));
}

interface WorkerSlot {
  worker: Worker;
  ctrl: Int32Array;
  seq: number;
}

const pools = new WeakMap<WasmMemory, KernelPool | null>();

function createPool(memory: WasmMemory, threads: number): KernelPool | null {
  const module = simdModule(true);
  const local = simdKernels(memory);
  if (module === null || local === null) return null;
  const slots: WorkerSlot[] = [];
  for (let i = 1; i < threads; i++) {
    const ctrlBuffer = new SharedArrayBuffer(4 * CTRL_INTS);
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { memory, module, ctrlBuffer } });
    // Idle workers must not keep the process alive.
    worker.unref();
    slots.push({ worker, ctrl: new Int32Array(ctrlBuffer), seq: 0 });
  }
  // Cast: the instance's exports are our functions, looked up by name.
  const localFns = local as unknown as Record<string, (...args: number[]) => void>;
  return {
    threads,
    stop(): void {
      for (const { ctrl } of slots) {
        Atomics.store(ctrl, 0, -1);
        Atomics.notify(ctrl, 0);
      }
    },
    run(fn: keyof SimdKernels, calls: number[][][]): void {
      const started: WorkerSlot[] = [];
      calls.slice(1).forEach((threadCalls, i) => {
        const slot = slots[i];
        if (slot === undefined) throw new Error('image-classifier: more jobs than kernel threads');
        const arity = threadCalls[0]?.length ?? 0;
        if (5 + fn.length + threadCalls.length * arity > CTRL_INTS) {
          throw new Error('image-classifier: kernel job too large');
        }
        const { ctrl } = slot;
        ctrl[2] = threadCalls.length;
        ctrl[3] = arity;
        ctrl[4] = fn.length;
        for (let k = 0; k < fn.length; k++) ctrl[5 + k] = fn.charCodeAt(k);
        // Int32Array stores heap offsets above 2 GiB wrapped; wasm reads the same bits.
        threadCalls.forEach((args, c) => ctrl.set(args, 5 + fn.length + c * arity));
        slot.seq++;
        Atomics.store(ctrl, 0, slot.seq);
        Atomics.notify(ctrl, 0);
        started.push(slot);
      });
      const mine = localFns[fn];
      if (mine === undefined) throw new Error(`image-classifier: no kernel ${fn}`);
      for (const args of calls[0] ?? []) mine(...args);
      for (const slot of started) {
        for (;;) {
          const done = Atomics.load(slot.ctrl, 1);
          if (done === slot.seq) break;
          if (done === -slot.seq) throw new Error(`image-classifier: kernel ${fn} failed on a worker thread`);
          // Bounded waits: a worker that died cannot hang us for long.
          if (Atomics.wait(slot.ctrl, 1, done, 120_000) === 'timed-out') {
            throw new Error(`image-classifier: kernel ${fn} timed out on a worker thread`);
          }
        }
      }
    },
  };
}

/**
 * The kernel pool for this backend's heap, or null where our kernels run on
 * the calling thread only (single-threaded build, or one thread requested).
 */
export function kernelPool(backend: WasmBackend): KernelPool | null {
  if (requestedThreads <= 1) return null;
  const memory = heapMemory(backend);
  if (memory === undefined || typeof SharedArrayBuffer === 'undefined') return null;
  if (!(memory.buffer instanceof SharedArrayBuffer)) return null;
  let pool = pools.get(memory);
  if (pool === undefined || (pool !== null && pool.threads !== requestedThreads)) {
    pool?.stop();
    pool = createPool(memory, requestedThreads);
    pools.set(memory, pool);
  }
  return pool;
}
