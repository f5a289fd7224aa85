// The messages between the training thread (wandb.ts) and the W&B worker (wandb-worker.ts).

/** Given to the worker when it starts. */
export interface WorkerStart {
  baseUrl: string;
  apiKey: string;
  project: string;
  entity: string | null;
  /** The W&B run's display name. */
  name: string;
  config: Record<string, unknown>;
  requestTimeoutMs: number;
}

/** What failed so far, as the worker saw it on the wire (never holds the key). */
export interface UploadReport {
  /** Failed requests by what they carried: metrics (file_stream), charts, other (GraphQL). */
  failed: { metrics: number; charts: number; other: number };
  /** file_stream requests sent (metrics, summary and the run's end). */
  metricRequests: number;
  /** The first few failures, e.g. "POST file_stream: HTTP 500". */
  reasons: string[];
  /** Requests sent and not answered yet. */
  pending: string[];
}

export type ToWorker =
  | { type: 'log'; step: number; data: Record<string, number>; commit: boolean }
  | { type: 'finish'; step: number; data: Record<string, number>; files: string[]; exitCode: number };

export type FromWorker =
  | { type: 'started'; url: string; entity: string; project: string }
  | { type: 'failed'; reason: string; report: UploadReport }
  | { type: 'status'; report: UploadReport }
  | { type: 'finished'; report: UploadReport };
