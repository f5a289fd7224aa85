// The pieces of serving that need no model: the micro-batcher, size flags and the Prometheus text
// (multipart bodies are @fastify/multipart's, tested through the server in use-serve.test.ts).
import { describe, expect, it } from 'vitest';
import { MicroBatcher } from '../src/serving/batcher.js';
import { parseByteSize } from '../src/model-options.js';
import { ServerMetrics } from '../src/serving/metrics.js';
import type { Prediction } from '../src/serving/model.js';
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

  // prom-client writes `le` first; Prometheus reads labels in any order.
  it('writes Prometheus text: escaped labels, cumulative buckets, sum and count', async () => {
    const metrics = new ServerMetrics({
      run: 'a"b\\c/d',
      model: 'vgg',
      backend: 'wasm',
      classes: 10,
      loadSeconds: 1.5,
    });
    metrics.observeRequest('/predict', 200, 0.003);
    metrics.observeRequest('/predict', 200, 0.2);
    const text = await metrics.render();
    expect(text).toContain(
      'image_classifier_model_info{run="a\\"b\\\\c/d",model="vgg",backend="wasm",classes="10"} 1',
    );
    expect(text).toContain('image_classifier_http_requests_total{route="/predict",status="200"} 2');
    expect(text).toContain(
      'image_classifier_http_request_duration_seconds_bucket{le="0.005",route="/predict",status="200"} 1',
    );
    expect(text).toContain(
      'image_classifier_http_request_duration_seconds_bucket{le="0.25",route="/predict",status="200"} 2',
    );
    expect(text).toContain(
      'image_classifier_http_request_duration_seconds_bucket{le="+Inf",route="/predict",status="200"} 2',
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
