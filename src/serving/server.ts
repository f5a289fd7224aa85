// The HTTP API of a trained model, on node:http (no server framework is installed, and five routes do
// not need one): POST /predict, GET /healthz, GET /metrics (Prometheus), GET /model (run.json).
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { MicroBatcher, type BatcherOptions } from './batcher.js';
import { METRICS_CONTENT_TYPE, ServerMetrics } from './metrics.js';
import type { ClassifierModel, LabelProbability } from './model.js';
import { boundaryOf, MultipartError, parseContentType, parseMultipart } from './multipart.js';
import { redactConfig, redactText } from '../util/redact.js';
import { firstLine } from '../errors.js';
import { SERVING_DEFAULTS } from '../model-options.js';

/** Batching: see src/serving/batcher.ts for why these (measured). */
const DEFAULT_BATCHING: BatcherOptions = {
  maxBatch: SERVING_DEFAULTS.maxBatch,
  windowMs: SERVING_DEFAULTS.batchWindowMs,
};

export interface ServerOptions {
  /** Largest request body accepted, in bytes (default 10 MiB); larger ones get 413. */
  maxBodyBytes?: number;
  /** Most images in one multipart request (default 64). */
  maxImages?: number;
  /** Labels returned per image unless the request asks (?top_k=N); default 3. */
  topK?: number;
  /** Micro-batching of concurrent requests; `{ maxBatch: 1 }` turns it off. */
  batching?: Partial<BatcherOptions>;
  /** Called with one line per request; omit it for no request log. */
  log?: (line: string) => void;
  /** How long close() lets in-flight requests finish before cutting their connections (default 10 s). */
  shutdownTimeoutMs?: number;
}

export interface ClassifierServer {
  readonly server: Server;
  readonly metrics: ServerMetrics;
  /** Starts listening (port 0: any free port); resolves to where. */
  listen(port?: number, host?: string): Promise<{ url: string; host: string; port: number }>;
  /** Stops accepting connections, lets in-flight requests finish, then resolves. */
  close(): Promise<void>;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

const ROUTES: Record<string, string[]> = {
  '/predict': ['POST'],
  '/healthz': ['GET', 'HEAD'],
  '/metrics': ['GET', 'HEAD'],
  '/model': ['GET', 'HEAD'],
};

const IMAGE_TYPES_HINT =
  'an image (image/png, image/jpeg, image/webp, ...) or multipart/form-data with images';

function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body) + '\n';
  res.writeHead(status, {
    ...headers,
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
  });
  res.end(text);
}

/** Reads the body, refusing (413) one over `max` bytes before or while it arrives. */
function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  const tooLarge = () => new HttpError(413, `request body larger than the limit of ${max} bytes`);
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > max) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    // A client that disconnects mid-upload: Node emits 'aborted'/'error' ('aborted', ECONNRESET) and
    // never 'end'; the promise must still settle.
    req.once('close', () => {
      if (!req.complete) reject(new ClientGone());
    });
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        req.off('data', onData);
        chunks.length = 0;
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks, size)));
    req.once('error', reject);
  });
}

/** The client closed the connection before its request was complete. */
class ClientGone extends Error {
  constructor() {
    super('the client closed the connection before the request was complete');
  }
}

function isImageType(type: string | null): boolean {
  return type !== null && type.startsWith('image/');
}

export function createServer(model: ClassifierModel, options: ServerOptions = {}): ClassifierServer {
  const maxBodyBytes = options.maxBodyBytes ?? SERVING_DEFAULTS.maxBodyBytes;
  const maxImages = options.maxImages ?? SERVING_DEFAULTS.maxImages;
  const defaultTopK = options.topK ?? 3;
  const shutdownTimeoutMs = options.shutdownTimeoutMs ?? 10_000;
  const numClasses = model.classNames.length;
  const metrics = new ServerMetrics({
    run: model.runId,
    model: model.manifest.config.model,
    backend: model.backend.name,
    classes: numClasses,
    loadSeconds: model.loadSeconds,
  });
  const batcher = new MicroBatcher(
    // Every class ranked, so each request can take the top-k it asked for.
    (images) => model.classify(images, numClasses),
    { ...DEFAULT_BATCHING, ...options.batching },
    (size, seconds) => metrics.observeBatch(size, seconds),
  );
  let closing: Promise<void> | null = null;
  /** Responses not yet sent: told to close their connection when a shutdown starts. */
  const active = new Set<ServerResponse>();

  function topKOf(url: URL): number {
    const raw = url.searchParams.get('top_k') ?? url.searchParams.get('topK');
    if (raw === null) return defaultTopK;
    const k = Number(raw);
    if (!Number.isInteger(k) || k < 1)
      throw new HttpError(400, `top_k must be a positive integer (got ${raw})`);
    return Math.min(k, numClasses);
  }

  async function decode(data: Buffer, what: string): Promise<Uint8Array> {
    if (data.length === 0) throw new HttpError(400, `${what} is empty`);
    try {
      return await model.decode(data);
    } catch (error) {
      throw new HttpError(400, `${what} cannot be read as an image (${firstLine(error)})`);
    }
  }

  async function predictRoute(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const header = req.headers['content-type'];
    // The body is read (up to the limit) before it is judged, so the connection stays usable.
    const body = await readBody(req, maxBodyBytes);
    const topK = topKOf(url);
    if (header === undefined) throw new HttpError(415, `missing Content-Type: send ${IMAGE_TYPES_HINT}`);
    const { type } = parseContentType(header);
    /** `part` is set for the images of a multipart body: its field and file name. */
    let images: Array<{ data: Buffer; part?: { field: string | null; filename: string | null } }>;
    if (isImageType(type)) {
      if (body.length === 0) throw new HttpError(400, 'empty body: send an image');
      images = [{ data: body }];
    } else if (type === 'multipart/form-data') {
      if (body.length === 0) throw new HttpError(400, 'empty body: send a form with images');
      let parts;
      try {
        parts = parseMultipart(body, boundaryOf(header), { maxParts: maxImages * 4 });
      } catch (error) {
        if (error instanceof MultipartError)
          throw new HttpError(400, `malformed multipart body: ${error.message}`);
        throw error;
      }
      // File parts are the images; plain text fields are ignored.
      const files = parts.filter((p) => p.filename !== null || isImageType(p.contentType));
      for (const part of files) {
        const type = part.contentType ?? 'application/octet-stream';
        // Browsers send application/octet-stream for files whose type they do not know.
        if (!isImageType(type) && type !== 'application/octet-stream') {
          throw new HttpError(
            415,
            `part ${JSON.stringify(part.filename ?? part.name)} is ${type}, not an image`,
          );
        }
      }
      if (files.length === 0) throw new HttpError(400, 'the form holds no files: send images as file fields');
      if (files.length > maxImages) throw new HttpError(413, `more than ${maxImages} images in one request`);
      images = files.map((p) => ({ data: p.data, part: { field: p.name, filename: p.filename } }));
    } else {
      throw new HttpError(415, `Content-Type ${type} is not accepted: send ${IMAGE_TYPES_HINT}`);
    }
    const decoded = await Promise.all(
      images.map(({ data, part }, i) =>
        decode(data, part ? `image ${JSON.stringify(part.filename ?? part.field ?? i)}` : 'the body'),
      ),
    );
    const predictions = await Promise.all(decoded.map((image) => batcher.submit(image)));
    sendJson(res, 200, {
      run: model.runId,
      predictions: predictions.map((p, i) => {
        const top: LabelProbability[] = p.top.slice(0, topK);
        // Multipart images say which part they answer: the form field and the file name.
        return { ...images[i]!.part, label: p.label, probability: p.probability, top };
      }),
    });
  }

  async function handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const methods = ROUTES[url.pathname];
    if (!methods)
      throw new HttpError(
        404,
        `no route ${url.pathname}: try POST /predict, GET /healthz, /metrics or /model`,
      );
    if (!methods.includes(req.method ?? '')) {
      throw new HttpError(405, `${req.method} is not allowed on ${url.pathname} (${methods.join(', ')})`, {
        Allow: methods.join(', '),
      });
    }
    switch (url.pathname) {
      case '/predict':
        return predictRoute(req, res, url);
      case '/healthz':
        // While shutting down, a connection kept alive hears it and goes elsewhere.
        return closing
          ? sendJson(res, 503, { status: 'shutting down', run: model.runId })
          : sendJson(res, 200, { status: 'ok', run: model.runId });
      case '/metrics': {
        const text = metrics.render();
        res.writeHead(200, {
          'Content-Type': METRICS_CONTENT_TYPE,
          'Content-Length': Buffer.byteLength(text),
        });
        res.end(text);
        return;
      }
      case '/model':
        // As run.json stores it; a manifest from before downloads were redacted is redacted here.
        return sendJson(res, 200, {
          ...model.manifest,
          config: redactConfig(model.manifest.config),
          command: redactText(model.manifest.command),
        });
    }
  }

  const server = createHttpServer((req, res) => {
    const started = performance.now();
    metrics.inFlight++;
    let route = 'other';
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://localhost');
      if (url.pathname in ROUTES) route = url.pathname;
    } catch {
      url = new URL('http://localhost/');
    }
    if (closing) res.setHeader('Connection', 'close');
    active.add(res);
    res.once('close', () => {
      active.delete(res);
      metrics.inFlight--;
      const seconds = (performance.now() - started) / 1000;
      // The connection closed before the whole answer went out: the client gave up (or the upload
      // was cut off). No status reached it, so none is logged.
      const status = res.writableFinished ? res.statusCode : 'aborted';
      metrics.observeRequest(route, status, seconds);
      options.log?.(
        `${new Date().toISOString()} ${req.method} ${req.url} ${status} ${(seconds * 1000).toFixed(1)} ms`,
      );
    });
    handle(req, res, url).catch((error: unknown) => {
      // A client that went away mid-request: nothing to answer, and nothing went wrong here.
      if (!(error instanceof HttpError) && (error instanceof ClientGone || req.socket.destroyed)) {
        res.destroy();
        return;
      }
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (error instanceof HttpError) {
        // A body left unread (over the limit) is not drained: the connection closes after the answer.
        const headers = error.status === 413 ? { ...error.headers, Connection: 'close' } : error.headers;
        sendJson(res, error.status, { error: error.message }, headers);
        if (error.status === 413) req.resume();
      } else {
        options.log?.(`error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
        sendJson(res, 500, { error: `internal error: ${firstLine(error)}` });
      }
    });
  });
  // A request must arrive whole within a minute; slow or stalled clients do not hold a slot forever.
  server.requestTimeout = 60_000;
  // curl sends `Expect: 100-continue` for big uploads: refuse an oversized one before it is sent.
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > maxBodyBytes) {
      metrics.observeRequest(req.url?.split('?')[0] === '/predict' ? '/predict' : 'other', 413, 0);
      sendJson(
        res,
        413,
        { error: `request body larger than the limit of ${maxBodyBytes} bytes` },
        { Connection: 'close' },
      );
      return;
    }
    res.writeContinue();
    server.emit('request', req, res);
  });

  return {
    server,
    metrics,
    listen(port: number = SERVING_DEFAULTS.port, host: string = SERVING_DEFAULTS.host) {
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          const address = server.address() as AddressInfo;
          const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address;
          resolve({ url: `http://${shown}:${address.port}`, host: address.address, port: address.port });
        });
      });
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        if (!server.listening) return resolve();
        const force = setTimeout(() => server.closeAllConnections(), shutdownTimeoutMs);
        force.unref();
        server.close(() => {
          clearTimeout(force);
          resolve();
        });
        // Idle keep-alive connections close now; busy ones after their response (Connection: close).
        for (const res of active) if (!res.headersSent) res.setHeader('Connection', 'close');
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}
