// The HTTP API of a trained model on fastify: POST /predict, GET /healthz, GET /metrics (Prometheus),
// GET /model, GET /openapi.json and the interactive page at /docs. Fastify brings routing, content-type
// parsing with body limits, request ids, pino logs and the multipart, CORS and OpenAPI plugins; what is
// ours is the micro-batcher, the limits' messages and the drain on close().
import { randomUUID } from 'node:crypto';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import cors from '@fastify/cors';
import multipart from '@fastify/multipart';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, {
  LogController,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import {
  errorBody,
  healthResponse,
  jsonSchema,
  modelSummary,
  predictQuery,
  predictResponse,
} from './api-schema.js';
import { bearerTokenMatches } from './auth.js';
import { MicroBatcher, type BatcherOptions } from './batcher.js';
import { ServerMetrics } from './metrics.js';
import type { ClassifierModel, LabelProbability } from './model.js';
import { formatLogLine, type LogFormat } from './log.js';
import { redactConfig, redactText } from '../util/redact.js';
import { firstLine } from '../errors.js';
import { SERVING_DEFAULTS } from '../model-options.js';

/** Batching: see src/serving/batcher.ts for why these (measured). */
const DEFAULT_BATCHING: BatcherOptions = {
  maxBatch: SERVING_DEFAULTS.maxBatch,
  windowMs: SERVING_DEFAULTS.batchWindowMs,
};

/**
 * Behind a load balancer the server must not close an idle keep-alive connection before the balancer
 * does (AWS ALB, GCP and nginx default to 60 s), or a request sent on it as it closes gets a 502.
 */
export const KEEP_ALIVE_TIMEOUT_MS = 65_000;
/** A request (headers and body) must arrive whole within a minute: slow clients do not hold a slot. */
export const REQUEST_TIMEOUT_MS = 60_000;

export interface ServerOptions {
  /** Largest request body accepted, in bytes (default 10 MiB); larger ones get 413. */
  maxBodyBytes?: number;
  /** Most images in one multipart request (default 64). */
  maxImages?: number;
  /** Labels returned per image unless the request asks (?top_k=N); default 3. */
  topK?: number;
  /** Micro-batching of concurrent requests; `{ maxBatch: 1 }` turns it off. */
  batching?: Partial<BatcherOptions>;
  /** Called with each log line (one per request, and errors); omit it for no log. */
  log?: (line: string) => void;
  /** 'json' (default): pino's JSON, one object per line; 'text': time, request id, method, URL, status, ms. */
  logFormat?: LogFormat;
  /** How long close() lets in-flight requests finish before cutting their connections (default 10 s). */
  shutdownTimeoutMs?: number;
  /** Origins allowed to call from a browser ('*': any); none: no CORS headers, OPTIONS is 405. */
  corsOrigins?: string[];
  /** When set, /predict and /model need `Authorization: Bearer <token>`. */
  authToken?: string;
}

export interface ClassifierServer {
  readonly server: Server;
  readonly app: FastifyInstance;
  readonly metrics: ServerMetrics;
  /** Starts listening (port 0: any free port); resolves to where. */
  listen(port?: number, host?: string): Promise<{ url: string; host: string; port: number }>;
  /** Stops accepting connections, lets in-flight requests finish, then resolves. */
  close(): Promise<void>;
}

class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** The API's routes and their methods (405 with these in Allow for any other method). */
const ROUTES: Record<string, string[]> = {
  '/predict': ['POST'],
  '/healthz': ['GET', 'HEAD'],
  '/metrics': ['GET', 'HEAD'],
  '/model': ['GET', 'HEAD'],
  '/openapi.json': ['GET', 'HEAD'],
};

const IMAGE_TYPES_HINT =
  'an image (image/png, image/jpeg, image/webp, ...) or multipart/form-data with images';

/** A client's X-Request-Id is kept when it is short and plain (it goes into logs); else a new UUID. */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

function isImageType(type: string | undefined): boolean {
  return type !== undefined && type.toLowerCase().startsWith('image/');
}

/** A route label for the metrics: a known path, or 'other', so unknown URLs cannot grow the series. */
function routeLabel(url: string | undefined): string {
  const path = (url ?? '/').split('?')[0]!;
  if (path in ROUTES) return path;
  if (path === '/docs' || path.startsWith('/docs/')) return '/docs';
  return 'other';
}

function notFound(path: string): HttpError {
  return new HttpError(404, `no route ${path}: try POST /predict, GET /healthz, /metrics, /model or /docs`);
}

function tooLarge(max: number): HttpError {
  return new HttpError(413, `request body larger than the limit of ${max} bytes`, { Connection: 'close' });
}

/** Fastify's and @fastify/multipart's errors in this API's words (the old server's, kept). */
function asHttpError(error: unknown, maxBodyBytes: number, maxImages: number): HttpError | null {
  if (error instanceof HttpError) return error;
  const e = error as { code?: string; statusCode?: number; message?: string; validation?: unknown };
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
    case 'FST_REQ_FILE_TOO_LARGE':
      return tooLarge(maxBodyBytes);
    case 'FST_FILES_LIMIT':
      return new HttpError(413, `more than ${maxImages} images in one request`, { Connection: 'close' });
    case 'FST_PARTS_LIMIT':
      return new HttpError(413, 'too many parts in the multipart body', { Connection: 'close' });
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new HttpError(400, 'Content-Length does not match the body');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new HttpError(415, `a Content-Type that is not accepted: send ${IMAGE_TYPES_HINT}`);
    case 'FST_INVALID_MULTIPART_CONTENT_TYPE':
      return new HttpError(415, `not a multipart body: send ${IMAGE_TYPES_HINT}`);
  }
  if (e.validation !== undefined) return new HttpError(400, e.message ?? 'bad request');
  // busboy's own errors: a malformed or truncated form.
  const message = e.message ?? '';
  if (/unexpected end of (form|multipart data)/i.test(message))
    return new HttpError(400, 'truncated multipart body (the closing boundary is missing)');
  if (/Boundary not found|Malformed|Multipart/i.test(message))
    return new HttpError(400, `malformed multipart body: ${message}`);
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500)
    return new HttpError(e.statusCode, message);
  return null;
}

export function createServer(model: ClassifierModel, options: ServerOptions = {}): ClassifierServer {
  const maxBodyBytes = options.maxBodyBytes ?? SERVING_DEFAULTS.maxBodyBytes;
  const maxImages = options.maxImages ?? SERVING_DEFAULTS.maxImages;
  const defaultTopK = options.topK ?? SERVING_DEFAULTS.topK;
  const shutdownTimeoutMs = options.shutdownTimeoutMs ?? 10_000;
  const logFormat = options.logFormat ?? SERVING_DEFAULTS.logFormat;
  const authToken = options.authToken;
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
  const log = options.log;

  /** Requests refused before fastify sees them (Expect: 100-continue) still get a log line. */
  function logRequest(line: Record<string, unknown>): void {
    if (!log) return;
    log(formatLogLine(JSON.stringify({ level: 'info', time: new Date().toISOString(), ...line }), logFormat));
  }

  let httpServer!: Server;
  const app = Fastify({
    serverFactory: (handler) => {
      const server = createHttpServer(
        { requestTimeout: REQUEST_TIMEOUT_MS, headersTimeout: REQUEST_TIMEOUT_MS },
        handler,
      );
      server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
      // curl sends `Expect: 100-continue` for big uploads: refuse an oversized one before it is sent.
      server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
        const declared = Number(req.headers['content-length']);
        if (Number.isFinite(declared) && declared > maxBodyBytes) {
          const reqId = requestIdOf(req);
          const text = JSON.stringify({ error: tooLarge(maxBodyBytes).message }) + '\n';
          res.writeHead(413, {
            'Content-Type': 'application/json; charset=utf-8',
            'Content-Length': Buffer.byteLength(text),
            'X-Request-Id': reqId,
            Connection: 'close',
          });
          res.end(text);
          metrics.observeRequest(routeLabel(req.url), 413, 0);
          logRequest({ reqId, method: req.method, url: req.url, status: 413, ms: 0, msg: 'request' });
          return;
        }
        res.writeContinue();
        handler(req, res);
      });
      httpServer = server;
      return server;
    },
    bodyLimit: maxBodyBytes,
    // Our own line per request (with `aborted` when the client left first), not fastify's two.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'reqId' }),
    logger: log
      ? {
          level: 'info',
          // Level names and ISO times are what log collectors read without configuration.
          formatters: { level: (label) => ({ level: label }) },
          timestamp: () => `,"time":"${new Date().toISOString()}"`,
          base: null,
          stream: {
            write: (line: string) => {
              // Fastify's own "Server listening at": the CLI says where it listens, a library caller
              // gets it from listen(); the log is the requests'.
              if (line.includes('"msg":"Server listening at ')) return;
              log(formatLogLine(line.trimEnd(), logFormat));
            },
          },
        }
      : false,
    requestIdHeader: false,
    genReqId: (req) => requestIdOf(req),
    // Shutdown is ours (close() below): in-flight requests finish, /healthz says 503.
    return503OnClosing: false,
    forceCloseConnections: false,
  });
  // Queries are checked by their zod schema (the same one the JSON schema came from).
  app.setValidatorCompiler(({ httpPart, url }) => {
    if (httpPart !== 'querystring' || url !== '/predict') return () => true;
    return (data: unknown) => {
      const parsed = predictQuery.safeParse(data);
      if (parsed.success) return { value: parsed.data };
      const name = String(parsed.error.issues[0]?.path[0] ?? 'top_k');
      const given = (data as Record<string, unknown>)[name];
      return { error: new Error(`${name} must be a positive integer (got ${String(given)})`) };
    };
  });
  // The answers' schemas document them; the bodies are written as they are (a schema-driven serializer
  // would drop what a schema leaves out).
  app.setSerializerCompiler(() => (data) => JSON.stringify(data) + '\n');

  function requestIdOf(req: IncomingMessage): string {
    const given = req.headers['x-request-id'];
    return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
  }

  app.addHook('onRequest', async (request, reply) => {
    const started = performance.now();
    const res = reply.raw;
    reply.header('X-Request-Id', request.id);
    metrics.inFlight.inc();
    if (closing) reply.header('Connection', 'close');
    active.add(res);
    res.once('close', () => {
      active.delete(res);
      metrics.inFlight.dec();
      const seconds = (performance.now() - started) / 1000;
      // The connection closed before the whole answer went out: the client gave up (or the upload
      // was cut off). No status reached it, so none is logged.
      const status = res.writableFinished ? res.statusCode : 'aborted';
      metrics.observeRequest(routeLabel(request.url), status, seconds);
      request.log.info(
        { method: request.method, url: request.url, status, ms: Math.round(seconds * 10000) / 10 },
        'request',
      );
    });
    // The router decodes %-escapes (/pr%65dict finds /predict); the API's paths are only the plain ones.
    const path = request.url.split('?')[0]!;
    const route = request.routeOptions.url;
    if (route !== undefined && route in ROUTES && path !== route) throw notFound(path);
    // A declared body over the limit is refused before it is read, whatever the route.
    const declared = Number(request.headers['content-length']);
    if (Number.isFinite(declared) && declared > maxBodyBytes) throw tooLarge(maxBodyBytes);
  });

  app.setErrorHandler((error, request, reply) => {
    const known = asHttpError(error, maxBodyBytes, maxImages);
    if (known) {
      // A body left unread (over the limit) is not drained: the connection closes after the answer.
      return reply.code(known.statusCode).headers(known.headers).send({ error: known.message });
    }
    request.log.error({ err: error }, 'internal error');
    return reply.code(500).send({ error: `internal error: ${firstLine(error)}` });
  });

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0]!;
    const methods = ROUTES[path];
    if (methods) {
      return reply
        .code(405)
        .header('Allow', methods.join(', '))
        .send({ error: `${request.method} is not allowed on ${path} (${methods.join(', ')})` });
    }
    throw notFound(path);
  });

  // Only images and forms: fastify's JSON and text parsers go, anything else is 415 (read first, so a
  // kept-alive connection stays usable).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(/^image\//i, { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  app.addContentTypeParser('*', (request, payload, done) => {
    payload.resume();
    payload.once('end', () => {
      const type = request.headers['content-type'];
      done(
        type === undefined
          ? new HttpError(415, `missing Content-Type: send ${IMAGE_TYPES_HINT}`)
          : new HttpError(
              415,
              `Content-Type ${type.split(';')[0]!.trim().toLowerCase()} is not accepted: send ${IMAGE_TYPES_HINT}`,
            ),
      );
    });
  });

  /** Where auth is on: a route's request must carry the token (401 otherwise). */
  function authenticated(request: FastifyRequest): boolean {
    return authToken !== undefined && bearerTokenMatches(request.headers.authorization, authToken);
  }
  async function requireToken(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    if (authToken === undefined || authenticated(request)) return;
    // The body is not read: the connection closes after the answer.
    reply.header('WWW-Authenticate', 'Bearer').header('Connection', 'close');
    throw new HttpError(401, 'missing or wrong bearer token: send Authorization: Bearer <token>');
  }

  async function decode(data: Buffer, what: string): Promise<Uint8Array> {
    if (data.length === 0) throw new HttpError(400, `${what} is empty`);
    try {
      return await model.decode(data);
    } catch (error) {
      throw new HttpError(400, `${what} cannot be read as an image (${firstLine(error)})`);
    }
  }

  type Image = { data: Buffer; part?: { field: string | null; filename: string | null } };

  /** The image files of a multipart body (plain fields ignored), refusing what is not an image. */
  async function formImages(request: FastifyRequest): Promise<Image[]> {
    // The whole body is bounded, fields included, as the plugin only bounds each part: its bytes are
    // counted as they arrive. prependListener (EventEmitter's, not Readable's `on`) does not start the
    // stream flowing before the plugin pipes it into busboy, so no chunk escapes the count.
    const raw = request.raw;
    let bytes = 0;
    let overflow: (error: HttpError) => void = () => {};
    const over = new Promise<never>((_, reject) => (overflow = reject));
    over.catch(() => {});
    const count = (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes <= maxBodyBytes) return;
      raw.off('data', count);
      raw.unpipe();
      overflow(tooLarge(maxBodyBytes));
    };
    raw.prependListener('data', count);
    const images: Image[] = [];
    try {
      const parts = request.parts()[Symbol.asyncIterator]();
      for (;;) {
        const next = await Promise.race([parts.next(), over]);
        if (next.done) break;
        const part = next.value;
        if (part.type !== 'file') continue;
        const type = part.mimetype || 'application/octet-stream';
        // Browsers send application/octet-stream for files whose type they do not know.
        if (!isImageType(type) && type !== 'application/octet-stream') {
          throw new HttpError(
            415,
            `part ${JSON.stringify(part.filename || part.fieldname)} is ${type}, not an image`,
          );
        }
        const data = await Promise.race([part.toBuffer(), over]);
        images.push({ data, part: { field: part.fieldname || null, filename: part.filename || null } });
      }
    } finally {
      raw.off('data', count);
    }
    if (images.length === 0) throw new HttpError(400, 'the form holds no files: send images as file fields');
    return images;
  }

  const json = (status: number, schema: Parameters<typeof jsonSchema>[0], description: string) => ({
    [status]: { description, content: { 'application/json': { schema: jsonSchema(schema) } } },
  });
  const errors = (...statuses: number[]) =>
    Object.assign({}, ...statuses.map((s) => json(s, errorBody, 'Error')));

  void app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: `image-classifier: ${model.runId}`,
        description: `Classifies images with the run ${model.runId} (${model.manifest.config.model}, classes ${model.classNames.join(', ')}).`,
        version: model.manifest.versions.package,
      },
      ...(authToken !== undefined && {
        components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      }),
    },
  });
  void app.register(swaggerUi, { routePrefix: '/docs', staticCSP: true });
  if (options.corsOrigins && options.corsOrigins.length > 0) {
    const origins = options.corsOrigins;
    void app.register(cors, {
      origin: origins.includes('*') ? '*' : origins,
      methods: ['GET', 'HEAD', 'POST'],
      allowedHeaders: ['Content-Type', 'Authorization', 'X-Request-Id'],
      exposedHeaders: ['X-Request-Id'],
      maxAge: 600,
    });
  }
  void app.register(multipart, {
    limits: {
      fileSize: maxBodyBytes,
      files: maxImages,
      fieldSize: maxBodyBytes,
      // Text fields are ignored but counted, as before (a form of thousands of fields is refused).
      parts: maxImages * 4,
      headerPairs: 100,
    },
  });

  const security = authToken !== undefined ? [{ bearer: [] }] : undefined;

  void app.register(async (api) => {
    api.post(
      '/predict',
      {
        // Before the body is read: an unauthenticated client cannot make the server buffer it.
        onRequest: requireToken,
        schema: {
          summary: 'Classify images',
          description: `One image as the body (Content-Type image/*), or multipart/form-data with image files (at most ${maxImages}; plain fields ignored). Body at most ${maxBodyBytes} bytes.`,
          querystring: jsonSchema(predictQuery),
          // Documentation only: the parsers above read and check the body.
          body: {
            content: {
              'image/*': { schema: { type: 'string', format: 'binary' } },
              'multipart/form-data': {
                schema: {
                  type: 'object',
                  additionalProperties: { type: 'string', format: 'binary' },
                },
              },
            },
          },
          response: {
            ...json(200, predictResponse, 'Top labels per image, in the order sent'),
            ...errors(400, 401, 413, 415),
          },
          ...(security && { security }),
        },
      },
      async (request, reply) => {
        const query = request.query as { top_k?: string; topK?: string };
        const raw = query.top_k ?? query.topK;
        const topK = raw === undefined ? defaultTopK : Math.min(Number(raw), numClasses);
        const type = request.headers['content-type'];
        let images: Image[];
        if (request.isMultipart()) {
          images = await formImages(request);
        } else if (isImageType(type)) {
          const body = request.body as Buffer | undefined;
          if (!body || body.length === 0) throw new HttpError(400, 'empty body: send an image');
          images = [{ data: body }];
        } else {
          throw new HttpError(415, `missing Content-Type: send ${IMAGE_TYPES_HINT}`);
        }
        const decoded = await Promise.all(
          images.map(({ data, part }, i) =>
            decode(data, part ? `image ${JSON.stringify(part.filename ?? part.field ?? i)}` : 'the body'),
          ),
        );
        const predictions = await Promise.all(decoded.map((image) => batcher.submit(image)));
        for (const p of predictions) metrics.observePrediction(p.label);
        return reply.code(200).send({
          run: model.runId,
          predictions: predictions.map((p, i) => {
            const top: LabelProbability[] = p.top.slice(0, topK);
            // Multipart images say which part they answer: the form field and the file name.
            return { ...images[i]!.part, label: p.label, probability: p.probability, top };
          }),
        });
      },
    );

    api.get(
      '/healthz',
      {
        schema: {
          summary: 'Liveness and readiness (503 while shutting down)',
          response: {
            ...json(200, healthResponse, 'Serving'),
            ...json(503, healthResponse, 'Shutting down'),
          },
        },
      },
      // While shutting down, a connection kept alive hears it and goes elsewhere.
      async (_request, reply) =>
        closing
          ? reply.code(503).send({ status: 'shutting down', run: model.runId })
          : reply.send({ status: 'ok', run: model.runId }),
    );

    api.get(
      '/metrics',
      {
        schema: {
          summary: 'Prometheus metrics',
          response: {
            200: {
              description: 'Prometheus text format 0.0.4',
              content: { 'text/plain': { schema: { type: 'string' } } },
            },
          },
        },
      },
      async (_request, reply) => {
        const text = await metrics.render();
        return reply
          .type(metrics.contentType)
          .serializer((s: string) => s)
          .send(text);
      },
    );

    api.get(
      '/model',
      {
        // Before the body is read: an unauthenticated client cannot make the server buffer it.
        onRequest: requireToken,
        schema: {
          summary: 'The served model',
          description:
            'Run, architecture, classes, input size, normalisation and metrics; with the bearer token (when the server has one), the whole run.json.',
          response: { ...json(200, modelSummary, 'The model'), ...errors(401) },
          ...(security && { security }),
        },
      },
      async (request, reply) => {
        if (authenticated(request)) {
          // As run.json stores it; a manifest from before downloads were redacted is redacted here.
          return reply.send({
            ...model.manifest,
            config: redactConfig(model.manifest.config),
            command: redactText(model.manifest.command),
          });
        }
        const m = model.manifest;
        const [height, width, channels] = m.preprocessing.inputShape;
        return reply.send({
          run: model.runId,
          model: m.config.model,
          classes: model.classNames,
          inputSize: { height, width, channels },
          normalization: {
            scale: m.preprocessing.scale,
            mean: m.preprocessing.mean,
            std: m.preprocessing.std,
          },
          metrics: {
            testAccuracy: m.results.testAccuracy,
            testLoss: m.results.testLoss,
            validationAccuracy: m.results.validationAccuracy,
            validationLoss: m.results.validationLoss,
          },
        });
      },
    );

    api.get('/openapi.json', { schema: { hide: true } }, async (_request, reply) =>
      reply.send(app.swagger()),
    );
  });

  return {
    get server() {
      return httpServer;
    },
    app,
    metrics,
    async listen(port: number = SERVING_DEFAULTS.port, host: string = SERVING_DEFAULTS.host) {
      await app.listen({ port, host });
      const address = httpServer.address() as AddressInfo;
      const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address;
      return { url: `http://${shown}:${address.port}`, host: address.address, port: address.port };
    },
    close() {
      closing ??= (async () => {
        if (!httpServer?.listening) {
          await app.close();
          return;
        }
        const force = setTimeout(() => httpServer.closeAllConnections(), shutdownTimeoutMs);
        force.unref();
        const closed = app.close();
        // Idle keep-alive connections close now; busy ones after their response (Connection: close).
        for (const res of active) if (!res.headersSent) res.setHeader('Connection', 'close');
        httpServer.closeIdleConnections();
        await closed;
        clearTimeout(force);
      })();
      return closing;
    },
  };
}
