// `serve <run>` as one call: load the run's model, put it behind the HTTP server, listen. What a
// library user (or the CLI) gets back is the address, the model, and `close()`, which drains the
// requests in flight and frees the model.
import { parseOptions } from '../config.js';
import { ConfigError } from '../errors.js';
import { serveOptionsSchema, type ServeOptionsInput } from '../model-options.js';
import { loadModel, type ClassifierModel } from './model.js';
import { createServer } from './server.js';

export interface ServeOptions extends ServeOptionsInput {
  /** One line per request (none when absent). */
  log?: (line: string) => void;
}

export interface RunningServer {
  model: ClassifierModel;
  url: string;
  host: string;
  port: number;
  /** Stops accepting connections, finishes the requests in flight, then frees the model. */
  close(): Promise<void>;
}

export async function serve(run: string, options: ServeOptions = {}): Promise<RunningServer> {
  const { log, ...given } = options;
  const { port, host, maxBodyBytes, maxImages, topK, maxBatch, batchWindowMs, ...modelOptions } =
    parseOptions(serveOptionsSchema, given);
  const model = await loadModel(run, modelOptions);
  const server = createServer(model, {
    maxBodyBytes,
    maxImages,
    topK,
    batching: { maxBatch, windowMs: batchWindowMs },
    log,
  });
  let address;
  try {
    address = await server.listen(port, host);
  } catch (error) {
    model.dispose();
    const code = (error as NodeJS.ErrnoException).code;
    throw new ConfigError(`cannot listen on ${host}:${port} (${code ?? (error as Error).message})`);
  }
  return {
    model,
    ...address,
    async close() {
      try {
        await server.close();
      } finally {
        model.dispose();
      }
    },
  };
}
