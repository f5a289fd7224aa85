// `serve <run>` as one call: load the run's model, put it behind the HTTP server, listen. What a
// library user (or the CLI) gets back is the address, the model, and `close()`, which drains the
// requests in flight and frees the model.
import { parseOptions } from '../config.js';
import { ConfigError, firstLine } from '../errors.js';
import { serveOptionsSchema, type ServeOptionsInput } from '../model-options.js';
import { readBoundedFile } from '../util/bounded-read.js';
import { loadModel, type ClassifierModel } from './model.js';
import { createServer } from './server.js';

/** Where the bearer token comes from when no --auth-token-file is given. */
export const TOKEN_ENV = 'IMAGE_CLASSIFIER_TOKEN';

export interface ServeOptions extends ServeOptionsInput {
  /** Each log line (none when absent): one per request, JSON or text (`logFormat`). */
  log?: (line: string) => void;
  /** The environment $IMAGE_CLASSIFIER_TOKEN is read from (default process.env). */
  env?: Record<string, string | undefined>;
}

export interface RunningServer {
  model: ClassifierModel;
  url: string;
  host: string;
  port: number;
  /** Whether /predict and /model need the bearer token. */
  auth: boolean;
  /** Stops accepting connections, finishes the requests in flight, then frees the model. */
  close(): Promise<void>;
}

/** `--cors a,b`: each an origin (scheme://host[:port]) or `*`. */
export function parseCorsOrigins(text: string): string[] {
  const origins = text
    .split(',')
    .map((o) => o.trim())
    .filter(Boolean);
  if (origins.length === 0) throw new ConfigError('--cors needs origins, e.g. https://app.example.com, or *');
  for (const origin of origins) {
    if (origin === '*') continue;
    let url: URL | null = null;
    try {
      url = new URL(origin);
    } catch {
      // reported below
    }
    if (!url || !/^https?:$/.test(url.protocol) || url.origin !== origin.replace(/\/$/, '')) {
      throw new ConfigError(
        `--cors: ${JSON.stringify(origin)} is not an origin (scheme://host[:port], no path), or *`,
      );
    }
  }
  return origins.map((o) => o.replace(/\/$/, ''));
}

/** The token from the file (or the environment); a file that is empty or unreadable is refused. */
async function readToken(file: string | undefined, env: Record<string, string | undefined>) {
  if (file === undefined) {
    const value = env[TOKEN_ENV]?.trim();
    return value ? value : undefined;
  }
  let text: string;
  try {
    text = (await readBoundedFile(file, 4096)).toString('utf8').trim();
  } catch (error) {
    throw new ConfigError(`--auth-token-file ${file}: ${firstLine(error)}`);
  }
  if (text === '' || /\s/.test(text))
    throw new ConfigError(`--auth-token-file ${file}: must hold one token (no spaces), not be empty`);
  return text;
}

export async function serve(run: string, options: ServeOptions = {}): Promise<RunningServer> {
  const { log, env = process.env, ...given } = options;
  const {
    port,
    host,
    maxBodyBytes,
    maxImages,
    topK,
    maxBatch,
    batchWindowMs,
    cors,
    authTokenFile,
    logFormat,
    ...modelOptions
  } = parseOptions(serveOptionsSchema, given);
  // Checked before the model loads: a bad flag costs nothing.
  const corsOrigins = cors === undefined ? undefined : parseCorsOrigins(cors);
  const authToken = await readToken(authTokenFile, env);
  const model = await loadModel(run, modelOptions);
  const server = createServer(model, {
    maxBodyBytes,
    maxImages,
    topK,
    batching: { maxBatch, windowMs: batchWindowMs },
    log,
    logFormat,
    corsOrigins,
    authToken,
  });
  let address;
  try {
    address = await server.listen(port, host);
  } catch (error) {
    await server.close().catch(() => {});
    model.dispose();
    const code = (error as NodeJS.ErrnoException).code;
    throw new ConfigError(`cannot listen on ${host}:${port} (${code ?? (error as Error).message})`);
  }
  return {
    model,
    ...address,
    auth: authToken !== undefined,
    async close() {
      try {
        await server.close();
      } finally {
        model.dispose();
      }
    },
  };
}
