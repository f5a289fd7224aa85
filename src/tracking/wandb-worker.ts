// The @wandb/sdk side of `--wandb`, in a worker thread (wandb.ts says why): starts the W&B run,
// logs what the training thread sends, uploads the charts, and reports what failed.
//
// The SDK does not tell when an upload fails: a file_stream request answered with HTTP 500 counts as
// sent, a refused connection only prints to the console, and its "retries" await the same failed
// request again instead of sending it anew. So failures are observed on Node's HTTP diagnostics
// channels, which see every request the SDK makes (it uses node-fetch, on node:http).
import { createHash } from 'node:crypto';
import { subscribe } from 'node:diagnostics_channel';
import { readFile } from 'node:fs/promises';
import type { ClientRequest, IncomingMessage } from 'node:http';
import { basename } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import wandb from '@wandb/sdk';
import type { FromWorker, ToWorker, UploadReport, WorkerStart } from './wandb-protocol.js';

type Run = Awaited<ReturnType<typeof wandb.init>>;
type Kind = keyof UploadReport['failed'];

const start = workerData as WorkerStart;
const port = parentPort!;
const report: UploadReport = {
  failed: { metrics: 0, charts: 0, other: 0 },
  metricRequests: 0,
  reasons: [],
  pending: [],
};
let starting = true;
let run: Run | undefined;

const send = (message: FromWorker) => port.postMessage(message);

// The SDK reports on the console ("Retrying failed request...", "View run at ..."): not ours to print.
for (const method of ['log', 'info', 'warn', 'error', 'debug', 'trace'] as const) console[method] = () => {};

function failed(kind: Kind, reason: string): void {
  report.failed[kind]++;
  if (report.reasons.length < 3 && !report.reasons.includes(reason)) report.reasons.push(reason);
  if (starting) {
    // The SDK never sends a failed request again, so a failure while starting is final: say so now,
    // not after the SDK's ~20 minutes of "retrying".
    starting = false;
    send({ type: 'failed', reason, report });
  } else send({ type: 'status', report });
}

function message(error: unknown): string {
  const cause = (error as { cause?: { code?: string } } | null)?.cause?.code;
  const text = error instanceof Error ? error.message : String(error);
  return (cause ? `${text} (${cause})` : text).split('\n')[0]!.slice(0, 200);
}

// --- every HTTP request of the SDK, as it goes
const pending = new Map<ClientRequest, string>();
const kindOf = (request: ClientRequest): Kind =>
  request.path.endsWith('/file_stream') ? 'metrics' : 'other';
const nameOf = (request: ClientRequest) =>
  `${request.method} ${kindOf(request) === 'metrics' ? 'file_stream' : request.path.split('?')[0]}`;
// The training thread keeps the latest report, to say what was still waiting if W&B stops answering.
const update = () => {
  report.pending = [...pending.values()];
  send({ type: 'status', report });
};
const answered = (request: ClientRequest) => {
  pending.delete(request);
  update();
};

subscribe('http.client.request.start', (event) => {
  const { request } = event as { request: ClientRequest };
  if (kindOf(request) === 'metrics') report.metricRequests++;
  pending.set(request, nameOf(request));
  update();
});
subscribe('http.client.response.finish', (event) => {
  const { request, response } = event as { request: ClientRequest; response: IncomingMessage };
  answered(request);
  const status = response.statusCode ?? 0;
  if (status >= 400) {
    const hint = status === 401 || status === 403 ? ', is the API key right?' : '';
    failed(kindOf(request), `${nameOf(request)}: HTTP ${status}${hint}`);
  }
});
subscribe('http.client.request.error', (event) => {
  const { request, error } = event as { request: ClientRequest; error: NodeJS.ErrnoException };
  answered(request);
  failed(kindOf(request), `${nameOf(request)}: ${error.code ?? message(error)}`);
});

// The SDK throws from its own event listeners (e.g. when the run cannot be created).
process.on('uncaughtException', (error) => failed('other', message(error)));
process.on('unhandledRejection', (error) => failed('other', message(error)));

port.on('message', (msg: ToWorker) => {
  if (!run) return;
  if (msg.type === 'log') run.log(msg.data, msg.step, msg.commit);
  else void finish(run, msg);
});

async function finish(current: Run, msg: Extract<ToWorker, { type: 'finish' }>): Promise<void> {
  const charts = await uploadCharts(current, msg.files, msg.step);
  // Run.log() adds `_step`, so an empty log would still send a row.
  const data = { ...msg.data, ...charts };
  if (Object.keys(data).length > 0) current.log(data, msg.step);
  await current.finish(msg.exitCode);
  send({ type: 'finished', report });
}

// --- charts: the SDK cannot upload files or images (its Media types are stubs), so they go the way
// the Python SDK sends them: upload URLs from the GraphQL API (the SDK's own RunUploadUrls query,
// which it defines and never calls), a PUT of each file there, and an `image-file` value that shows
// the image in the run's summary and its last history row.
interface ImageFile {
  _type: 'image-file';
  format: 'png';
  path: string;
  sha256: string;
  size: number;
  width: number;
  height: number;
}

const RUN_UPLOAD_URLS = `query RunUploadUrls($name: String!, $files: [String]!, $entity: String, $run: String!) {
  model(name: $name, entityName: $entity) {
    bucket(name: $run) { id files(names: $files) { uploadHeaders edges { node { name url(upload: true) } } } }
  }
}`;

interface UploadUrlsAnswer {
  data?: {
    model?: {
      bucket?: {
        files?: { uploadHeaders?: string[] | null; edges: Array<{ node: { name: string; url: string } }> };
      } | null;
    } | null;
  };
  errors?: Array<{ message: string }>;
}

async function uploadCharts(current: Run, files: string[], step: number): Promise<Record<string, ImageFile>> {
  const charts: Record<string, ImageFile> = {};
  if (files.length === 0) return charts;
  try {
    const images = await Promise.all(
      files.map(async (file) => {
        const bytes = await readFile(file);
        const sha256 = createHash('sha256').update(bytes).digest('hex');
        const name = basename(file, '.png');
        const json: ImageFile = {
          _type: 'image-file',
          format: 'png',
          path: `media/images/${name}_${step}_${sha256.slice(0, 20)}.png`,
          sha256,
          size: bytes.length,
          // The PNG header: width and height, big-endian, at bytes 16 and 20.
          width: bytes.readUInt32BE(16),
          height: bytes.readUInt32BE(20),
        };
        return { name, bytes, json };
      }),
    );
    const targets = await uploadUrls(
      current,
      images.map((image) => image.json.path),
    );
    for (const image of images) {
      const url = targets.urls.get(image.json.path);
      if (!url) throw new Error(`no upload URL for ${image.json.path}`);
      // A signed storage URL: it gets the storage's headers, never the API key.
      const response = await fetch(new URL(url, start.baseUrl), {
        method: 'PUT',
        body: image.bytes,
        headers: targets.headers,
        signal: AbortSignal.timeout(start.requestTimeoutMs),
      });
      if (!response.ok) throw new Error(`PUT ${image.json.path}: HTTP ${response.status}`);
      charts[`charts/${image.name}`] = image.json;
    }
  } catch (error) {
    failed('charts', message(error));
  }
  return charts;
}

async function uploadUrls(
  current: Run,
  names: string[],
): Promise<{ urls: Map<string, string>; headers: Record<string, string> }> {
  const response = await fetch(`${start.baseUrl}/graphql`, {
    method: 'POST',
    headers: {
      Authorization: `Basic ${Buffer.from(`api:${start.apiKey}`).toString('base64')}`,
      'Content-Type': 'application/json',
    },
    body: JSON.stringify({
      query: RUN_UPLOAD_URLS,
      variables: { name: current.project, entity: current.entity, run: current.id, files: names },
    }),
    signal: AbortSignal.timeout(start.requestTimeoutMs),
  });
  if (!response.ok) throw new Error(`POST /graphql (upload URLs): HTTP ${response.status}`);
  const answer = (await response.json()) as UploadUrlsAnswer;
  const files = answer.data?.model?.bucket?.files;
  if (!files)
    throw new Error(
      `POST /graphql (upload URLs): ${answer.errors?.[0]?.message ?? 'no upload URLs in the answer'}`,
    );
  // "Name:value" strings, for the storage the URLs point to.
  const headers = Object.fromEntries(
    (files.uploadHeaders ?? []).map((h) => [h.slice(0, h.indexOf(':')), h.slice(h.indexOf(':') + 1)]),
  );
  return { urls: new Map(files.edges.map((e) => [e.node.name, e.node.url])), headers };
}

// --- start
try {
  const created = await wandb.init({
    project: start.project,
    entity: start.entity ?? undefined,
    name: start.name,
    config: start.config,
    settings: { apiKey: start.apiKey, baseUrl: start.baseUrl, offline: false, silent: true },
  });
  if (starting) {
    starting = false;
    run = created;
    send({ type: 'started', url: created.url(), entity: created.entity, project: created.project });
  }
} catch (error) {
  if (starting) {
    starting = false;
    send({ type: 'failed', reason: message(error), report });
  }
}
