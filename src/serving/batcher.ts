// A micro-batcher: images submitted while the model is busy with the previous batch (or within
// `windowMs` of each other) go through the model in one call, up to `maxBatch` images; one call at a time.
//
// Kept because it measured faster (`npm run bench -- --serve`, vgg, wasm with 2 threads on 2 shared
// cores, one 256x256 JPEG per request): at concurrency 8 it took 2.8-3 images per model call and served
// 1.2-1.8x the requests/s of one call per image (e.g. 122 vs 89, 43 vs 24) with lower p50 and p99, since
// a vgg call on 8 images costs about 2x one on 1. A waiting window is off by default (0: only requests
// that arrive while the model is busy are batched): a 1 ms window cost 15-40% of the requests/s at
// concurrency 1 and gained nothing at 8. With --threads 1 batching neither helped nor hurt.
import type { Prediction } from './model.js';

export interface BatcherOptions {
  /** Most images per model call (1 turns batching off: one call per image, one at a time). */
  maxBatch: number;
  /** How long the first image of a batch waits for company when the model is idle, in ms. */
  windowMs: number;
}

interface Pending {
  image: Uint8Array;
  resolve: (prediction: Prediction) => void;
  reject: (error: unknown) => void;
}

export class MicroBatcher {
  private queue: Pending[] = [];
  private timer: NodeJS.Timeout | NodeJS.Immediate | null = null;
  private busy = false;

  constructor(
    /** Classifies decoded images in one model call. */
    private readonly classify: (images: Uint8Array[]) => Promise<Prediction[]>,
    private readonly options: BatcherOptions,
    private readonly onBatch: (size: number, seconds: number) => void = () => {},
  ) {}

  submit(image: Uint8Array): Promise<Prediction> {
    return new Promise((resolve, reject) => {
      this.queue.push({ image, resolve, reject });
      // While a batch runs, the next one gathers; it starts when that one is done.
      if (this.busy) return;
      if (this.queue.length >= this.options.maxBatch) {
        this.clearTimer();
        // Not inside submit(): the caller's other images (a multipart request) get to join first.
        setImmediate(() => void this.flush());
      } else if (this.timer === null) {
        // setTimeout waits at least 1 ms; a window of 0 means: once this turn of the event loop ends.
        this.timer =
          this.options.windowMs > 0
            ? setTimeout(() => void this.flush(), this.options.windowMs)
            : setImmediate(() => void this.flush());
      }
    });
  }

  /** Images waiting for a model call. */
  get pending(): number {
    return this.queue.length;
  }

  private clearTimer(): void {
    if (this.timer === null) return;
    if (this.options.windowMs > 0) clearTimeout(this.timer as NodeJS.Timeout);
    else clearImmediate(this.timer as NodeJS.Immediate);
    this.timer = null;
  }

  private async flush(): Promise<void> {
    this.clearTimer();
    if (this.busy || this.queue.length === 0) return;
    this.busy = true;
    const batch = this.queue.splice(0, Math.max(1, this.options.maxBatch));
    const started = performance.now();
    try {
      const predictions = await this.classify(batch.map((p) => p.image));
      this.onBatch(batch.length, (performance.now() - started) / 1000);
      batch.forEach((p, i) => p.resolve(predictions[i]!));
    } catch (error) {
      for (const p of batch) p.reject(error);
    } finally {
      this.busy = false;
    }
    // Whatever arrived meanwhile has waited long enough.
    if (this.queue.length > 0) setImmediate(() => void this.flush());
  }
}
