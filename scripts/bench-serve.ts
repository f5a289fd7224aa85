// `npm run bench -- --serve`: requests/s and latency percentiles of `image-classifier-trainer serve` on
// 127.0.0.1, single-image POST /predict requests at a fixed concurrency for a fixed time, with the
// micro-batcher on (the default) and off (--max-batch 1). The server runs as a child process (the CLI
// under tsx, so no build is needed); the load generator is autocannon, through scripts/loadtest.ts (which
// measures any server). Without --run it first trains a quick synthetic run of the default model (vgg).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_EXPERIMENTS_FOLDER } from '../src/config.js';
import { loadTest, noiseJpeg } from './loadtest.js';
import { textTable } from '../src/reports/format.js';

const ROOT = resolve(import.meta.dirname, '..');
const CLI = join(ROOT, 'src', 'cli', 'main.ts');

const USAGE = `Usage: npm run bench -- --serve [options]

Requests/s and p50/p90/p99 latency of POST /predict (one image per request) against \`serve\` on
127.0.0.1, for each concurrency, with micro-batching on (default server) and off (--max-batch 1).
  --run E/R|PATH          run to serve (default: train a synthetic vgg run, 1 epoch, in a temp folder)
  --experiments-folder D  where --run is looked up (default ./experiments)
  --duration S            measured seconds per concurrency (default 10)
  --warmup S              unmeasured seconds first (default 1)
  --concurrency 1,8       clients sending requests back to back (default 1,8)
  --modes batched,unbatched  server settings to compare (default these two; also batched-window-1,
                          batched-window-5: other --batch-window-ms)
  --image-size N          side of the JPEG sent, in pixels (default 256; the server resizes to 32)
  --threads N             the server's backend threads (default ${availableParallelism()})
  --baseline DIR          also measure the server of the checkout in DIR (with its node_modules), each
                          mode right before this one's: e.g. git worktree add /tmp/old <commit> and
                          ln -s "$PWD/node_modules" "$PWD/build" /tmp/old/ (the same native kernels)
  --json                  JSON only on stdout (the table goes to stderr)
  --out FILE              also write the JSON to FILE`;

class UsageError extends Error {
  override name = 'UsageError';
}

const MODES = {
  batched: [] as string[],
  'batched-window-1': ['--batch-window-ms', '1'],
  'batched-window-5': ['--batch-window-ms', '5'],
  unbatched: ['--max-batch', '1'],
};
type Mode = keyof typeof MODES;

interface Options {
  run: string | undefined;
  experimentsFolder: string;
  duration: number;
  warmup: number;
  concurrency: number[];
  modes: Mode[];
  imageSize: number;
  threads: number;
  baseline: string | undefined;
  json: boolean;
  out: string | undefined;
}

function positive(flag: string, value: string, integer: boolean): number {
  const n = Number(value);
  if (!(n > 0) || (integer && !Number.isInteger(n)))
    throw new UsageError(`--${flag} must be a positive ${integer ? 'integer' : 'number'} (got ${value})`);
  return n;
}

function parseOptions(argv: string[]): Options | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        help: { type: 'boolean', short: 'h' },
        run: { type: 'string' },
        'experiments-folder': { type: 'string' },
        duration: { type: 'string' },
        warmup: { type: 'string' },
        concurrency: { type: 'string' },
        modes: { type: 'string' },
        'image-size': { type: 'string' },
        threads: { type: 'string' },
        baseline: { type: 'string' },
        json: { type: 'boolean' },
        out: { type: 'string' },
      },
    }));
  } catch (error) {
    throw new UsageError((error as Error).message.split('\n')[0]!);
  }
  if (values.help) return 'help';
  const modes = (values.modes ?? 'batched,unbatched').split(',').filter(Boolean);
  for (const m of modes)
    if (!(m in MODES)) throw new UsageError(`--modes: '${m}' is not one of ${Object.keys(MODES).join(', ')}`);
  if (values.baseline !== undefined && !existsSync(join(values.baseline, 'src', 'cli', 'main.ts')))
    throw new UsageError(
      `--baseline: ${values.baseline} is not a checkout of this project (no src/cli/main.ts)`,
    );
  return {
    run: values.run,
    experimentsFolder: values['experiments-folder'] ?? DEFAULT_EXPERIMENTS_FOLDER,
    duration: values.duration === undefined ? 10 : positive('duration', values.duration, false),
    warmup: values.warmup === undefined ? 1 : Number(values.warmup),
    concurrency: (values.concurrency ?? '1,8').split(',').map((c) => positive('concurrency', c, true)),
    modes: modes as Mode[],
    imageSize: values['image-size'] === undefined ? 256 : positive('image-size', values['image-size'], true),
    threads:
      values.threads === undefined ? availableParallelism() : positive('threads', values.threads, true),
    baseline: values.baseline === undefined ? undefined : resolve(values.baseline),
    json: values.json ?? false,
    out: values.out,
  };
}

function note(line: string): void {
  process.stderr.write(line + '\n');
}

/** Runs the CLI (under the same loader as this script) to completion. */
function runCliToEnd(args: string[]): Promise<void> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, CLI, ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let tail = '';
    child.stderr.on('data', (d: Buffer) => (tail = (tail + d.toString()).slice(-2000)));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolveRun() : reject(new Error(`training failed (exit ${code}): ${tail.trim()}`)),
    );
  });
}

/** Starts `serve` on a free port; resolves when it listens. */
function startServer(
  run: string,
  opts: Options,
  mode: Mode,
  server: Server,
): Promise<{ child: ChildProcess; url: string }> {
  const root = server === 'current' ? ROOT : opts.baseline!;
  const args = [
    join(root, 'src', 'cli', 'main.ts'),
    'serve',
    run,
    '--experiments-folder',
    opts.experimentsFolder,
    '--port',
    '0',
    '--quiet',
    '--threads',
    String(opts.threads),
    ...MODES[mode],
  ];
  const child = spawn(process.execPath, [...process.execArgv, ...args], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolveStart, reject) => {
    let out = '';
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-2000)));
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const match = /listening on (http:\/\/[\d.]+:\d+)/.exec(out);
      if (match) resolveStart({ child, url: match[1]! });
    });
    child.on('error', reject);
    child.on('exit', (code) => reject(new Error(`serve exited (${code}) before listening: ${err.trim()}`)));
  });
}

function stopServer(child: ChildProcess): Promise<number | null> {
  return new Promise((resolveStop) => {
    if (child.exitCode !== null) return resolveStop(child.exitCode);
    child.once('exit', (code) => resolveStop(code));
    child.kill('SIGTERM');
  });
}

async function scrape(url: string): Promise<{ images: number; calls: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const value = (name: string) =>
    Number(/^(\S+) (\S+)$/m.exec(text.split('\n').find((l) => l.startsWith(name + ' ')) ?? '')?.[2] ?? 0);
  return {
    images: value('image_classifier_images_predicted_total'),
    calls: value('image_classifier_inference_batch_size_count'),
  };
}

/** This checkout's server, or the one of --baseline (an earlier version's checkout). */
type Server = 'current' | 'baseline';

interface Measurement {
  server: Server;
  mode: Mode;
  concurrency: number;
  seconds: number;
  requests: number;
  errors: number;
  requestsPerSecond: number;
  latencyMs: { p50: number; p90: number; p99: number; mean: number; max: number };
  /** Images per model call on the server during the measurement. */
  meanBatch: number;
}

/** `concurrency` autocannon clients post back to back (scripts/loadtest.ts); after the warm-up, measured. */
async function measure(
  url: string,
  body: Buffer,
  server: Server,
  mode: Mode,
  concurrency: number,
  opts: Options,
): Promise<Measurement> {
  const load = { connections: concurrency, body, warmupSeconds: 0 };
  if (opts.warmup > 0) await loadTest(url, { ...load, durationSeconds: opts.warmup });
  const before = await scrape(url);
  const r = await loadTest(url, { ...load, durationSeconds: opts.duration });
  const after = await scrape(url);
  return {
    server,
    mode,
    concurrency,
    seconds: r.seconds,
    requests: r.requests,
    errors: r.errors,
    requestsPerSecond: r.requestsPerSecond,
    latencyMs: r.latencyMs,
    meanBatch:
      Math.round(((after.images - before.images) / Math.max(1, after.calls - before.calls)) * 100) / 100,
  };
}

function table(rows: Measurement[]): string {
  const header = [
    'server',
    'mode',
    'concurrency',
    'requests/s',
    'p50 ms',
    'p90 ms',
    'p99 ms',
    'errors',
    'images/model call',
  ];
  const cells = rows.map((r) => [
    r.server,
    r.mode,
    String(r.concurrency),
    r.requestsPerSecond.toFixed(1),
    r.latencyMs.p50.toFixed(1),
    r.latencyMs.p90.toFixed(1),
    r.latencyMs.p99.toFixed(1),
    String(r.errors),
    r.meanBatch.toFixed(2),
  ]);
  return textTable(header, cells, 2);
}

export async function benchServe(argv: string[]): Promise<number> {
  let opts: Options | 'help';
  try {
    opts = parseOptions(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`bench: ${error.message}\n`);
    return 2;
  }
  if (opts === 'help') {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  const host = {
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    cores: availableParallelism(),
    node: process.version,
    loadAverage: loadavg().map((l) => Math.round(l * 100) / 100),
  };
  let run = opts.run;
  let folder: string | undefined;
  if (run === undefined) {
    folder = mkdtempSync(join(tmpdir(), 'image-classifier-bench-serve-'));
    opts.experimentsFolder = join(folder, 'experiments');
    run = 'bench/serve';
    note(`training a quick synthetic vgg run (1 epoch) in ${folder} ...`);
    await runCliToEnd([
      '--experiment-name',
      'bench',
      '--run-name',
      'serve',
      '--dataset',
      'synthetic',
      '--model',
      'vgg',
      '--epochs',
      '1',
      '--experiments-folder',
      opts.experimentsFolder,
      '--data-folder',
      join(folder, 'data'),
    ]);
  }
  const side = opts.imageSize;
  const body = await noiseJpeg(side);

  const rows: Measurement[] = [];
  try {
    const servers: Server[] = opts.baseline === undefined ? ['current'] : ['baseline', 'current'];
    for (const mode of opts.modes) {
      for (const server of servers) {
        const what = `${server} ${mode}`;
        note(`${what}: starting serve ${run} ${MODES[mode].join(' ')}`.trimEnd());
        const { child, url } = await startServer(run, opts, mode, server);
        try {
          for (const concurrency of opts.concurrency) {
            note(`${what}: concurrency ${concurrency}, ${opts.warmup} s warm-up + ${opts.duration} s ...`);
            rows.push(await measure(url, body, server, mode, concurrency, opts));
          }
        } finally {
          const code = await stopServer(child);
          if (code !== 0) note(`${what}: serve exited with ${code} on SIGTERM`);
        }
      }
    }
  } finally {
    // The quick run was only for this measurement.
    if (folder !== undefined) rmSync(folder, { recursive: true, force: true });
  }
  const report = {
    mode: 'serve',
    date: new Date().toISOString(),
    host,
    run,
    image: { format: 'jpeg', width: side, height: side, bytes: body.length },
    durationSeconds: opts.duration,
    threads: opts.threads,
    results: rows,
  };
  const text = [
    table(rows),
    '',
    `one ${side}x${side} JPEG (${body.length} bytes) per request; ${opts.duration} s per row after ${opts.warmup} s warm-up;` +
      ` batched: --max-batch 32 --batch-window-ms 0 (defaults), unbatched: --max-batch 1`,
    `host: ${host.cpu}, ${host.cores} cores, Node ${host.node}, load average ${host.loadAverage.join(' ')} at start; ` +
      'the load generator runs on the same cores as the server',
  ].join('\n');
  const json = JSON.stringify(report, null, 2);
  if (opts.json) {
    process.stderr.write('\n' + text + '\n');
    process.stdout.write(json + '\n');
  } else process.stdout.write('\n' + text + '\n');
  if (opts.out) {
    writeFileSync(opts.out, json + '\n');
    note(`JSON written to ${opts.out}`);
  }
  return rows.some((r) => r.errors > 0 || r.requests === 0) ? 1 : 0;
}
