// The server's metrics in the Prometheus text format (version 0.0.4): a few counters, gauges and
// histograms kept by hand, which is all a scrape needs and spares a client library.

/** Upper bounds (seconds) of the request latency histogram's buckets. */
export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Upper bounds of the batch size histogram's buckets. */
export const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128];

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

type Labels = Record<string, string>;

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function labelText(labels: Labels): string {
  const entries = Object.entries(labels);
  if (entries.length === 0) return '';
  return `{${entries.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(',')}}`;
}

/** Prometheus writes +Inf, -Inf and NaN like this; numbers as JavaScript prints them. */
function numberText(value: number): string {
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

class Histogram {
  private readonly series = new Map<
    string,
    { labels: Labels; counts: number[]; sum: number; count: number }
  >();
  constructor(readonly buckets: number[]) {}

  observe(labels: Labels, value: number): void {
    const key = labelText(labels);
    let s = this.series.get(key);
    if (!s) {
      s = { labels, counts: new Array<number>(this.buckets.length).fill(0), sum: 0, count: 0 };
      this.series.set(key, s);
    }
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]!) s.counts[i]!++;
    s.sum += value;
    s.count++;
  }

  lines(name: string): string[] {
    const out: string[] = [];
    for (const s of this.series.values()) {
      this.buckets.forEach((le, i) => {
        out.push(`${name}_bucket${labelText({ ...s.labels, le: numberText(le) })} ${s.counts[i]}`);
      });
      out.push(`${name}_bucket${labelText({ ...s.labels, le: '+Inf' })} ${s.count}`);
      out.push(`${name}_sum${labelText(s.labels)} ${numberText(s.sum)}`);
      out.push(`${name}_count${labelText(s.labels)} ${s.count}`);
    }
    return out;
  }
}

class Counter {
  private readonly series = new Map<string, number>();
  inc(labels: Labels = {}, by = 1): void {
    const key = labelText(labels);
    this.series.set(key, (this.series.get(key) ?? 0) + by);
  }
  get(labels: Labels = {}): number {
    return this.series.get(labelText(labels)) ?? 0;
  }
  lines(name: string): string[] {
    return [...this.series].map(([key, value]) => `${name}${key} ${value}`);
  }
}

export interface ModelInfo {
  run: string;
  model: string;
  backend: string;
  classes: number;
  loadSeconds: number;
}

export class ServerMetrics {
  private readonly requests = new Counter();
  private readonly latency = new Histogram(LATENCY_BUCKETS);
  private readonly images = new Counter();
  private readonly batchSizes = new Histogram(BATCH_BUCKETS);
  private readonly inference = new Histogram(LATENCY_BUCKETS);
  inFlight = 0;
  private readonly startTime = Date.now() / 1000;

  constructor(private readonly info: ModelInfo) {}

  /** One finished request: `route` is a known path or 'other', so unknown URLs cannot grow the series. */
  /** `status` is 'aborted' when the client went away before the answer was sent. */
  observeRequest(route: string, status: number | 'aborted', seconds: number): void {
    const labels = { route, status: String(status) };
    this.requests.inc(labels);
    this.latency.observe(labels, seconds);
  }

  /** One model call on `size` images that took `seconds`. */
  observeBatch(size: number, seconds: number): void {
    this.images.inc({}, size);
    this.batchSizes.observe({}, size);
    this.inference.observe({}, seconds);
  }

  requestCount(route: string, status: number | 'aborted'): number {
    return this.requests.get({ route, status: String(status) });
  }

  render(): string {
    const p = 'image_classifier';
    const blocks: Array<[string, string, string, string[]]> = [
      [
        `${p}_model_info`,
        'gauge',
        'The served model: its run (<experiment>/<run>), architecture and backend; always 1',
        [
          `${p}_model_info${labelText({
            run: this.info.run,
            model: this.info.model,
            backend: this.info.backend,
            classes: String(this.info.classes),
          })} 1`,
        ],
      ],
      [
        `${p}_model_load_seconds`,
        'gauge',
        'Seconds taken to select the backend and load the model',
        [`${p}_model_load_seconds ${this.info.loadSeconds}`],
      ],
      [
        `${p}_http_requests_total`,
        'counter',
        'HTTP requests by route and status',
        this.requests.lines(`${p}_http_requests_total`),
      ],
      [
        `${p}_http_request_duration_seconds`,
        'histogram',
        'HTTP request latency by route and status',
        this.latency.lines(`${p}_http_request_duration_seconds`),
      ],
      [
        `${p}_http_requests_in_flight`,
        'gauge',
        'HTTP requests being handled',
        [`${p}_http_requests_in_flight ${this.inFlight}`],
      ],
      [
        `${p}_images_predicted_total`,
        'counter',
        'Images classified',
        [`${p}_images_predicted_total ${this.images.get()}`],
      ],
      [
        `${p}_inference_batch_size`,
        'histogram',
        'Images per model call (requests arriving together share one)',
        this.batchSizes.lines(`${p}_inference_batch_size`),
      ],
      [
        `${p}_inference_duration_seconds`,
        'histogram',
        'Seconds per model call',
        this.inference.lines(`${p}_inference_duration_seconds`),
      ],
      [
        'process_resident_memory_bytes',
        'gauge',
        'Resident memory size in bytes',
        [`process_resident_memory_bytes ${process.memoryUsage.rss()}`],
      ],
      [
        'process_start_time_seconds',
        'gauge',
        'Start time of the server since the Unix epoch in seconds',
        [`process_start_time_seconds ${this.startTime}`],
      ],
    ];
    const lines: string[] = [];
    for (const [name, type, help, samples] of blocks) {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...samples);
    }
    return lines.join('\n') + '\n';
  }
}
