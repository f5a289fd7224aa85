// The server's Prometheus metrics, with prom-client: the names of the hand-written exporter this replaced
// (image_classifier_*), prom-client's default process and Node metrics (CPU, memory, event-loop lag,
// GC, handles; process_start_time_seconds is now the process's start), and the top-1 label of every
// prediction, whose mix drifting away from the training data's is a signal to look at the inputs.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Upper bounds (seconds) of the request and model-call latency histograms' buckets. */
export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Upper bounds of the batch size histogram's buckets. */
export const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128];

export interface ModelInfo {
  run: string;
  model: string;
  backend: string;
  classes: number;
  loadSeconds: number;
}

const P = 'image_classifier';

export class ServerMetrics {
  /** One registry per server, so two servers in one process (tests, a library user) do not clash. */
  readonly registry = new Registry();
  private readonly requests: Counter<'route' | 'status'>;
  private readonly latency: Histogram<'route' | 'status'>;
  private readonly images: Counter;
  private readonly batchSizes: Histogram;
  private readonly inference: Histogram;
  private readonly predictions: Counter<'label'>;
  readonly inFlight: Gauge;

  constructor(info: ModelInfo) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    new Gauge({
      name: `${P}_model_info`,
      help: 'The served model: its run (<experiment>/<run>), architecture and backend; always 1',
      labelNames: ['run', 'model', 'backend', 'classes'],
      registers,
    }).set({ run: info.run, model: info.model, backend: info.backend, classes: String(info.classes) }, 1);
    new Gauge({
      name: `${P}_model_load_seconds`,
      help: 'Seconds taken to select the backend and load the model',
      registers,
    }).set(info.loadSeconds);
    this.requests = new Counter({
      name: `${P}_http_requests_total`,
      help: 'HTTP requests by route and status',
      labelNames: ['route', 'status'],
      registers,
    });
    this.latency = new Histogram({
      name: `${P}_http_request_duration_seconds`,
      help: 'HTTP request latency by route and status',
      labelNames: ['route', 'status'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.inFlight = new Gauge({
      name: `${P}_http_requests_in_flight`,
      help: 'HTTP requests being handled',
      registers,
    });
    this.images = new Counter({ name: `${P}_images_predicted_total`, help: 'Images classified', registers });
    this.batchSizes = new Histogram({
      name: `${P}_inference_batch_size`,
      help: 'Images per model call (requests arriving together share one)',
      buckets: BATCH_BUCKETS,
      registers,
    });
    this.inference = new Histogram({
      name: `${P}_inference_duration_seconds`,
      help: 'Seconds per model call',
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.predictions = new Counter({
      name: `${P}_predictions_total`,
      help: 'Images classified by top-1 label (a shift in this mix is a drift signal)',
      labelNames: ['label'],
      registers,
    });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** One finished request: `route` is a known path or 'other' (see server.ts). */
  /** `status` is 'aborted' when the client went away before the answer was sent. */
  observeRequest(route: string, status: number | 'aborted', seconds: number): void {
    const labels = { route, status: String(status) };
    this.requests.inc(labels);
    this.latency.observe(labels, seconds);
  }

  /** One model call on `size` images that took `seconds`. */
  observeBatch(size: number, seconds: number): void {
    this.images.inc(size);
    this.batchSizes.observe(size);
    this.inference.observe(seconds);
  }

  /** One image's top-1 label (the model's class names: a bounded set). */
  observePrediction(label: string): void {
    this.predictions.inc({ label });
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }
}
