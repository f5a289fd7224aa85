// Downloading one large file over HTTP(S) the way a user on a real network needs it: through the proxy
// of $HTTPS_PROXY/$HTTP_PROXY (unless $NO_PROXY names the host), retrying transient failures with
// backoff, continuing a cut-off transfer with an HTTP Range request (also in the next run: the bytes
// stay in a `.partial` file), bounded in size, and stopping at once when the caller aborts.
import { createReadStream, createWriteStream } from 'node:fs';
import { stat, truncate, unlink } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Dispatcher } from 'undici';
import type { Progress, ProgressFactory } from '../reports/progress.js';
import { formatBytes } from '../util/bounded-read.js';
import { redactText, redactUrl } from '../util/redact.js';
import { NetworkError, DownloadInterrupted, DownloadTooLarge } from '../errors.js';

export interface DownloadOptions {
  /** http:// or https://; credentials in it are sent as basic auth and never shown. */
  url: string;
  /** Where the bytes go; existing bytes there are continued with a Range request. */
  partialFile: string;
  /** No more than this is ever written (the file's known size, or a bound). */
  maxBytes: number;
  /** The file's exact size when known: the download is complete at this size and not before. */
  expectedBytes?: number;
  /** Attempts after the first, for transient failures (default 4). */
  retries?: number;
  /** Wait before the first retry, doubled for each next one (default 1 s; capped at 30 s). */
  retryDelayMs?: number;
  /** No byte for this long counts as a dropped connection (default 60 s). */
  idleTimeoutMs?: number;
  signal?: AbortSignal;
  progress: ProgressFactory;
  /** The progress bar's label. */
  label: string;
  log: (line: string) => void;
}

export interface DownloadResult {
  bytes: number;
  md5: string;
}

/** Connection-level failures: transient except when the host is plainly not there (no DNS, refused). */
const PERSISTENT_CODES = new Set(['ENOTFOUND', 'ECONNREFUSED', 'EAI_FAIL', 'ENETUNREACH', 'EHOSTUNREACH']);
const TLS_CODES = new Set([
  'CERT_HAS_EXPIRED',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

function errorCode(error: unknown): string | undefined {
  const e = error as { code?: unknown; cause?: { code?: unknown } };
  const code = typeof e.cause?.code === 'string' ? e.cause.code : e.code;
  return typeof code === 'string' ? code : undefined;
}

/** A network error as a NetworkError: short, without the URL's secrets, and whether to retry. */
function asNetworkError(error: unknown): NetworkError {
  if (error instanceof NetworkError) return error;
  const code = errorCode(error);
  const e = error as { cause?: { hostname?: string }; message?: string };
  const hostname = e.cause?.hostname;
  const text = code
    ? `${code}${hostname ? ` ${hostname}` : ''}`
    : redactText(String(e.message ?? error)).split('\n')[0]!;
  const transient = !(code !== undefined && (PERSISTENT_CODES.has(code) || TLS_CODES.has(code)));
  return new NetworkError(text, transient);
}

/** Splits `user:pass@` off the URL: undici does not send it, and it must not travel in logs. */
function withoutCredentials(url: URL): { target: string; authorization?: string } {
  if (url.username === '' && url.password === '') return { target: url.toString() };
  const user = decodeURIComponent(url.username);
  const pass = decodeURIComponent(url.password);
  const bare = new URL(url.toString());
  bare.username = '';
  bare.password = '';
  return {
    target: bare.toString(),
    authorization: `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`,
  };
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason as Error);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

async function sizeOf(file: string): Promise<number> {
  try {
    return (await stat(file)).size;
  } catch {
    return 0;
  }
}

async function md5Of(file: string): Promise<string> {
  const hash = createHash('md5');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** `bytes 100-199/1000` -> { start: 100, total: 1000 }. */
function parseContentRange(header: string | string[] | undefined): { start: number; total?: number } | null {
  const match = /^bytes (?:(\d+)-\d+|\*)\/(\d+|\*)$/.exec(String(header ?? '').trim());
  if (!match) return null;
  return {
    start: match[1] === undefined ? -1 : Number(match[1]),
    total: match[2] === '*' ? undefined : Number(match[2]),
  };
}

function retryAfterMs(header: string | string[] | undefined): number | undefined {
  const seconds = Number(Array.isArray(header) ? header[0] : header);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : undefined;
}

/**
 * Downloads `url` into `partialFile`, continuing the bytes already there; resolves with its size and
 * MD5 once complete. Rejects with DownloadInterrupted (bytes kept), DownloadTooLarge (file removed),
 * or NetworkError (bytes kept for the next call, when the failure was not the server's refusal).
 */
export async function downloadResumable(options: DownloadOptions): Promise<DownloadResult> {
  const { partialFile, maxBytes, signal, log } = options;
  const shown = redactUrl(options.url);
  const parsed = new URL(options.url);
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new NetworkError(`unsupported download URL protocol ${parsed.protocol} (use http:// or https://)`);
  }
  const { target, authorization } = withoutCredentials(parsed);
  const retries = options.retries ?? 4;
  const idle = options.idleTimeoutMs ?? 60_000;
  // Loaded here, not at the top: undici makes itself the global fetch dispatcher when first loaded,
  // which should happen only in a process that downloads.
  const { EnvHttpProxyAgent, interceptors } = await import('undici');
  // Proxies from the environment; redirects followed (credentials are dropped on another origin).
  const agent = new EnvHttpProxyAgent({ headersTimeout: idle, bodyTimeout: idle, connectTimeout: idle });
  const dispatcher = agent.compose(interceptors.redirect({ maxRedirections: 10 }));
  let total = options.expectedBytes;
  let delay = options.retryDelayMs ?? 1000;
  // Made at the first answer, when the size is known.
  const bar: { current?: Progress } = {};
  try {
    for (let attempt = 0; ; attempt++) {
      let offset = await sizeOf(partialFile);
      if (offset > maxBytes || (total !== undefined && offset > total)) {
        await truncate(partialFile, 0);
        offset = 0;
      }
      if (total !== undefined && offset === total) break;
      try {
        if (offset > 0 && attempt === 0)
          log(`Continuing the download from ${formatBytes(offset)} (${partialFile})`);
        const done = await fetchOnce(
          dispatcher,
          target,
          authorization,
          offset,
          options,
          (t) => {
            if (t !== undefined && total === undefined) total = t;
          },
          bar,
        );
        if (done) break;
      } catch (error) {
        if (signal?.aborted) {
          const bytes = await sizeOf(partialFile);
          throw new DownloadInterrupted(
            `download interrupted at ${formatBytes(bytes)}${total ? ` of ${formatBytes(total)}` : ''}; the bytes are kept in ${partialFile} and the next run continues from there`,
            partialFile,
            bytes,
          );
        }
        if (error instanceof DownloadTooLarge) {
          await unlink(partialFile).catch(() => undefined);
          throw error;
        }
        const problem = asNetworkError(error);
        if (!problem.transient || attempt >= retries) {
          const got = await sizeOf(partialFile);
          const kept =
            got > 0 ? `; ${formatBytes(got)} kept in ${partialFile} for the next run to continue` : '';
          throw new NetworkError(
            `${problem.message}${attempt > 0 ? ` (after ${attempt + 1} attempts)` : ''}${kept}`,
            problem.transient,
          );
        }
        const wait = Math.min(30_000, (error as { retryAfterMs?: number }).retryAfterMs ?? delay);
        log(`Download from ${shown} failed (${problem.message}); retrying in ${(wait / 1000).toFixed(1)} s`);
        await sleep(wait, signal).catch(() => undefined);
        delay = Math.min(30_000, delay * 2);
      }
    }
  } finally {
    bar.current?.stop();
    await agent.close().catch(() => undefined);
  }
  const bytes = await sizeOf(partialFile);
  return { bytes, md5: await md5Of(partialFile) };
}

/**
 * One request from `offset`. Resolves true when the file is complete; false when the server said the
 * range is past the end of another file (restart); throws on failures (NetworkError with `transient`).
 */
async function fetchOnce(
  dispatcher: Dispatcher,
  target: string,
  authorization: string | undefined,
  offset: number,
  options: DownloadOptions,
  learnTotal: (total: number | undefined) => void,
  bar: { current?: Progress },
): Promise<boolean> {
  const { partialFile, maxBytes, signal } = options;
  const headers: Record<string, string> = { 'user-agent': 'image-classifier', 'accept-encoding': 'identity' };
  if (authorization) headers.authorization = authorization;
  if (offset > 0) headers.range = `bytes=${offset}-`;
  const { origin, pathname, search } = new URL(target);
  const res = await dispatcher.request({
    origin,
    path: `${pathname}${search}`,
    method: 'GET',
    headers,
    signal,
  });
  const status = res.statusCode;
  let start = 0;
  let total: number | undefined;
  const length = Number(res.headers['content-length']);
  if (status === 206) {
    const range = parseContentRange(res.headers['content-range']);
    if (!range || range.start !== offset) {
      // A range we did not ask for: start over rather than splice mismatched bytes.
      await res.body.dump();
      await truncate(partialFile, 0);
      throw new NetworkError('the server answered another byte range', true);
    }
    start = offset;
    total = range.total;
  } else if (status === 200) {
    // The server ignored the Range header: the whole file comes again.
    total = Number.isFinite(length) && length >= 0 ? length : undefined;
  } else if (status === 416 && offset > 0) {
    await res.body.dump();
    const range = parseContentRange(res.headers['content-range']);
    if (range?.total === offset) {
      learnTotal(offset);
      return true;
    }
    await truncate(partialFile, 0);
    throw new NetworkError('the server refused to continue the partial download; starting over', true);
  } else {
    await res.body.dump().catch(() => undefined);
    const transient = status >= 500 || status === 429 || status === 408;
    const error = new NetworkError(`HTTP ${status} from ${redactUrl(options.url)}`, transient);
    const after = retryAfterMs(res.headers['retry-after']);
    if (after !== undefined) Object.assign(error, { retryAfterMs: after });
    throw error;
  }
  if (options.expectedBytes !== undefined && total !== undefined && total !== options.expectedBytes) {
    await res.body.dump().catch(() => undefined);
    throw new DownloadTooLarge(
      `the server announces ${formatBytes(total)} (${total} bytes), but the file is ${options.expectedBytes} bytes; not downloading it`,
    );
  }
  if (total !== undefined && total > maxBytes) {
    await res.body.dump().catch(() => undefined);
    throw new DownloadTooLarge(
      `the server announces ${formatBytes(total)}, more than the ${formatBytes(maxBytes)} a CIFAR-10 archive can be; not downloading it`,
    );
  }
  learnTotal(total);
  const expected = options.expectedBytes ?? total;
  let received = start;
  bar.current ??= options.progress(options.label, expected ?? 0, 'bytes');
  bar.current.update(received);
  // Appended when continuing, rewritten from the start otherwise.
  const file = createWriteStream(partialFile, { flags: start > 0 ? 'a' : 'w' });
  // Unlistened, a write error (a full disk) would be thrown as an uncaught exception.
  file.once('error', (error) => counter.destroy(error));
  const counter = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      received += chunk.length;
      if (received > maxBytes) {
        callback(
          new DownloadTooLarge(
            `the download passed ${formatBytes(maxBytes)} (${maxBytes} bytes), more than the file can be; stopped and removed`,
          ),
        );
        return;
      }
      bar.current!.update(received);
      file.write(chunk, callback);
    },
    final(callback) {
      file.end(callback);
    },
    destroy(error, callback) {
      // Ended, not destroyed: the bytes already received are flushed, for the next attempt to continue.
      if (file.closed) return callback(error);
      file.once('close', () => callback(error));
      if (file.writable) file.end();
      else file.destroy();
    },
  });
  try {
    await pipeline(res.body, counter);
  } catch (error) {
    await new Promise<void>((resolve) => (file.closed ? resolve() : file.once('close', () => resolve())));
    const code = errorCode(error);
    if (code === 'ENOSPC' || code === 'EACCES' || code === 'EROFS' || code === 'EDQUOT') {
      throw new Error(`cannot write the download to ${partialFile} (${code})`);
    }
    if (error instanceof DownloadTooLarge) throw error;
    throw new NetworkError(
      `download cut off at ${formatBytes(received)}${expected ? ` of ${formatBytes(expected)}` : ''} (${asNetworkError(error).message})`,
      true,
    );
  }
  if (expected !== undefined && received !== expected) {
    throw new NetworkError(`download cut off: received ${received} of ${expected} bytes`, true);
  }
  return true;
}
