// Replacing a backend's kernels with ours, reversibly: tests and benchmarks compare ours with the
// stock kernels, and a later registration may ask for fewer of ours (wasm without the native
// addon) than an earlier one did.
import * as tf from '@tensorflow/tfjs';

export type KernelMaker = [kernelName: string, make: () => tf.KernelConfig];

/** The kernel registered for `kernelName` on `backendName`, if any. */
function registered(kernelName: string, backendName: string): tf.KernelConfig | undefined {
  // getKernel's typings say it always returns a config; it returns undefined when none is registered.
  return tf.getKernel(kernelName, backendName) as tf.KernelConfig | undefined;
}

/**
 * Whether the active backend has a kernel for `kernelName`: our fused ops (batch norm, ReLU's
 * gradient, SGD) run theirs where it does and the same arithmetic as tfjs ops elsewhere.
 */
export function hasKernel(kernelName: string): boolean {
  return registered(kernelName, tf.getBackend()) !== undefined;
}

export class KernelRegistry {
  /** The stock kernels we replaced, by kernel name (undefined: there was none). */
  private readonly stock = new Map<string, tf.KernelConfig | undefined>();
  /** The configs we registered, to recognise them across calls. */
  private readonly ours = new Set<tf.KernelConfig>();

  constructor(readonly backendName: string) {}

  private current(kernelName: string): tf.KernelConfig | undefined {
    return registered(kernelName, this.backendName);
  }

  /** The backend's own kernel for `kernelName`, whether or not ours replaces it now. */
  stockKernel(kernelName: string): tf.KernelConfig | undefined {
    if (this.stock.has(kernelName)) return this.stock.get(kernelName);
    const k = this.current(kernelName);
    return k !== undefined && !this.ours.has(k) ? k : undefined;
  }

  private install(kernelName: string, make: () => tf.KernelConfig): void {
    const now = this.current(kernelName);
    if (!this.stock.has(kernelName)) this.stock.set(kernelName, now);
    // Unregister first: registerKernel over an existing one logs a warning.
    if (now !== undefined) tf.unregisterKernel(kernelName, this.backendName);
    const config = make();
    tf.registerKernel(config);
    this.ours.add(config);
  }

  private restore(kernelName: string): void {
    const now = this.current(kernelName);
    if (now === undefined || !this.ours.has(now)) return;
    tf.unregisterKernel(kernelName, this.backendName);
    const original = this.stock.get(kernelName);
    if (original !== undefined) tf.registerKernel(original);
  }

  /**
   * Makes exactly `kernels` ours (but those named in `keepStock`): every other kernel an earlier
   * call replaced goes back to stock.
   */
  apply(kernels: KernelMaker[], keepStock: Iterable<string> = []): void {
    const keep = new Set(keepStock);
    for (const [name, make] of kernels) {
      if (keep.has(name)) this.restore(name);
      else this.install(name, make);
    }
    const names = new Set(kernels.map(([name]) => name));
    for (const name of this.stock.keys()) if (!names.has(name)) this.restore(name);
  }
}
