// `npm run loadtest -- --url http://host:port`: requests/s and p50/p90/p99 latency of POST /predict on
// any running `serve`, with autocannon (keep-alive connections sending back to back, one image each),
// for a bounded time per concurrency. scripts/bench-serve.ts measures with it too.
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import sharp from 'sharp';
import { textTable } from '../src/reports/format.js';

const MAX_DURATION_S = 300;

const USAGE = `Usage: npm run loadtest -- --url http://host:port [options]

Requests/s and latency percentiles of POST /predict (one image per request) on a running \`serve\`.
  --url URL               the server (required)
  --connections 1,8       concurrent keep-alive clients, one measurement each (default 1,8)
  --duration S            measured seconds per measurement (default 10, at most ${MAX_DURATION_S})
  --warmup S              unmeasured seconds first (default 1)
  --image FILE            the image sent (default: a 256x256 JPEG of noise)
  --token T               bearer token (default $IMAGE_CLASSIFIER_TOKEN, if set)
  --json                  JSON only on stdout (the table goes to stderr)
  --out FILE              also write the JSON to FILE`;

export interface LoadResult {
  connections: number;
  seconds: number;
  requests: number;
  /** Answers that were not 2xx, and connection errors or timeouts. */
  errors: number;
  requestsPerSecond: number;
  latencyMs: { p50: number; p90: number; p99: number; mean: number; max: number };
}

export interface LoadOptions {
  connections: number;
  durationSeconds: number;
  warmupSeconds?: number;
  body: Buffer;
  contentType?: string;
  token?: string;
}

function cannon(url: string, o: LoadOptions, seconds: number): Promise<autocannon.Result> {
  return autocannon({
    url: new URL('/predict', url).href,
    method: 'POST',
    body: o.body,
    headers: {
      'content-type': o.contentType ?? 'image/jpeg',
      ...(o.token !== undefined && { authorization: `Bearer ${o.token}` }),
    },
    connections: o.connections,
    duration: seconds,
    timeout: 30,
  });
}

/** `connections` clients post back to back for the warm-up (discarded), then for `durationSeconds`. */
export async function loadTest(url: string, options: LoadOptions): Promise<LoadResult> {
  const seconds = Math.min(options.durationSeconds, MAX_DURATION_S);
  if ((options.warmupSeconds ?? 1) > 0) await cannon(url, options, options.warmupSeconds ?? 1);
  const r = await cannon(url, options, seconds);
  const round = (x: number) => Math.round(x * 100) / 100;
  const ok = r['2xx'];
  return {
    connections: options.connections,
    seconds: round(r.duration),
    requests: ok,
    errors: r.non2xx + r.errors + r.timeouts,
    requestsPerSecond: round(ok / r.duration),
    latencyMs: {
      p50: round(r.latency.p50),
      p90: round(r.latency.p90),
      p99: round(r.latency.p99),
      mean: round(r.latency.mean),
      max: round(r.latency.max),
    },
  };
}

/** A JPEG of noise, so it costs what a photo of this size costs to decode. */
export function noiseJpeg(side: number): Promise<Buffer> {
  const pixels = Buffer.alloc(side * side * 3);
  for (let i = 0, s = 1; i < pixels.length; i++) pixels[i] = (s = (s * 1103515245 + 12345) >>> 0) >>> 24;
  return sharp(pixels, { raw: { width: side, height: side, channels: 3 } })
    .jpeg({ quality: 90 })
    .toBuffer();
}

export function loadTable(rows: Array<LoadResult & { label?: string }>): string {
  const header = ['server', 'clients', 'requests/s', 'p50 ms', 'p90 ms', 'p99 ms', 'errors'];
  const cells = rows.map((r) => [
    r.label ?? '',
    String(r.connections),
    r.requestsPerSecond.toFixed(1),
    r.latencyMs.p50.toFixed(1),
    r.latencyMs.p90.toFixed(1),
    r.latencyMs.p99.toFixed(1),
    String(r.errors),
  ]);
  return textTable(header, cells);
}

async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        help: { type: 'boolean', short: 'h' },
        url: { type: 'string' },
        connections: { type: 'string' },
        duration: { type: 'string' },
        warmup: { type: 'string' },
        image: { type: 'string' },
        token: { type: 'string' },
        json: { type: 'boolean' },
        out: { type: 'string' },
      },
    }));
  } catch (error) {
    process.stderr.write(`loadtest: ${(error as Error).message.split('\n')[0]}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  const fail = (message: string) => {
    process.stderr.write(`loadtest: ${message}\n${USAGE}\n`);
    return 2;
  };
  if (values.url === undefined) return fail('--url is required');
  try {
    if (!/^https?:$/.test(new URL(values.url).protocol))
      return fail(`--url must be http(s) (got ${values.url})`);
  } catch {
    return fail(`--url is not a URL (got ${values.url})`);
  }
  const connections = (values.connections ?? '1,8').split(',').map(Number);
  if (connections.some((c) => !Number.isInteger(c) || c < 1 || c > 1000))
    return fail(`--connections must be integers from 1 to 1000 (got ${values.connections})`);
  const duration = Number(values.duration ?? 10);
  if (!(duration > 0 && duration <= MAX_DURATION_S))
    return fail(`--duration must be from 1 to ${MAX_DURATION_S} seconds (got ${values.duration})`);
  const warmup = Number(values.warmup ?? 1);
  if (!(warmup >= 0 && warmup <= 60))
    return fail(`--warmup must be from 0 to 60 seconds (got ${values.warmup})`);
  const body = values.image === undefined ? await noiseJpeg(256) : readFileSync(values.image);
  const token = values.token ?? process.env.IMAGE_CLASSIFIER_TOKEN;
  const rows: LoadResult[] = [];
  for (const c of connections) {
    process.stderr.write(`${c} client(s): ${warmup} s warm-up + ${duration} s ...\n`);
    rows.push(
      await loadTest(values.url, {
        connections: c,
        durationSeconds: duration,
        warmupSeconds: warmup,
        body,
        token,
        contentType: values.image === undefined ? 'image/jpeg' : imageType(values.image),
      }),
    );
  }
  const json = JSON.stringify({ url: values.url, imageBytes: body.length, results: rows }, null, 2);
  const text = loadTable(rows.map((r) => ({ ...r, label: values.url })));
  if (values.json) {
    process.stderr.write(text + '\n');
    process.stdout.write(json + '\n');
  } else process.stdout.write(text + '\n');
  if (values.out) writeFileSync(values.out, json + '\n');
  return rows.some((r) => r.errors > 0 || r.requests === 0) ? 1 : 0;
}

function imageType(file: string): string {
  const ext = file.toLowerCase().split('.').pop();
  const types: Record<string, string> = { png: 'image/png', webp: 'image/webp', gif: 'image/gif' };
  return types[ext ?? ''] ?? 'image/jpeg';
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main(process.argv.slice(2)).then(
    (code) => (process.exitCode = code),
    (error: unknown) => {
      process.stderr.write(`loadtest: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
