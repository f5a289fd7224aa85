// The pieces of serving that need no model: the multipart parser, the micro-batcher, size flags and
// the Prometheus text.
import { describe, expect, it } from 'vitest';
import { MicroBatcher } from '../src/serving/batcher.js';
import { parseByteSize } from '../src/model-options.js';
import { ServerMetrics } from '../src/serving/metrics.js';
import type { Prediction } from '../src/serving/model.js';
import { boundaryOf, MultipartError, parseContentType, parseMultipart } from '../src/serving/multipart.js';

const B = 'XyZ123';
const crlf = (lines: Array<string | Buffer>) =>
  Buffer.concat(lines.map((l) => (typeof l === 'string' ? Buffer.from(l, 'latin1') : l)));

describe('multipart parser', () => {
  it('splits parts, with preamble, transport padding and epilogue', () => {
    const body = crlf([
      'This is the preamble.\r\n',
      `--${B}  \r\n`,
      'Content-Disposition: form-data; name="a"; filename="one.png"\r\n',
      'Content-Type: Image/PNG; charset=whatever\r\n\r\n',
      'first\r\n',
      `--${B}\r\n`,
      'content-disposition: form-data; name=b\r\n\r\n',
      'second value\r\n',
      `--${B}--\r\nepilogue, ignored\r\n--${B}\r\n`,
    ]);
    const parts = parseMultipart(body, B);
    expect(parts.map((p) => [p.name, p.filename, p.contentType, p.data.toString()])).toEqual([
      ['a', 'one.png', 'image/png', 'first'],
      ['b', null, null, 'second value'],
    ]);
    expect(parts[0]!.headers['content-type']).toBe('Image/PNG; charset=whatever');
  });

  it('keeps binary content whole: CRLF, dashes and a boundary-like line inside a part', () => {
    const binary = Buffer.from([0, 255, 13, 10, 45, 45, 13, 10, 13, 10, 1, 2, 3]);
    const tricky = Buffer.from(`\r\n--${B}abc\r\n--${B.slice(0, 3)}\r\n`, 'latin1');
    const body = crlf([
      `--${B}\r\nContent-Disposition: form-data; name="x"; filename="x.bin"\r\n\r\n`,
      binary,
      tricky,
      `\r\n--${B}\r\nContent-Disposition: form-data; name="empty"\r\n\r\n`,
      `\r\n--${B}--`,
    ]);
    const [x, empty] = parseMultipart(body, B);
    expect(x!.data.equals(Buffer.concat([binary, tricky]))).toBe(true);
    expect(empty!.data.length).toBe(0);
  });

  it('reads quoted and RFC 5987 file names, and parts without headers', () => {
    const body = crlf([
      `--${B}\r\nContent-Disposition: form-data; name="q"; filename="a \\"b\\"; c.png"\r\n\r\nq\r\n`,
      `--${B}\r\nContent-Disposition: form-data; name="u"; filename="fallback.png"; filename*=UTF-8''%E2%82%AC%20rates.png\r\n\r\nu\r\n`,
      `--${B}\r\n\r\nno headers\r\n`,
      `--${B}--\r\n`,
    ]);
    const parts = parseMultipart(body, B);
    expect(parts.map((p) => p.filename)).toEqual(['a "b"; c.png', '€ rates.png', null]);
    expect(parts[2]!.data.toString()).toBe('no headers');
  });

  it('parses what fetch/FormData sends', async () => {
    const form = new FormData();
    const bytes = Uint8Array.from({ length: 5000 }, (_, i) => (i * 7919) % 256);
    form.append('image', new Blob([bytes], { type: 'image/png' }), 'pic.png');
    form.append('field', 'text');
    const request = new Request('http://localhost/', { method: 'POST', body: form });
    const body = Buffer.from(await request.arrayBuffer());
    const parts = parseMultipart(body, boundaryOf(request.headers.get('content-type')!));
    expect(parts).toHaveLength(2);
    expect(parts[0]).toMatchObject({ name: 'image', filename: 'pic.png', contentType: 'image/png' });
    expect(Buffer.compare(parts[0]!.data, Buffer.from(bytes))).toBe(0);
    expect(parts[1]!.data.toString()).toBe('text');
  });

  it('refuses truncated or malformed bodies with a MultipartError', () => {
    const head = `--${B}\r\nContent-Disposition: form-data; name="a"\r\n\r\n`;
    const cases: Array<[string, Buffer, RegExp]> = [
      ['no boundary', Buffer.from('just text'), /no multipart boundary/],
      ['no closing boundary', Buffer.from(head + 'data'), /truncated/],
      ['ends at a boundary', Buffer.from(head + `data\r\n--${B}`), /truncated/],
      ['headers never end', Buffer.from(`--${B}\r\nContent-Type: image/png\r\n`), /headers do not end/],
      ['bad header', Buffer.from(`--${B}\r\nno colon here\r\n\r\nx\r\n--${B}--`), /malformed part header/],
      [
        'garbage after a boundary',
        Buffer.from(`--${B}xx\r\n\r\nx\r\n--${B}--`),
        /no multipart boundary|truncated/,
      ],
    ];
    for (const [what, body, message] of cases) {
      expect(() => parseMultipart(body, B), what).toThrow(MultipartError);
      expect(() => parseMultipart(body, B), what).toThrow(message);
    }
    const many = crlf([...Array.from({ length: 4 }, () => `--${B}\r\n\r\nx\r\n`), `--${B}--`]);
    expect(() => parseMultipart(many, B, { maxParts: 3 })).toThrow(/more than 3 parts/);
    const bigHeader = Buffer.from(`--${B}\r\nX-Long: ${'y'.repeat(100)}\r\n\r\nx\r\n--${B}--`);
    expect(() => parseMultipart(bigHeader, B, { maxHeaderBytes: 50 })).toThrow(/headers too large/);
  });

  it('finds the boundary in the Content-Type', () => {
    expect(boundaryOf('multipart/form-data; boundary=abc')).toBe('abc');
    expect(boundaryOf('multipart/form-data; charset=utf-8; BOUNDARY="a b;c"')).toBe('a b;c');
    expect(() => boundaryOf('multipart/form-data')).toThrow(/without a boundary/);
    expect(() => boundaryOf(`multipart/form-data; boundary=${'x'.repeat(71)}`)).toThrow(/invalid/);
    expect(parseContentType('Image/JPEG')).toEqual({ type: 'image/jpeg', params: {} });
  });
});

describe('micro-batcher', () => {
  const prediction = (label: string): Prediction => ({ label, probability: 1, top: [], probabilities: [1] });

  it('puts images submitted together into one call, at most maxBatch, one call at a time', async () => {
    const calls: number[] = [];
    let running = 0;
    const batcher = new MicroBatcher(
      async (images) => {
        running++;
        expect(running).toBe(1);
        calls.push(images.length);
        await new Promise((r) => setTimeout(r, 5));
        running--;
        return images.map((image) => prediction(String(image[0])));
      },
      { maxBatch: 4, windowMs: 2 },
    );
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => batcher.submit(Uint8Array.of(i))));
    expect(results.map((r) => r.label)).toEqual(Array.from({ length: 10 }, (_, i) => String(i)));
    expect(calls).toEqual([4, 4, 2]);
    expect(batcher.pending).toBe(0);
  });

  it('maxBatch 1: one image per call; a failing call rejects only its own images', async () => {
    const calls: number[] = [];
    const batcher = new MicroBatcher(
      async (images) => {
        calls.push(images.length);
        if (images[0]![0] === 1) throw new Error('model failed');
        return images.map(() => prediction('ok'));
      },
      { maxBatch: 1, windowMs: 0 },
    );
    const results = await Promise.allSettled([0, 1, 2].map((i) => batcher.submit(Uint8Array.of(i))));
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(calls).toEqual([1, 1, 1]);
  });
});

describe('serve helpers', () => {
  it('parses --max-body-bytes sizes', () => {
    expect(parseByteSize('10485760', 'max-body-bytes')).toBe(10485760);
    expect(parseByteSize('512k', 'max-body-bytes')).toBe(512 * 1024);
    expect(parseByteSize('10MiB', 'max-body-bytes')).toBe(10 * 1024 * 1024);
    expect(parseByteSize('1.5M', 'max-body-bytes')).toBe(1.5 * 1024 * 1024);
    expect(() => parseByteSize('ten', 'max-body-bytes')).toThrow(/--max-body-bytes must be a size/);
    expect(() => parseByteSize('0', 'max-body-bytes')).toThrow(/--max-body-bytes/);
  });

  it('writes Prometheus text: escaped labels, cumulative buckets, sum and count', () => {
    const metrics = new ServerMetrics({
      run: 'a"b\\c/d',
      model: 'vgg',
      backend: 'wasm',
      classes: 10,
      loadSeconds: 1.5,
    });
    metrics.observeRequest('/predict', 200, 0.003);
    metrics.observeRequest('/predict', 200, 0.2);
    const text = metrics.render();
    expect(text).toContain(
      'image_classifier_model_info{run="a\\"b\\\\c/d",model="vgg",backend="wasm",classes="10"} 1',
    );
    expect(text).toContain('image_classifier_http_requests_total{route="/predict",status="200"} 2');
    expect(text).toContain(
      'image_classifier_http_request_duration_seconds_bucket{route="/predict",status="200",le="0.005"} 1',
    );
    expect(text).toContain(
      'image_classifier_http_request_duration_seconds_bucket{route="/predict",status="200",le="0.25"} 2',
    );
    expect(text).toContain(
      'image_classifier_http_request_duration_seconds_bucket{route="/predict",status="200",le="+Inf"} 2',
    );
    expect(text).toContain(
      'image_classifier_http_request_duration_seconds_count{route="/predict",status="200"} 2',
    );
    expect(text).toMatch(/^image_classifier_model_load_seconds 1\.5$/m);
    // Every sample's metric has a TYPE line before it.
    const types = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]));
    for (const line of text.split('\n').filter((l) => l && !l.startsWith('#'))) {
      const name = line.split(/[{ ]/)[0]!.replace(/_(bucket|sum|count)$/, '');
      expect(types.has(name) || types.has(line.split(/[{ ]/)[0]!), line).toBe(true);
    }
  });
});
