// `serve`: every endpoint, the limits and bad input on an in-process server (the library's
// loadModel + createServer), and a graceful SIGTERM of the CLI's server in a child process.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request, type IncomingHttpHeaders, type RequestOptions } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createServer,
  ImageDecodeError,
  loadModel,
  predict,
  type ClassifierModel,
  type ClassifierServer,
} from '../src/index.js';
import { CLI } from './helpers/cli.js';
import { noisePng, quickRun, solidImage, type QuickRun } from './helpers/use.js';

interface PredictBody {
  run: string;
  predictions: Array<{
    field?: string | null;
    filename?: string | null;
    label: string;
    probability: number;
    top: Array<{ label: string; probability: number }>;
  }>;
}

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

const MAX_BODY = 256 * 1024;

describe('serve', () => {
  let fx: QuickRun;
  let model: ClassifierModel;
  let api: ClassifierServer;
  let base: string;
  let port: number;
  let red: Buffer;
  let blue: Buffer;
  beforeAll(async () => {
    fx = await quickRun();
    model = await loadModel(fx.run, { experimentsFolder: fx.experiments, backend: 'wasm' });
    // A long batching window: concurrent requests below surely share model calls.
    api = createServer(model, {
      maxBodyBytes: MAX_BODY,
      maxImages: 4,
      batching: { maxBatch: 32, windowMs: 25 },
    });
    ({ url: base, port } = await api.listen(0, '127.0.0.1'));
    red = readFileSync(join(fx.images, 'red', '3.jpg'));
    blue = await solidImage([40, 40, 230], 'png', 50);
  });
  afterAll(async () => {
    await api?.close();
    model?.dispose();
  });

  /** A request with node:http, for what fetch cannot send (no Content-Type, chunked, Expect). */
  function raw(options: RequestOptions, send: (req: ReturnType<typeof request>) => void): Promise<Reply> {
    return new Promise((resolve, reject) => {
      let answered = false;
      const req = request(
        { host: '127.0.0.1', port, path: '/predict', method: 'POST', ...options },
        (res) => {
          answered = true;
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (body += d));
          res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
        },
      );
      // The server may close the connection while a refused body is still being sent.
      req.on('error', (error) => {
        if (!answered) reject(error);
      });
      send(req);
    });
  }

  async function postImage(body: Uint8Array | string, type: string, query = ''): Promise<Response> {
    return fetch(`${base}/predict${query}`, { method: 'POST', body, headers: { 'Content-Type': type } });
  }

  async function metric(line: string): Promise<number> {
    const text = await (await fetch(`${base}/metrics`)).text();
    const found = text.split('\n').find((l) => l.startsWith(line + ' '));
    return found === undefined ? 0 : Number(found.slice(line.length + 1));
  }

  it('GET /healthz and HEAD /healthz', async () => {
    const res = await fetch(`${base}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok', run: 'colours/r1' });
    const head = await fetch(`${base}/healthz`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
  });

  it('GET /model: what a client needs (not the host, git state or tracking URLs of run.json)', async () => {
    const res = await fetch(`${base}/model`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    const manifest = JSON.parse(readFileSync(join(fx.experiments, 'colours', 'r1', 'run.json'), 'utf8')) as {
      preprocessing: { inputShape: number[]; scale: number; mean: number[]; std: number[] };
      results: Record<string, number | null>;
    };
    const [height, width, channels] = manifest.preprocessing.inputShape;
    expect(await res.json()).toEqual({
      run: 'colours/r1',
      model: 'net',
      classes: ['blue', 'green', 'red'],
      inputSize: { height, width, channels },
      normalization: {
        scale: manifest.preprocessing.scale,
        mean: manifest.preprocessing.mean,
        std: manifest.preprocessing.std,
      },
      metrics: {
        testAccuracy: manifest.results.testAccuracy,
        testLoss: manifest.results.testLoss,
        validationAccuracy: manifest.results.validationAccuracy,
        validationLoss: manifest.results.validationLoss,
      },
    });
  });

  it('POST /predict with an image body: top-k labels and probabilities, as the library predicts', async () => {
    const res = await postImage(red, 'image/jpeg');
    expect(res.status).toBe(200);
    const body = (await res.json()) as PredictBody;
    expect(body.run).toBe('colours/r1');
    expect(body.predictions).toHaveLength(1);
    const [p] = body.predictions;
    expect(p!.top.map((t) => t.label).sort()).toEqual(['blue', 'green', 'red']);
    expect(p!.top.reduce((a, t) => a + t.probability, 0)).toBeCloseTo(1, 6);
    expect(p!.top[0]).toEqual({ label: p!.label, probability: p!.probability });
    const [direct] = await predict(model, [red]);
    expect(p!.label).toBe(direct!.label);
    expect(p!.probability).toBeCloseTo(direct!.probability, 6);

    const one = (await (await postImage(red, 'image/jpeg', '?top_k=1')).json()) as PredictBody;
    expect(one.predictions[0]!.top).toHaveLength(1);
    expect((await postImage(red, 'image/jpeg', '?top_k=zero')).status).toBe(400);
    for (const query of ['?top_k=0', '?topK=0', '?top_k=2.5', '?top_k=', '?top_k=1&top_k=2']) {
      const res = await postImage(red, 'image/jpeg', query);
      expect(res.status, query).toBe(400);
      expect(((await res.json()) as { error: string }).error, query).toMatch(/must be a positive integer/);
    }
  });

  it('POST /predict with multipart/form-data: one prediction per image, in order; text fields ignored', async () => {
    const form = new FormData();
    form.append('first', new Blob([red], { type: 'image/jpeg' }), 'red.jpg');
    form.append('note', 'a plain field, not an image');
    form.append('second', new Blob([blue], { type: 'image/png' }), 'blue.png');
    const webp = await solidImage([30, 200, 40], 'webp', 33);
    form.append('third', new Blob([webp], { type: 'application/octet-stream' }), 'green.webp');
    const res = await fetch(`${base}/predict`, { method: 'POST', body: form });
    expect(res.status).toBe(200);
    const body = (await res.json()) as PredictBody;
    expect(body.predictions.map((p) => [p.field, p.filename])).toEqual([
      ['first', 'red.jpg'],
      ['second', 'blue.png'],
      ['third', 'green.webp'],
    ]);
    const direct = await predict(model, [red, blue, webp]);
    expect(body.predictions.map((p) => p.label)).toEqual(direct.map((d) => d.label));
  });

  it('refuses bad images (400), wrong content types (415), empty bodies (400) with a JSON error', async () => {
    const png = await noisePng();
    const cases: Array<[string, Promise<Response>, number, RegExp]> = [
      [
        'truncated PNG',
        postImage(png.subarray(0, png.length >> 1), 'image/png'),
        400,
        /cannot be read as an image/,
      ],
      ['text as an image', postImage('just some text', 'image/jpeg'), 400, /cannot be read as an image/],
      ['empty body', postImage(new Uint8Array(0), 'image/png'), 400, /empty body/],
      ['text/plain', postImage('hello', 'text/plain'), 415, /text\/plain is not accepted/],
      ['JSON', postImage('{"image": "x"}', 'application/json'), 415, /application\/json is not accepted/],
    ];
    for (const [what, pending, status, message] of cases) {
      const res = await pending;
      expect(res.status, what).toBe(status);
      expect(res.headers.get('content-type'), what).toMatch(/^application\/json/);
      expect(((await res.json()) as { error: string }).error, what).toMatch(message);
    }
    const untyped = await raw({ headers: { 'Content-Length': red.length } }, (req) => req.end(red));
    expect(untyped.status).toBe(415);
    expect(JSON.parse(untyped.body)).toEqual({ error: expect.stringMatching(/missing Content-Type/) });
  });

  it('refuses bad multipart bodies', async () => {
    const boundary = 'XyZ123';
    const part = (name: string, type: string, data: string) =>
      `--${boundary}\r\nContent-Disposition: form-data; name="${name}"; filename="${name}"\r\nContent-Type: ${type}\r\n\r\n${data}\r\n`;
    const send = (body: string, type = `multipart/form-data; boundary=${boundary}`) =>
      postImage(Buffer.from(body, 'latin1'), type);
    const truncated = await send(part('a', 'image/png', 'abc'));
    expect(truncated.status).toBe(400);
    expect(await truncated.text()).toMatch(/truncated multipart body/);
    const textFile = await send(part('a', 'text/plain', 'hello') + `--${boundary}--\r\n`);
    expect(textFile.status).toBe(415);
    const noFiles = await send(
      `--${boundary}\r\nContent-Disposition: form-data; name="x"\r\n\r\nvalue\r\n--${boundary}--\r\n`,
    );
    expect(noFiles.status).toBe(400);
    expect(await noFiles.text()).toMatch(/no files/);
    const notImage = await send(part('a', 'image/png', 'not really a png') + `--${boundary}--\r\n`);
    expect(notImage.status).toBe(400);
    expect(await notImage.text()).toMatch(/image \\"a\\" cannot be read as an image/);
    const noBoundary = await send(part('a', 'image/png', 'x'), 'multipart/form-data');
    expect(noBoundary.status).toBe(400);
    const form = new FormData();
    for (let i = 0; i < 5; i++) form.append(`f${i}`, new Blob([red], { type: 'image/jpeg' }), `${i}.jpg`);
    const tooMany = await fetch(`${base}/predict`, { method: 'POST', body: form });
    expect(tooMany.status).toBe(413);
  });

  it('refuses bodies over --max-body-bytes with 413, declared, chunked or announced with Expect', async () => {
    const big = Buffer.alloc(MAX_BODY + 1, 7);
    const declared = await raw(
      { headers: { 'Content-Type': 'image/png', 'Content-Length': big.length } },
      (req) => req.end(big),
    );
    expect(declared.status).toBe(413);
    expect(JSON.parse(declared.body)).toEqual({
      error: `request body larger than the limit of ${MAX_BODY} bytes`,
    });
    const chunked = await raw({ headers: { 'Content-Type': 'image/png' } }, (req) => {
      for (let i = 0; i < big.length; i += 16384) req.write(big.subarray(i, i + 16384));
      req.end();
    });
    expect(chunked.status).toBe(413);
    const expecting = await raw(
      { headers: { 'Content-Type': 'image/png', 'Content-Length': big.length, Expect: '100-continue' } },
      // The body is only sent once the server says to continue, which it must not.
      (req) => req.on('continue', () => req.end(big)).flushHeaders(),
    );
    expect(expecting.status).toBe(413);
    // A chunked form counts whole, its ignored text fields too.
    const boundary = 'XyZ123';
    const fields = Array.from(
      { length: 8 },
      (_, i) =>
        `--${boundary}\r\nContent-Disposition: form-data; name="f${i}"\r\n\r\n${'x'.repeat(MAX_BODY / 4)}\r\n`,
    ).join('');
    const form = await raw(
      { headers: { 'Content-Type': `multipart/form-data; boundary=${boundary}` } },
      (req) => req.end(fields + `--${boundary}--\r\n`),
    );
    expect(form.status).toBe(413);
    // At the limit exactly it is read, and judged as an image.
    const atLimit = await postImage(big.subarray(0, MAX_BODY), 'image/png');
    expect(atLimit.status).toBe(400);
  });

  it('answers unknown routes with 404 and wrong methods with 405', async () => {
    // Only the plain paths: not with a trailing slash or a %-escape that decodes to one.
    for (const path of ['/healthz/', '/%68ealthz', '/pr%65dict'])
      expect((await fetch(`${base}${path}`)).status, path).toBe(404);
    const missing = await fetch(`${base}/nope`);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: string }).error).toMatch(/no route \/nope/);
    const get = await fetch(`${base}/predict`);
    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('POST');
    // Without --cors there is no preflight to answer.
    const options = await fetch(`${base}/predict`, {
      method: 'OPTIONS',
      headers: { Origin: 'https://app.example.com', 'Access-Control-Request-Method': 'POST' },
    });
    expect(options.status).toBe(405);
    expect(options.headers.get('access-control-allow-origin')).toBeNull();
    const del = await fetch(`${base}/model`, { method: 'DELETE' });
    expect(del.status).toBe(405);
    expect(del.headers.get('allow')).toBe('GET, HEAD');
  });

  it('GET /metrics: Prometheus text whose counters move with requests; concurrent requests share model calls', async () => {
    const res = await fetch(`${base}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    const text = await res.text();
    expect(text).toContain(
      'image_classifier_model_info{run="colours/r1",model="net",backend="wasm",classes="3"} 1',
    );
    expect(text).toMatch(/^image_classifier_model_load_seconds \d+(\.\d+)?(e-\d+)?$/m);
    expect(text).toContain('# TYPE image_classifier_http_request_duration_seconds histogram');
    expect(text).toMatch(
      // Label order is prom-client's (le first); Prometheus does not care.
      /^image_classifier_http_request_duration_seconds_bucket\{(?=[^}]*route="\/predict")(?=[^}]*status="200")(?=[^}]*le="\+Inf")[^}]*\} \d+$/m,
    );
    expect(text).toMatch(/^image_classifier_http_requests_total\{route="other",status="404"\} [1-9]\d*$/m);

    const ok = 'image_classifier_http_requests_total{route="/predict",status="200"}';
    const bad = 'image_classifier_http_requests_total{route="/predict",status="400"}';
    const images = 'image_classifier_images_predicted_total';
    const calls = 'image_classifier_inference_batch_size_count';
    const [ok0, bad0, images0, calls0] = (await Promise.all([ok, bad, images, calls].map(metric))) as [
      number,
      number,
      number,
      number,
    ];
    const replies = await Promise.all(Array.from({ length: 8 }, () => postImage(red, 'image/jpeg')));
    expect(replies.map((r) => r.status)).toEqual(new Array(8).fill(200));
    await postImage('nope', 'image/png');
    expect(await metric(ok)).toBe(ok0 + 8);
    expect(await metric(bad)).toBe(bad0 + 1);
    expect(await metric(images)).toBe(images0 + 8);
    expect(await metric(calls)).toBeLessThan(calls0 + 8);
    expect(
      await metric('image_classifier_http_request_duration_seconds_count{route="/predict",status="200"}'),
    ).toBe(ok0 + 8);
  });

  it('library predict() names an unreadable input', async () => {
    await expect(predict(model, [red, Buffer.from('text')])).rejects.toThrow(ImageDecodeError);
    await expect(predict(model, [join(fx.cwd, 'missing.jpg')])).rejects.toThrow(
      /missing\.jpg: cannot be read/,
    );
  });

  it('SIGTERM: stops accepting, finishes the request in flight, exits 0', async () => {
    const child = spawn(process.execPath, [CLI, 'serve', fx.run, '--port', '0', '--backend', 'wasm'], {
      cwd: fx.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    const waitFor = (pattern: RegExp) =>
      new Promise<RegExpMatchArray>((resolve, reject) => {
        const check = () => {
          const match = pattern.exec(stdout);
          if (match) {
            child.stdout.off('data', check);
            resolve(match);
          }
        };
        child.stdout.on('data', check);
        child.once('exit', (code) => reject(new Error(`server exited (${code}): ${stderr}`)));
        check();
      });
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    try {
      const [, url] = await waitFor(/listening on (http:\/\/[\d.]+:\d+)/);
      const childPort = Number(new URL(url!).port);
      // Half a body sent: the request is in flight when the signal comes.
      let finish: () => void = () => {};
      const reply = new Promise<Reply>((resolve, reject) => {
        const req = request(
          {
            host: '127.0.0.1',
            port: childPort,
            path: '/predict',
            method: 'POST',
            headers: { 'Content-Type': 'image/jpeg', 'Content-Length': red.length },
          },
          (res) => {
            let body = '';
            res.on('data', (d: Buffer) => (body += d.toString()));
            res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
          },
        );
        req.on('error', reject);
        req.write(red.subarray(0, 100));
        finish = () => req.end(red.subarray(100));
      });
      await new Promise((r) => setTimeout(r, 300));
      child.kill('SIGTERM');
      await waitFor(/SIGTERM: no new connections/);
      await expect(fetch(`${url}/healthz`)).rejects.toThrow();
      finish();
      const res = await reply;
      expect(res.status, res.body).toBe(200);
      expect(res.headers.connection).toBe('close');
      expect((JSON.parse(res.body) as PredictBody).predictions).toHaveLength(1);
      expect(await exited).toBe(0);
      // JSON lines (the default --log-format): the request's with its id, and the server's own.
      const lines = stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines.find((l) => l.msg === 'request')).toMatchObject({
        level: 'info',
        reqId: res.headers['x-request-id'],
        method: 'POST',
        url: '/predict',
        status: 200,
      });
      expect(lines.at(-1)).toMatchObject({ level: 'info', msg: 'stopped' });
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
