// --wandb end to end against a W&B stand-in on 127.0.0.1 (no network): what arrives, what run.json
// records, that the API key is written nowhere, and that W&B failures never fail or hang a run.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { basename, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { parseRunConfig } from '../src/config.js';
import type { Manifest } from '../src/runs/manifest.js';
import { TrainingInterrupted } from '../src/errors.js';
import type { Metrics } from '../src/runs/metrics.js';
import { train } from '../src/training/train.js';
import {
  createTracker,
  createWandbTracker,
  netrcKey,
  resolveWandbSettings,
  trackedConfig,
  type WandbTrackerOptions,
} from '../src/tracking/wandb.js';
import { noTracker, type TrackerFactory } from '../src/tracking/tracker.js';
import { runCli, tempFolder, type CliResult } from './helpers/cli.js';
import { makeFolder } from './helpers/images.js';
import { startWandbServer, type WandbServer, type WandbServerOptions } from './helpers/wandb-server.js';

// 40 characters after the last '-', like a real key.
const KEY = 'test-key-0123456789abcdef0123456789abcdef01234567';
const BASIC = Buffer.from(`api:${KEY}`).toString('base64');
const QUICK = ['--dataset', 'synthetic', '--model', 'net', '--batch-size', '64', '--device', 'cpu'];

let server: WandbServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function serve(options: WandbServerOptions = {}): Promise<WandbServer> {
  server = await startWandbServer({ apiKey: KEY, ...options });
  return server;
}

/** Trains `e/r` with --wandb; the environment has nothing of the caller's W&B settings. */
async function trainCli(baseUrl: string, epochs: number, env: NodeJS.ProcessEnv = {}, extra: string[] = []) {
  const cwd = tempFolder('ic-wandb-');
  const args = ['--experiment-name', 'e', '--run-name', 'r', ...QUICK, '--epochs', String(epochs), '--wandb'];
  const result = await runCli([...args, ...extra], {
    cwd,
    env: {
      HOME: cwd,
      NETRC: '',
      WANDB_PROJECT: '',
      WANDB_ENTITY: '',
      WANDB_MODE: '',
      WANDB_BASE_URL: baseUrl,
      WANDB_API_KEY: KEY,
      ...env,
    },
  });
  const runPath = join(cwd, 'experiments', 'e', 'r');
  return { cwd, runPath, ...result };
}

const manifestOf = (runPath: string) =>
  JSON.parse(readFileSync(join(runPath, 'run.json'), 'utf8')) as Manifest;
const warnings = (result: CliResult) =>
  `${result.stdout}\n${result.stderr}`.split('\n').filter((line) => /warning/i.test(line));

function expectCompleteRun(runPath: string): void {
  const files = readdirSync(runPath);
  for (const file of ['run.json', 'metrics.json', 'metrics.png', 'curves.png', 'train.log', 'model'])
    expect(files).toContain(file);
}

function* walk(dir: string): Generator<string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(path);
    else yield path;
  }
}

describe('--wandb against a W&B stand-in', () => {
  it('logs the config, every epoch, the test summary and the charts; run.json has the URL; the key is nowhere', async () => {
    const wb = await serve();
    const result = await trainCli(wb.url, 2);
    expect(result.code, result.stderr).toBe(0);
    expect(warnings(result)).toEqual([]);

    // The SDK's requests: who am I (the default entity), create the run, stream its history.
    const graphql = wb.graphql();
    expect(graphql.map((q) => q.operationName ?? q.query.match(/(query|mutation) (\w+)/)?.[2])).toEqual([
      'Viewer',
      'UpsertBucket',
      'RunUploadUrls',
    ]);
    const upsert = graphql[1]!.variables;
    expect(upsert).toMatchObject({ project: 'e', entity: 'test-entity', displayName: 'r' });
    const config = JSON.parse(upsert.config as string) as Record<string, unknown>;
    expect(config).toMatchObject({
      experimentName: 'e',
      runName: 'r',
      model: 'net',
      epochs: 2,
      batchSize: 64,
    });
    expect(config.wandb).toBe(true);
    for (const request of wb.requests.filter((r) => r.method === 'POST'))
      expect(request.headers.authorization).toBe(`Basic ${BASIC}`);

    // Per-epoch metrics with the epoch as step, the same values as metrics.json.
    const metrics = JSON.parse(readFileSync(join(result.runPath, 'metrics.json'), 'utf8')) as Metrics;
    const history = wb.history();
    expect(history.map((row) => row._step)).toEqual([1, 2]);
    expect(history.map((row) => row['validation/accuracy'])).toEqual(
      metrics.history.map((h) => h.validationAccuracy),
    );
    expect(history[1]).toMatchObject({
      epoch: 2,
      'train/loss': metrics.history[1]!.trainLoss,
      'train/accuracy': metrics.history[1]!.trainAccuracy,
      'validation/loss': metrics.history[1]!.validationLoss,
      learning_rate: metrics.history[1]!.learningRate,
      images_per_second: metrics.history[1]!.imagesPerSecond,
    });

    // The summary: test accuracy, per class, and the charts as images.
    const summary = wb.summary();
    expect(summary['test/accuracy']).toBe(metrics.test.accuracy);
    expect(summary['test/loss']).toBe(metrics.test.loss);
    metrics.test.classNames.forEach((name, i) =>
      expect(summary[`test/class_accuracy/${name}`]).toBe(metrics.test.perClassAccuracy[i]),
    );
    for (const chart of ['metrics', 'curves']) {
      const image = summary[`charts/${chart}`] as { _type: string; path: string; width: number };
      expect(image._type).toBe('image-file');
      expect(image.width).toBeGreaterThan(0);
      expect(wb.uploads.get(image.path)).toEqual(readFileSync(join(result.runPath, `${chart}.png`)));
    }
    // The run was ended, with exit code 0.
    const last = wb.requests.filter((r) => r.path.endsWith('/file_stream')).pop()!;
    expect(JSON.parse(last.body.toString())).toEqual({ complete: true, exitcode: 0 });

    const runId = upsert.name as string;
    const url = `${wb.url}/test-entity/e/runs/${runId}`;
    expect(manifestOf(result.runPath).tracking).toEqual({
      wandb: { url, project: 'e', entity: 'test-entity', mode: 'online', problem: null },
    });
    expect(result.stdout).toContain(`W&B: logging to ${url}`);
    expect(readFileSync(join(result.runPath, 'train.log'), 'utf8')).toContain(url);

    // The key (or its Basic form): not in any file written, not in the output. Storage uploads never get it.
    for (const file of walk(result.cwd)) {
      const bytes = readFileSync(file);
      expect(bytes.includes(KEY), file).toBe(false);
      expect(bytes.includes(BASIC), file).toBe(false);
    }
    for (const output of [result.stdout, result.stderr]) {
      expect(output).not.toContain(KEY);
      expect(output).not.toContain(BASIC);
    }
    for (const request of wb.requests.filter((r) => r.method === 'PUT'))
      expect(request.headers.authorization).toBeUndefined();
  });

  it('a run with no test split sends no test metrics (not NaN)', async () => {
    const wb = await serve();
    // 4 images a class: the image folder's test split rounds to none.
    const images = join(tempFolder('ic-wandb-images-'), 'four-each');
    await makeFolder(images, 4);
    const noTest = await trainCli(wb.url, 1, {}, ['--dataset', 'image-folder', '--dataset-folder', images]);
    expect(noTest.code, noTest.stderr).toBe(0);
    expect(noTest.stdout).toMatch(/no test split/);
    expect(Object.keys(wb.summary())).toContain('charts/metrics');
    expect(Object.keys(wb.summary()).filter((k) => k.startsWith('test/'))).toEqual([]);
  });

  it('W&B answering HTTP 500: the run completes untracked, with one warning', async () => {
    const wb = await serve({ fail: 'all' });
    const result = await trainCli(wb.url, 1);
    expect(result.code, result.stderr).toBe(0);
    expectCompleteRun(result.runPath);
    expect(warnings(result)).toEqual([
      expect.stringMatching(
        /^warning: W&B: could not start a run at 127\.0\.0\.1:\d+ \(POST \/graphql: HTTP 500\)/,
      ),
    ]);
    const tracking = manifestOf(result.runPath).tracking!.wandb;
    expect(tracking.url).toBeNull();
    expect(tracking.problem).toMatch(/HTTP 500/);
    // The SDK's "retries" never send again: one request, and no waiting for them.
    expect(wb.requests).toHaveLength(1);
  });

  it('W&B not listening (connection refused): the run completes untracked, with one warning', async () => {
    const port = await closedPort();
    const result = await trainCli(`http://127.0.0.1:${port}`, 1);
    expect(result.code, result.stderr).toBe(0);
    expectCompleteRun(result.runPath);
    expect(warnings(result)).toEqual([
      expect.stringMatching(/^warning: W&B: could not start .*ECONNREFUSED/),
    ]);
    expect(manifestOf(result.runPath).tracking!.wandb.url).toBeNull();
  });

  it('W&B failing mid-run: the run completes, one warning says what is missing, run.json keeps the URL', async () => {
    const wb = await serve({ fail: 'file_stream' });
    const result = await trainCli(wb.url, 2);
    expect(result.code, result.stderr).toBe(0);
    expectCompleteRun(result.runPath);
    const lines = warnings(result);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^warning: W&B: not everything reached http:\/\/127\.0\.0\.1:\d+\/test-entity\/e\/runs\//,
    );
    expect(lines[0]).toMatch(/metric uploads failed.*POST file_stream: HTTP 500.*the local run is complete/);
    const tracking = manifestOf(result.runPath).tracking!.wandb;
    expect(tracking.url).toMatch(/\/test-entity\/e\/runs\/\w+$/);
    expect(tracking.problem).toBe(lines[0]!.replace('warning: W&B: ', ''));
  });

  it('WANDB_MODE=offline: nothing reaches the server, the run completes', async () => {
    const wb = await serve();
    const result = await trainCli(wb.url, 1, { WANDB_MODE: 'offline' }, ['--wandb-project', 'p']);
    expect(result.code, result.stderr).toBe(0);
    expectCompleteRun(result.runPath);
    expect(wb.requests).toEqual([]);
    expect(warnings(result)).toEqual([]);
    expect(result.stdout).toContain('W&B: offline (WANDB_MODE=offline): nothing is sent');
    expect(manifestOf(result.runPath).tracking).toEqual({
      wandb: { url: null, project: 'p', entity: null, mode: 'offline', problem: null },
    });
  });
});

describe('W&B settings', () => {
  const config = (input: Record<string, unknown> = {}) =>
    parseRunConfig({ experimentName: 'exp', runName: 'run', wandb: true, ...input });

  it('flags over environment over defaults', () => {
    expect(resolveWandbSettings(config(), { WANDB_API_KEY: KEY, HOME: tempFolder() })).toEqual({
      mode: 'online',
      modeVariable: '',
      baseUrl: 'https://api.wandb.ai',
      project: 'exp',
      entity: null,
      apiKey: KEY,
    });
    const env = {
      WANDB_PROJECT: 'env-project',
      WANDB_ENTITY: 'env-entity',
      WANDB_BASE_URL: 'http://wandb.local:8080/',
      WANDB_MODE: 'Offline',
      HOME: tempFolder(),
    };
    expect(resolveWandbSettings(config(), env)).toMatchObject({
      mode: 'offline',
      baseUrl: 'http://wandb.local:8080',
      project: 'env-project',
      entity: 'env-entity',
      apiKey: null,
    });
    expect(
      resolveWandbSettings(config({ wandbProject: 'flag-project', wandbEntity: 'flag-entity' }), env),
    ).toMatchObject({ project: 'flag-project', entity: 'flag-entity' });
    expect(resolveWandbSettings(config(), { WANDB_MODE: 'disabled' }).mode).toBe('disabled');
    expect(resolveWandbSettings(config(), { WANDB_MODE: 'dryrun' }).mode).toBe('offline');
  });

  it('bad project or entity names are bad input', () => {
    expect(() => config({ wandbProject: 'a/b' })).toThrow(/--wandb-project must not contain/);
    expect(() => config({ wandbEntity: '' })).toThrow(/--wandb-entity must not be empty/);
  });

  it('reads the key that `wandb login` saved in ~/.netrc (or $NETRC), for the base URL host', () => {
    const home = tempFolder();
    writeFileSync(
      join(home, '.netrc'),
      `# wandb\nmachine api.wandb.ai\n  login user\n  password ${KEY}\nmachine 127.0.0.1:9999 login user password other-key\n`,
    );
    expect(netrcKey('https://api.wandb.ai', { HOME: home })).toBe(KEY);
    expect(netrcKey('http://127.0.0.1:9999', { HOME: home })).toBe('other-key');
    expect(netrcKey('http://elsewhere.example', { HOME: home })).toBeNull();
    expect(netrcKey('https://api.wandb.ai', { HOME: tempFolder() })).toBeNull();
    const netrc = join(tempFolder(), 'netrc');
    writeFileSync(netrc, `machine wandb.local password k2`);
    expect(netrcKey('http://wandb.local:8080', { NETRC: netrc })).toBe('k2');
    // The environment first.
    expect(resolveWandbSettings(config(), { HOME: home, WANDB_API_KEY: 'from-env' }).apiKey).toBe('from-env');
    expect(resolveWandbSettings(config(), { HOME: home }).apiKey).toBe(KEY);
  });

  it('W&B gets the config without credentials in the download URL', () => {
    const tracked = trackedConfig(config({ downloadUrl: 'https://user:secret@example.com/c10.tgz?token=t' }));
    expect(tracked.downloadUrl).toBe('https://example.com/c10.tgz');
    expect(tracked.model).toBe('vgg');
  });
});

describe('the W&B tracker', () => {
  // The built worker: the SDK runs in a worker thread, and worker threads load JavaScript.
  const workerUrl = pathToFileURL(resolve(import.meta.dirname, '../dist/tracking/wandb-worker.js'));
  const config = parseRunConfig({ experimentName: 'e', runName: 'r', wandb: true, epochs: 2 });
  const summary = { accuracy: 0.5, loss: 1, classNames: ['a', 'b'], perClassAccuracy: [0.4, 0.6] };
  const epoch = (n: number) => ({
    epoch: n,
    trainLoss: 1,
    trainAccuracy: 0.5,
    validationLoss: 1,
    validationAccuracy: 0.5,
    learningRate: 0.1,
    seconds: 1,
    imagesPerSecond: 100,
  });
  const tracker = (baseUrl: string, options: WandbTrackerOptions = {}) => {
    const lines: string[] = [];
    const env = { WANDB_BASE_URL: baseUrl, WANDB_API_KEY: KEY };
    const t = createWandbTracker(config, (line) => lines.push(line), { env, workerUrl, ...options });
    return { t, lines };
  };

  it('is none without --wandb', () => {
    expect(createTracker(parseRunConfig({ experimentName: 'e', runName: 'r' }), () => {})).toBe(noTracker);
  });

  it('without an API key: one warning, nothing sent, training goes on', async () => {
    const wb = await serve();
    const lines: string[] = [];
    const t = createWandbTracker(config, (line) => lines.push(line), {
      env: { WANDB_BASE_URL: wb.url, HOME: tempFolder() },
      workerUrl,
    });
    await t.start(config);
    t.logEpoch(epoch(1));
    const record = await t.finish(summary, []);
    expect(lines).toEqual([expect.stringMatching(/^warning: W&B: --wandb: no API key \(set WANDB_API_KEY/)]);
    expect(record?.wandb).toMatchObject({
      url: null,
      mode: 'online',
      problem: expect.stringMatching(/no API key/),
    });
    expect(wb.requests).toEqual([]);
  });

  it('a wrong API key: one warning that says so', async () => {
    const wb = await serve({ apiKey: 'another-key' });
    const { t, lines } = tracker(wb.url);
    await t.start(config);
    const record = await t.finish(summary, []);
    expect(lines).toEqual([
      expect.stringMatching(
        /^warning: W&B: could not start .*POST \/graphql: HTTP 401, is the API key right\?/,
      ),
    ]);
    expect(record?.wandb.url).toBeNull();
  });

  it('an interrupted run: its W&B run is ended as failed (exit code 130)', async () => {
    const wb = await serve();
    const { t, lines } = tracker(wb.url);
    await t.start(config);
    t.logEpoch(epoch(1));
    await t.abort('interrupted');
    expect(wb.history().map((row) => row._step)).toEqual([1]);
    const last = wb.requests.filter((r) => r.path.endsWith('/file_stream')).pop()!;
    expect(JSON.parse(last.body.toString())).toEqual({ complete: true, exitcode: 130 });
    expect(lines[1]).toMatch(/ends here \(marked failed\); --resume logs the whole run to a new W&B run$/);
  });

  it('a server that does not answer at start: given up after the init timeout', async () => {
    const wb = await serve({ hang: 'all' });
    const { t, lines } = tracker(wb.url, { initTimeoutMs: 1000 });
    const started = Date.now();
    await t.start(config);
    expect(Date.now() - started).toBeLessThan(5000);
    t.logEpoch(epoch(1));
    const record = await t.finish(summary, []);
    expect(lines).toEqual([
      expect.stringMatching(/^warning: W&B: could not start a run at .* \(no answer within 1 s\)/),
    ]);
    expect(record?.wandb.url).toBeNull();
  });

  it('a server that stops answering mid-run: finish is given up after its timeout', async () => {
    const wb = await serve({ hang: 'file_stream' });
    const { t, lines } = tracker(wb.url, { finishTimeoutMs: 1500 });
    await t.start(config);
    expect(lines[0]).toMatch(/^W&B: logging to /);
    t.logEpoch(epoch(1));
    t.logEpoch(epoch(2));
    const started = Date.now();
    const record = await t.finish(summary, []);
    expect(Date.now() - started).toBeLessThan(6000);
    expect(lines.slice(1)).toEqual([
      expect.stringMatching(
        /^warning: W&B: not everything reached .*no answer within 1\.5 s \(waiting for POST file_stream\)/,
      ),
    ]);
    expect(record?.wandb.url).toMatch(/\/runs\/\w+$/);
  });
});

describe('train() and its tracker', () => {
  /** Records every call; stops training once `stopAfter` epochs are logged. */
  function fakeTracker(calls: string[], controller?: AbortController, stopAfter = 0): TrackerFactory {
    return (config) => ({
      start: async (c) => void calls.push(`start ${c.runName} wandb=${String(config.wandb)}`),
      logEpoch: (m) => {
        calls.push(`epoch ${m.epoch}`);
        if (m.epoch === stopAfter) controller?.abort();
      },
      finish: async (summary, files) => {
        calls.push(
          `finish ${summary.accuracy} ${files.map((f) => `${basename(f)}:${existsSync(f)}`).join(' ')}`,
        );
        return {
          wandb: {
            url: 'https://wandb.example/e/p/runs/x',
            project: 'p',
            entity: 'e',
            mode: 'online',
            problem: null,
          },
        };
      },
      abort: async (reason) => void calls.push(`abort ${reason}`),
    });
  }

  it('starts, logs each epoch, finishes before run.json (which records it); a resume replays the epochs done', async () => {
    const experimentsFolder = join(tempFolder(), 'experiments');
    const input = {
      experimentName: 'e',
      runName: 'r',
      experimentsFolder,
      dataset: 'synthetic' as const,
      model: 'net' as const,
      epochs: 2,
      batchSize: 64,
      device: 'cpu' as const,
      wandb: true,
    };
    const first: string[] = [];
    const controller = new AbortController();
    await expect(
      train(input, { signal: controller.signal, tracker: fakeTracker(first, controller, 1) }),
    ).rejects.toThrow(TrainingInterrupted);
    expect(first).toEqual(['start r wandb=true', 'epoch 1', 'abort interrupted']);

    const second: string[] = [];
    const result = await train(
      { experimentName: 'e', runName: 'r', experimentsFolder },
      { resume: true, tracker: fakeTracker(second) },
    );
    expect(second).toEqual([
      'start r wandb=true',
      'epoch 1',
      'epoch 2',
      `finish ${result.metrics.test.accuracy} metrics.png:true curves.png:true confusion.png:true`,
    ]);
    expect(result.manifest.tracking?.wandb.url).toBe('https://wandb.example/e/p/runs/x');
    const written = JSON.parse(readFileSync(join(result.runPath, 'run.json'), 'utf8')) as Manifest;
    expect(written.tracking).toEqual(result.manifest.tracking);
  });
});

/** A port that nothing listens on. */
async function closedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const { port } = probe.address() as { port: number };
  await new Promise((r) => probe.close(r));
  return port;
}
