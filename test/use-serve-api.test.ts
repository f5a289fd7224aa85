// `serve` beyond the endpoints: /openapi.json and /docs, CORS, request ids, bearer-token auth, JSON and
// text logs, the default process metrics and keep-alive for load balancers, on in-process servers.
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, loadModel, serve, type ClassifierModel, type ClassifierServer } from '../src/index.js';
import { CLI, runCli } from './helpers/cli.js';
import { quickRun, type QuickRun } from './helpers/use.js';
import { loadTest } from '../scripts/loadtest.js';
import { Validator } from '@seriousme/openapi-schema-validator';

const TOKEN = 's3cret-token_123';
const ORIGIN = 'https://app.example.com';

describe('serve API', () => {
  let fx: QuickRun;
  let model: ClassifierModel;
  /** No auth, no CORS, JSON logs collected. */
  let open: ClassifierServer;
  let openUrl: string;
  const openLog: string[] = [];
  /** Auth and CORS on, text logs collected. */
  let locked: ClassifierServer;
  let lockedUrl: string;
  const lockedLog: string[] = [];
  let red: Buffer;

  beforeAll(async () => {
    fx = await quickRun();
    model = await loadModel(fx.run, { experimentsFolder: fx.experiments, backend: 'wasm' });
    open = createServer(model, { log: (l) => openLog.push(l) });
    ({ url: openUrl } = await open.listen(0, '127.0.0.1'));
    locked = createServer(model, {
      log: (l) => lockedLog.push(l),
      logFormat: 'text',
      authToken: TOKEN,
      corsOrigins: [ORIGIN],
    });
    ({ url: lockedUrl } = await locked.listen(0, '127.0.0.1'));
    red = readFileSync(join(fx.images, 'red', '3.jpg'));
  });
  afterAll(async () => {
    await open?.close();
    await locked?.close();
    model?.dispose();
  });

  const post = (base: string, headers: Record<string, string> = {}) =>
    fetch(`${base}/predict`, {
      method: 'POST',
      body: red,
      headers: { 'Content-Type': 'image/jpeg', ...headers },
    });

  it('GET /openapi.json: OpenAPI 3 with one path per route, schemas from the zod definitions', async () => {
    const res = await fetch(`${openUrl}/openapi.json`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    const spec = (await res.json()) as {
      openapi: string;
      info: { title: string; version: string };
      paths: Record<string, Record<string, { responses: Record<string, unknown>; requestBody?: unknown }>>;
    };
    expect(spec.openapi).toMatch(/^3\.\d+\.\d+$/);
    // Valid against the OpenAPI 3 JSON schema, as any client generator reads it.
    const validation = await new Validator().validate(spec as unknown as Record<string, unknown>);
    expect(validation.errors ?? [], JSON.stringify(validation.errors)).toEqual([]);
    expect(validation.valid).toBe(true);
    expect(spec.info.title).toContain('colours/r1');
    expect(typeof spec.info.version).toBe('string');
    expect(Object.keys(spec.paths).sort()).toEqual(['/healthz', '/metrics', '/model', '/predict']);
    const methods = (path: string) => Object.keys(spec.paths[path]!).filter((m) => m !== 'head');
    expect(methods('/predict')).toEqual(['post']);
    for (const path of ['/healthz', '/metrics', '/model']) expect(methods(path)).toEqual(['get']);
    // Every operation answers something; /predict documents its bodies and errors.
    for (const [path, ops] of Object.entries(spec.paths))
      for (const op of Object.values(ops)) expect(Object.keys(op.responses).length, path).toBeGreaterThan(0);
    const predict = spec.paths['/predict']!.post!;
    expect(Object.keys(predict.requestBody as object)).toContain('content');
    expect(Object.keys((predict.requestBody as { content: object }).content).sort()).toEqual([
      'image/*',
      'multipart/form-data',
    ]);
    expect(Object.keys(predict.responses).sort()).toEqual(['200', '400', '401', '413', '415']);
    expect(JSON.stringify(predict.responses['200'])).toContain('"predictions"');
  });

  it('GET /docs: the interactive page', async () => {
    const res = await fetch(`${openUrl}/docs`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    expect(await res.text()).toMatch(/swagger/i);
  });

  it('a request id on every response: a new UUID, or the client’s X-Request-Id when it is plain', async () => {
    const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
    for (const res of [
      await fetch(`${openUrl}/healthz`),
      await fetch(`${openUrl}/nope`),
      await fetch(`${openUrl}/predict`),
      await post(openUrl),
      await fetch(`${openUrl}/predict`, {
        method: 'POST',
        body: 'x',
        headers: { 'Content-Type': 'text/plain' },
      }),
    ]) {
      expect(res.headers.get('x-request-id'), res.url).toMatch(uuid);
    }
    const a = await fetch(`${openUrl}/healthz`);
    const b = await fetch(`${openUrl}/healthz`);
    expect(a.headers.get('x-request-id')).not.toBe(b.headers.get('x-request-id'));
    const given = await fetch(`${openUrl}/healthz`, { headers: { 'X-Request-Id': 'lb-abc.123:4' } });
    expect(given.headers.get('x-request-id')).toBe('lb-abc.123:4');
    // Not plain (it would go into the logs as is): replaced.
    const odd = await fetch(`${openUrl}/healthz`, { headers: { 'X-Request-Id': 'a b"c' } });
    expect(odd.headers.get('x-request-id')).toMatch(uuid);
  });

  it('JSON logs: one object per request with its id, method, URL, status and ms', async () => {
    const res = await post(openUrl, { 'X-Request-Id': 'json-log-1' });
    expect(res.status).toBe(200);
    await res.text();
    await new Promise((r) => setTimeout(r, 50));
    const entries = openLog.map((l) => JSON.parse(l) as Record<string, unknown>);
    const entry = entries.find((e) => e.reqId === 'json-log-1');
    expect(entry).toMatchObject({
      level: 'info',
      msg: 'request',
      method: 'POST',
      url: '/predict',
      status: 200,
    });
    expect(typeof entry!.ms).toBe('number');
    expect(new Date(entry!.time as string).getTime()).toBeGreaterThan(Date.now() - 60_000);
    // Every line is JSON and carries a request id.
    for (const e of entries) expect(e.reqId, JSON.stringify(e)).toEqual(expect.any(String));
  });

  it('bearer-token auth: /predict and /model need it (401 otherwise), /healthz and /metrics do not', async () => {
    const tries: Array<Record<string, string>> = [
      {},
      { Authorization: 'Bearer wrong' },
      { Authorization: TOKEN },
    ];
    for (const headers of tries) {
      const res = await post(lockedUrl, headers);
      expect(res.status, JSON.stringify(headers)).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Bearer');
      expect(((await res.json()) as { error: string }).error).toMatch(/bearer token/);
    }
    const ok = await post(lockedUrl, { Authorization: `Bearer ${TOKEN}` });
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { predictions: unknown[] }).predictions).toHaveLength(1);

    expect((await fetch(`${lockedUrl}/model`)).status).toBe(401);
    // With the token: the whole run.json (as /model was before).
    const full = await fetch(`${lockedUrl}/model`, { headers: { Authorization: `Bearer ${TOKEN}` } });
    expect(full.status).toBe(200);
    const manifest = JSON.parse(
      readFileSync(join(fx.experiments, 'colours', 'r1', 'run.json'), 'utf8'),
    ) as unknown;
    expect(await full.json()).toEqual(manifest);

    expect((await fetch(`${lockedUrl}/healthz`)).status).toBe(200);
    expect((await fetch(`${lockedUrl}/metrics`)).status).toBe(200);
    // Auth off: the summary, never run.json's host and git details, whatever the header says.
    const summary = (await (
      await fetch(`${openUrl}/model`, { headers: { Authorization: `Bearer ${TOKEN}` } })
    ).json()) as Record<string, unknown>;
    expect(Object.keys(summary).sort()).toEqual([
      'classes',
      'inputSize',
      'metrics',
      'model',
      'normalization',
      'run',
    ]);
  });

  it('text logs: time, request id, method, URL, status, ms', async () => {
    await (await post(lockedUrl, { 'X-Request-Id': 'text-log-1' })).text();
    await new Promise((r) => setTimeout(r, 50));
    expect(lockedLog.find((l) => l.includes('[text-log-1]'))).toMatch(
      /^\d{4}-\d\d-\d\dT\S+Z \[text-log-1\] POST \/predict 401 \d+(\.\d+)? ms$/,
    );
  });

  it('CORS (--cors): preflight answered for allowed origins, X-Request-Id exposed', async () => {
    const preflight = await fetch(`${lockedUrl}/predict`, {
      method: 'OPTIONS',
      headers: {
        Origin: ORIGIN,
        'Access-Control-Request-Method': 'POST',
        'Access-Control-Request-Headers': 'authorization,content-type',
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe(ORIGIN);
    expect(preflight.headers.get('access-control-allow-methods')).toMatch(/POST/);
    expect(preflight.headers.get('access-control-allow-headers')?.toLowerCase()).toMatch(/authorization/);
    const answer = await post(lockedUrl, { Origin: ORIGIN, Authorization: `Bearer ${TOKEN}` });
    expect(answer.status).toBe(200);
    expect(answer.headers.get('access-control-allow-origin')).toBe(ORIGIN);
    expect(answer.headers.get('access-control-expose-headers')).toMatch(/X-Request-Id/i);
    // Another origin: no CORS headers, so the browser refuses to hand the answer over.
    const other = await fetch(`${lockedUrl}/healthz`, { headers: { Origin: 'https://evil.example' } });
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('GET /metrics: default process metrics, predictions by top-1 label', async () => {
    await (await post(openUrl)).text();
    const text = await (await fetch(`${openUrl}/metrics`)).text();
    for (const name of [
      'process_cpu_seconds_total',
      'process_resident_memory_bytes',
      'nodejs_heap_size_used_bytes',
      'nodejs_eventloop_lag_seconds',
      'image_classifier_http_requests_in_flight',
    ])
      expect(text).toMatch(new RegExp(`^${name} \\d`, 'm'));
    expect(text).toContain('# TYPE nodejs_gc_duration_seconds histogram');
    // The process's start, not the server object's.
    const start = Number(/^process_start_time_seconds (\d+)/m.exec(text)![1]);
    expect(Math.abs(start - (Date.now() / 1000 - process.uptime()))).toBeLessThan(2);
    expect(text).toMatch(/^image_classifier_predictions_total\{label="(red|green|blue)"\} [1-9]\d*$/m);
  });

  it('npm run loadtest measures any server: requests/s and p50/p90/p99 (autocannon)', async () => {
    const r = await loadTest(openUrl, { connections: 2, durationSeconds: 1, warmupSeconds: 0, body: red });
    expect(r.errors).toBe(0);
    expect(r.requests).toBeGreaterThan(0);
    expect(r.requestsPerSecond).toBeGreaterThan(0);
    expect(r.latencyMs.p99).toBeGreaterThanOrEqual(r.latencyMs.p50);
    // A server that refuses (here: no token) is reported as errors, not as speed.
    const refused = await loadTest(lockedUrl, {
      connections: 1,
      durationSeconds: 1,
      warmupSeconds: 0,
      body: red,
    });
    expect(refused.requests).toBe(0);
    expect(refused.errors).toBeGreaterThan(0);
  });

  it('keep-alive outlasts a load balancer’s 60 s idle timeout', async () => {
    const res = await fetch(`${openUrl}/healthz`);
    expect(res.headers.get('keep-alive')).toBe('timeout=65');
  });

  it('serve(): --cors and --auth-token-file are checked before the model loads (exit 2 in the CLI)', async () => {
    const opts = { experimentsFolder: fx.experiments, backend: 'wasm' as const, port: 0 };
    await expect(serve(fx.run, { ...opts, cors: 'app.example.com' })).rejects.toThrow(
      /--cors: .* not an origin/,
    );
    await expect(serve(fx.run, { ...opts, authTokenFile: join(fx.cwd, 'missing.txt') })).rejects.toThrow(
      /--auth-token-file/,
    );
    writeFileSync(join(fx.cwd, 'empty-token'), '\n');
    const empty = await runCli(['serve', fx.run, '--port', '0', '--auth-token-file', 'empty-token'], {
      cwd: fx.cwd,
    });
    expect(empty.code).toBe(2);
    expect(empty.stderr).toMatch(/--auth-token-file empty-token: must hold one token/);
  });

  it('the CLI takes the token from --auth-token-file or $IMAGE_CLASSIFIER_TOKEN', async () => {
    writeFileSync(join(fx.cwd, 'token'), `${TOKEN}\n`);
    const [fromFile, fromEnv] = await Promise.all([
      startCli(['--auth-token-file', 'token'], {}),
      startCli([], { IMAGE_CLASSIFIER_TOKEN: TOKEN }),
    ]);
    try {
      for (const { url } of [fromFile, fromEnv]) {
        expect((await post(url)).status).toBe(401);
        expect((await post(url, { Authorization: `Bearer ${TOKEN}` })).status).toBe(200);
      }
    } finally {
      fromFile.child.kill('SIGKILL');
      fromEnv.child.kill('SIGKILL');
    }
  });

  /** `serve` in a child process; resolves once it listens. */
  function startCli(args: string[], env: Record<string, string>) {
    const child = spawn(
      process.execPath,
      [CLI, 'serve', fx.run, '--port', '0', '--backend', 'wasm', '--log-format', 'text', ...args],
      { cwd: fx.cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } },
    );
    return new Promise<{ child: typeof child; url: string }>((resolve, reject) => {
      let out = '';
      let err = '';
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const match = /listening on (http:\/\/[\d.]+:\d+)/.exec(out);
        if (match) {
          expect(out).toMatch(/need the bearer token/);
          resolve({ child, url: match[1]! });
        }
      });
      child.once('exit', (code) => reject(new Error(`serve exited (${code}): ${err}`)));
    });
  }
});
