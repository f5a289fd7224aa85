// Hard cases of data, downloads, secrets, trusted files and serving, as a user meets them: through the
// CLI (exit code, the one line it prints, what is on disk afterwards) and the HTTP server. Every case
// that handles a credential checks that it was written nowhere: not on stdout or stderr, not in any
// file of the run folder or the data cache.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { join } from 'node:path';
import * as tar from 'tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { downloadCifar10 } from '../src/data/cifar10/fetch.js';
import { createServer, loadModel, type ClassifierModel } from '../src/index.js';
import { silentProgress } from '../src/reports/progress.js';
import { manifestChecksum } from '../src/runs/manifest.js';
import { CLI, runCli, tempFolder, type CliResult } from './helpers/cli.js';
import { makeFolder, quickImageFolderArgs } from './helpers/images.js';
import { ourLines, quickRun, type QuickRun } from './helpers/use.js';

const USER = 'alice';
const PASSWORD = 'hunter2-s3cret';
const TOKEN = 'tok-9f8e7d6c5b4a';
const SECRETS = [PASSWORD, TOKEN];
const WASM = ['--backend', 'wasm'];
const QUICK_CIFAR = [
  '--model',
  'net',
  '--epochs',
  '1',
  '--batch-size',
  '16',
  '--learning-rate',
  '0.05',
  ...WASM,
];

/** Every file under `folder` (recursively), as text: binary files too, so a secret anywhere shows. */
function allText(folder: string): string {
  if (!existsSync(folder)) return '';
  let out = '';
  for (const entry of readdirSync(folder, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) out += readFileSync(join(entry.parentPath, entry.name)).toString('latin1');
  }
  return out;
}

function expectNoSecret(...texts: string[]): void {
  for (const text of texts) for (const secret of SECRETS) expect(text).not.toContain(secret);
}

/** No stack trace or JavaScript error leaked to the user. */
function expectNoStack(text: string): void {
  expect(text).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
  expect(text).not.toMatch(/Cannot read properties|TypeError|ReferenceError/);
}

function sha256(bytes: Buffer | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}

// ---------------------------------------------------------------------------------------------
// A small CIFAR-10 archive (binary version: 10 images a batch) and a server for it

const CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];

async function fakeCifarArchive(folder: string): Promise<Buffer> {
  const dir = join(folder, 'cifar-10-batches-bin');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'batches.meta.txt'), CLASSES.join('\n') + '\n');
  const batch = (salt: number) => {
    const out = Buffer.alloc(10 * 3073);
    for (let r = 0; r < 10; r++) {
      out[r * 3073] = r;
      for (let i = 1; i < 3073; i++) out[r * 3073 + i] = (r * 25 + ((i * 7 + salt) % 30)) & 255;
    }
    return out;
  };
  for (let b = 1; b <= 5; b++) await writeFile(join(dir, `data_batch_${b}.bin`), batch(b));
  await writeFile(join(dir, 'test_batch.bin'), batch(9));
  const file = join(folder, 'cifar.tar.gz');
  await tar.c({ gzip: true, file, cwd: folder, portable: true }, ['cifar-10-batches-bin']);
  return readFileSync(file);
}

interface Served {
  /** What the route does with a request (after the credential check). */
  mode: 'ok' | 'cut-once' | 'stall' | 'endless' | 'oversize';
}

describe('hard cases: downloads and secrets', () => {
  let archive: Buffer;
  let md5: string;
  let server: http.Server;
  let base: string;
  let authedBase: string;
  const requests: Array<{ url: string; range?: string; authorization?: string }> = [];
  const routes = new Map<string, Served>();
  const cutDone = new Set<string>();
  /** Resolves when a stalled response has sent its half. */
  let stalled: () => void = () => {};

  beforeAll(async () => {
    archive = await fakeCifarArchive(tempFolder('ic-cifar-src-'));
    md5 = createHash('md5').update(archive).digest('hex');
    for (const [path, mode] of [
      ['/cifar.tar.gz', 'ok'],
      ['/cut.tar.gz', 'cut-once'],
      ['/stall.tar.gz', 'stall'],
      ['/endless.tar.gz', 'endless'],
      ['/oversize.tar.gz', 'oversize'],
      ['/private/cifar.tar.gz', 'ok'],
    ] as const)
      routes.set(path, { mode });
    server = http.createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      requests.push({
        url: req.url ?? '',
        range: req.headers.range,
        authorization: req.headers.authorization,
      });
      const route = routes.get(url.pathname);
      if (!route) return void res.writeHead(404).end();
      // /private/ wants basic auth and the token, as a mirror with credentials would.
      if (url.pathname.startsWith('/private/')) {
        const basic = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`;
        if (req.headers.authorization !== basic || url.searchParams.get('token') !== TOKEN) {
          return void res.writeHead(401).end();
        }
      }
      if (route.mode === 'endless') {
        // No Content-Length, and more bytes than any archive: only the client's bound stops it.
        res.writeHead(200);
        const chunk = Buffer.alloc(64 * 1024, 1);
        const pump = () => {
          while (!res.destroyed && res.write(chunk));
          if (!res.destroyed) res.once('drain', pump);
        };
        pump();
        return;
      }
      if (route.mode === 'oversize') {
        res.writeHead(200, { 'content-length': 10 ** 9 });
        res.write(Buffer.alloc(1024));
        return;
      }
      const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
      const start = range ? Number(range[1]) : 0;
      const body = archive.subarray(start);
      const headers: http.OutgoingHttpHeaders = { 'content-length': body.length, 'accept-ranges': 'bytes' };
      if (start > 0) headers['content-range'] = `bytes ${start}-${archive.length - 1}/${archive.length}`;
      res.writeHead(start > 0 ? 206 : 200, headers);
      const half = Math.floor(body.length / 2);
      if (route.mode === 'cut-once' && !cutDone.has(url.pathname)) {
        cutDone.add(url.pathname);
        res.write(body.subarray(0, half), () => res.destroy());
      } else if (route.mode === 'stall' && start === 0) {
        // Half, then nothing: the transfer hangs until the client gives up (or is interrupted).
        res.write(body.subarray(0, half), () => stalled());
      } else {
        res.end(body);
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    base = `http://127.0.0.1:${port}`;
    authedBase = `http://${USER}:${PASSWORD}@127.0.0.1:${port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  /** A working folder for one CLI run: its own data cache, so CIFAR-10 is downloaded there. */
  function workspace(): { cwd: string; data: string; experiments: string } {
    const cwd = tempFolder('ic-hard-');
    return { cwd, data: join(cwd, 'data'), experiments: join(cwd, 'experiments') };
  }

  const trainCifar = (cwd: string, run: string, url: string | null, env: NodeJS.ProcessEnv = {}) =>
    runCli(
      ['--experiment-name', 'c', '--run-name', run, ...(url ? ['--download-url', url] : []), ...QUICK_CIFAR],
      { cwd, env: { IMAGE_CLASSIFIER_CIFAR10_MD5: md5, ...env } },
    );

  it('credentials in --download-url are used but written nowhere: terminal, train.log, run.json, GET /model', async () => {
    const { cwd, data, experiments } = workspace();
    requests.length = 0;
    const url = `${authedBase}/private/cifar.tar.gz?token=${TOKEN}&mirror=eu`;
    const trained = await trainCifar(cwd, 'secret', url);
    expect(trained.code, trained.stderr).toBe(0);
    // The server got the credentials (the download needed them).
    expect(requests.some((r) => r.authorization?.startsWith('Basic ') && r.url.includes(TOKEN))).toBe(true);
    const runFolder = join(experiments, 'c', 'secret');
    expectNoSecret(trained.stdout, trained.stderr, allText(runFolder), allText(data));
    const shown = `http://***@127.0.0.1:${new URL(base).port}/private/cifar.tar.gz?token=***&mirror=eu`;
    expect(trained.stdout).toContain(`Downloading CIFAR-10 from ${shown}`);
    expect(readFileSync(join(runFolder, 'train.log'), 'utf8')).toContain(shown);
    const manifest = JSON.parse(readFileSync(join(runFolder, 'run.json'), 'utf8')) as {
      config: { downloadUrl: string };
      command: string;
    };
    expect(manifest.config.downloadUrl).toBe(shown);
    expect(manifest.command).toContain(`--download-url '${shown}'`);
    // The cache holds the data and nothing half-done.
    expect(readdirSync(data)).toEqual(['cifar-10-batches-bin']);

    // A run.json from before redaction (the secret inside, checksum matching) is served redacted.
    const old = join(experiments, 'c', 'old');
    cpSync(runFolder, old, { recursive: true });
    const raw = JSON.parse(readFileSync(join(old, 'run.json'), 'utf8')) as Record<string, unknown> & {
      config: Record<string, unknown>;
    };
    raw.config.downloadUrl = url;
    raw.command = `image-classifier-trainer --download-url '${url}'`;
    raw.manifestSha256 = manifestChecksum(raw);
    writeFileSync(join(old, 'run.json'), JSON.stringify(raw));
    const model = await loadModel('c/old', { experimentsFolder: experiments, backend: 'wasm' });
    // The whole run.json is served to a client with the token only (without it: a summary).
    const api = createServer(model, { authToken: 'tok' });
    try {
      const { url: at } = await api.listen(0, '127.0.0.1');
      const res = await fetch(`${at}/model`, { headers: { Authorization: 'Bearer tok' } });
      expect(res.status).toBe(200);
      const body = await res.text();
      expectNoSecret(body);
      expect((JSON.parse(body) as { config: { downloadUrl: string } }).config.downloadUrl).toBe(shown);
    } finally {
      await api.close();
      model.dispose();
    }
  });

  it('a refused download (401) names the URL without its credentials, exits 1 and leaves nothing', async () => {
    const { cwd, data, experiments } = workspace();
    const url = `http://${USER}:wrong-${PASSWORD}@127.0.0.1:${new URL(base).port}/private/cifar.tar.gz?token=${TOKEN}`;
    const { code, stdout, stderr } = await trainCifar(cwd, 'refused', url);
    expect(code).toBe(1);
    const lines = ourLines(stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /could not be downloaded from http:\/\/\*\*\*@127\.0\.0\.1:\d+\/private\/cifar\.tar\.gz\?token=\*\*\* \(HTTP 401/,
    );
    expectNoSecret(stdout, stderr, allText(cwd));
    expect(existsSync(experiments)).toBe(false);
    expect(readdirSync(data)).toEqual([]);
  });

  it('a file:// (or any non-http) --download-url is refused up front with exit 2, nothing written', async () => {
    const { cwd, data, experiments } = workspace();
    const { code, stdout, stderr } = await trainCifar(cwd, 'file', `file:///etc/passwd?token=${TOKEN}`);
    expect(code).toBe(2);
    expect(ourLines(stderr)).toEqual([
      'image-classifier-trainer: --download-url must be an http:// or https:// URL',
    ]);
    expect(stdout).toBe('');
    expectNoSecret(stderr);
    expect(existsSync(experiments)).toBe(false);
    expect(existsSync(data)).toBe(false);

    // The same from the environment, refused before any download too.
    const env = await trainCifar(cwd, 'env', null, {
      IMAGE_CLASSIFIER_CIFAR10_URL: `ftp://${USER}:${PASSWORD}@127.0.0.1/cifar.tar.gz`,
    });
    expect(env.code).toBe(2);
    expect(ourLines(env.stderr)).toEqual([
      'image-classifier-trainer: $IMAGE_CLASSIFIER_CIFAR10_URL must be an http:// or https:// URL (got ftp:)',
    ]);
    expectNoSecret(env.stdout, env.stderr);
    expect(existsSync(experiments)).toBe(false);
  });

  it('a transfer cut off halfway is retried and continued with a Range request, not restarted', async () => {
    const { cwd, data } = workspace();
    requests.length = 0;
    const { code, stdout, stderr } = await trainCifar(cwd, 'cut', `${base}/cut.tar.gz`);
    expect(code, stderr).toBe(0);
    const cut = requests.filter((r) => r.url === '/cut.tar.gz');
    expect(cut).toHaveLength(2);
    expect(cut[0]!.range).toBeUndefined();
    const kept = Number(/^bytes=(\d+)-$/.exec(cut[1]!.range ?? '')?.[1]);
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThan(archive.length);
    expect(stdout).toMatch(/failed \(download cut off at .*\); retrying in 1\.0 s/);
    expect(readdirSync(data)).toEqual(['cifar-10-batches-bin']);
  });

  it('Ctrl-C during the download stops at once (exit 130), keeps a .partial, and the next run resumes it', async () => {
    const { cwd, data, experiments } = workspace();
    const half = new Promise<void>((resolve) => (stalled = resolve));
    const child = spawn(
      process.execPath,
      [
        CLI,
        '--experiment-name',
        'c',
        '--run-name',
        'int',
        '--download-url',
        `${base}/stall.tar.gz`,
        ...QUICK_CIFAR,
      ],
      { cwd, env: { ...process.env, IMAGE_CLASSIFIER_CIFAR10_MD5: md5 }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    await half;
    const partial = join(data, `cifar-10-${md5.slice(0, 12)}.tar.gz.partial`);
    // Wait until the half that was sent is on disk.
    for (let i = 0; i < 200 && (!existsSync(partial) || statSync(partial).size < archive.length / 2); i++) {
      await new Promise((r) => setTimeout(r, 25));
    }
    const interruptedAt = Date.now();
    child.kill('SIGINT');
    expect(await exited, stderr).toBe(130);
    expect(Date.now() - interruptedAt).toBeLessThan(5000);
    expect(readdirSync(data)).toEqual([`cifar-10-${md5.slice(0, 12)}.tar.gz.partial`]);
    const kept = statSync(partial).size;
    expect(kept).toBe(Math.floor(archive.length / 2));
    expect(existsSync(join(experiments, 'c', 'int'))).toBe(false);

    // The next run asks only for the rest.
    requests.length = 0;
    const again = await trainCifar(cwd, 'int', `${base}/stall.tar.gz`);
    expect(again.code, again.stderr).toBe(0);
    expect(requests.map((r) => r.range)).toEqual([`bytes=${kept}-`]);
    expect(again.stdout).toContain(`Continuing the download from`);
    expect(readdirSync(data)).toEqual(['cifar-10-batches-bin']);
  });

  it('offline: one line that names --download-url, --dataset-folder and --dataset synthetic (exit 1)', async () => {
    const { cwd, data, experiments } = workspace();
    const probe = http.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as AddressInfo;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const { code, stderr } = await trainCifar(cwd, 'offline', `http://127.0.0.1:${port}/cifar.tar.gz`);
    expect(code).toBe(1);
    const lines = ourLines(stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/could not be downloaded from .* \(ECONNREFUSED/);
    for (const hint of ['--download-url', '--dataset-folder', '--dataset synthetic', 'HTTPS_PROXY'])
      expect(lines[0]).toContain(hint);
    expect(existsSync(experiments)).toBe(false);
    expect(readdirSync(data)).toEqual([]);
  });

  it('downloads through $HTTP_PROXY, and not when $NO_PROXY names the host', async () => {
    const tunnels: string[] = [];
    const proxy = http.createServer((_req, res) => res.writeHead(405).end());
    proxy.on('connect', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
      tunnels.push(req.url ?? '');
      const [host, port] = (req.url ?? '').split(':');
      const upstream = net.connect(Number(port), host, () => {
        socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        upstream.write(head);
        upstream.pipe(socket);
        socket.pipe(upstream);
      });
      upstream.on('error', () => socket.destroy());
      socket.on('error', () => upstream.destroy());
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    try {
      const viaProxy = workspace();
      const proxied = await trainCifar(viaProxy.cwd, 'proxy', `${base}/cifar.tar.gz`, {
        HTTP_PROXY: proxyUrl,
        NO_PROXY: '',
      });
      expect(proxied.code, proxied.stderr).toBe(0);
      expect(tunnels).toEqual([`127.0.0.1:${new URL(base).port}`]);

      const direct = workspace();
      const bypassed = await trainCifar(direct.cwd, 'direct', `${base}/cifar.tar.gz`, {
        HTTP_PROXY: proxyUrl,
        NO_PROXY: '127.0.0.1',
      });
      expect(bypassed.code, bypassed.stderr).toBe(0);
      expect(tunnels).toHaveLength(1);
    } finally {
      proxy.closeAllConnections();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    }
  });

  it('a download with no Content-Length stops at the known size; an announced oversize is refused', async () => {
    const cache = tempFolder('ic-endless-');
    const quiet = { progress: silentProgress, log: () => {}, retryDelayMs: 5 };
    const started = Date.now();
    await expect(
      downloadCifar10({ url: `${base}/endless.tar.gz`, cacheFolder: cache, md5, bytes: 300_000, ...quiet }),
    ).rejects.toThrow(/passed 293 KiB \(300000 bytes\), more than the file can be; stopped and removed/);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(readdirSync(cache)).toEqual([]);
    await expect(
      downloadCifar10({ url: `${base}/oversize.tar.gz`, cacheFolder: cache, md5, bytes: 300_000, ...quiet }),
    ).rejects.toThrow(/the server announces 953\.7 MiB \(1000000000 bytes\), but the file is 300000 bytes/);
    // Without a known size the bound is 512 MiB.
    await expect(
      downloadCifar10({ url: `${base}/oversize.tar.gz`, cacheFolder: cache, md5, ...quiet }),
    ).rejects.toThrow(/announces 953\.7 MiB, more than the 512 MiB a CIFAR-10 archive can be/);
    expect(readdirSync(cache)).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// Trusting the files of a run

describe('hard cases: run folders are not trusted', () => {
  let fx: QuickRun;
  let runPath: string;
  beforeAll(async () => {
    fx = await quickRun(12);
    runPath = join(fx.experiments, 'colours', 'r1');
  });

  /** A copy of the fixture run to damage: `colours/<name>`. */
  function copyRun(name: string): string {
    const to = join(fx.experiments, 'colours', name);
    cpSync(runPath, to, { recursive: true });
    return to;
  }

  const image = () => join(fx.images, 'red', '1.jpg');

  it("predict and serve refuse weights whose sha256 is not run.json's, naming the file; verify lists it", async () => {
    const copy = copyRun('tampered');
    const weights = join(copy, 'model', 'weights.bin');
    const bytes = readFileSync(weights);
    bytes[100] = bytes[100]! ^ 0xff;
    writeFileSync(weights, bytes);
    const predicted = await runCli(['predict', 'colours/tampered', image(), ...WASM], { cwd: fx.cwd });
    expect(predicted.code).toBe(2);
    expect(predicted.stdout).toBe('');
    expect(ourLines(predicted.stderr)).toEqual([
      `image-classifier-trainer: ${weights} has changed since the run was written (its sha256 is not the one in ${join(copy, 'run.json')}); refusing to load it`,
    ]);
    const served = await runCli(['serve', 'colours/tampered', '--port', '0', ...WASM], { cwd: fx.cwd });
    expect(served.code).toBe(2);
    expect(ourLines(served.stderr)[0]).toContain(`${weights} has changed since the run was written`);
    expect(served.stdout).not.toContain('listening');
    const verified = await runCli(['verify', 'colours/tampered'], { cwd: fx.cwd });
    expect(verified.code).toBe(3);
    expect(verified.stdout).toMatch(/^changed +model\/weights\.bin$/m);
    expect(verified.stdout).toMatch(/^ok +run\.json$/m);
  });

  it('model.json weight paths that leave the model folder are refused, even with matching hashes', async () => {
    const copy = copyRun('escape');
    const outside = join(fx.cwd, 'x.bin');
    cpSync(join(copy, 'model', 'weights.bin'), outside);
    const modelJson = join(copy, 'model', 'model.json');
    const json = JSON.parse(readFileSync(modelJson, 'utf8')) as {
      weightsManifest: Array<{ paths: string[] }>;
    };
    json.weightsManifest[0]!.paths = ['../../../../x.bin'];
    writeFileSync(modelJson, JSON.stringify(json));
    // A forged run.json that vouches for the edited model.json: the path is refused all the same.
    const manifestFile = join(copy, 'run.json');
    const manifest = JSON.parse(readFileSync(manifestFile, 'utf8')) as Record<string, unknown> & {
      files: Record<string, string>;
    };
    manifest.files['model/model.json'] = sha256(readFileSync(modelJson));
    manifest.manifestSha256 = manifestChecksum(manifest);
    writeFileSync(manifestFile, JSON.stringify(manifest, null, 2));
    const { code, stdout, stderr } = await runCli(['predict', 'colours/escape', image(), ...WASM], {
      cwd: fx.cwd,
    });
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(ourLines(stderr)).toEqual([
      `image-classifier-trainer: ${modelJson} names the weights file "../../../../x.bin", outside its folder ${join(copy, 'model')}; refusing to load it`,
    ]);
    // As --pretrained-model (where no run.json vouches for anything) too.
    const tuned = await runCli(
      [
        '--experiment-name',
        'colours',
        '--run-name',
        'ft',
        '--pretrained-model',
        'colours/escape',
        ...quickImageFolderArgs(fx.images, ...WASM),
      ],
      { cwd: fx.cwd },
    );
    expect(tuned.code).toBe(2);
    expect(ourLines(tuned.stderr)[0]).toMatch(
      /--pretrained-model colours\/escape: cannot load .* outside its folder/,
    );
    expect(existsSync(join(fx.experiments, 'colours', 'ft'))).toBe(false);
  });

  it('verify notices an edited run.json (exit 3) and passes the untouched run (exit 0)', async () => {
    const clean = await runCli(['verify', 'colours/r1'], { cwd: fx.cwd });
    expect(clean.code, clean.stdout).toBe(0);
    expect(clean.stdout).toMatch(/^ok +run\.json$/m);
    const copy = copyRun('edited');
    const file = join(copy, 'run.json');
    writeFileSync(
      file,
      readFileSync(file, 'utf8').replace(/"testAccuracy": [\d.e-]+/, '"testAccuracy": 0.999'),
    );
    const edited = await runCli(['verify', 'colours/edited'], { cwd: fx.cwd });
    expect(edited.code).toBe(3);
    expect(edited.stdout).toMatch(/^changed +run\.json$/m);
    expect(edited.stdout).toMatch(/1 of \d+ files changed or missing/);
    // Reformatting alone (same content) is not an edit.
    const reformatted = copyRun('reformatted');
    const text = readFileSync(join(reformatted, 'run.json'), 'utf8');
    writeFileSync(join(reformatted, 'run.json'), JSON.stringify(JSON.parse(text)));
    expect((await runCli(['verify', 'colours/reformatted'], { cwd: fx.cwd })).code).toBe(0);
  });

  it('a null, {} or non-JSON run.json is refused in one line (exit 2), with no stack trace', async () => {
    const copy = copyRun('broken');
    const file = join(copy, 'run.json');
    const cases: Array<[string, string, RegExp]> = [
      ['null', 'predict', /run\.json holds null, not a run manifest$/],
      ['{}', 'serve', /run\.json is not a run manifest: schemaVersion: missing$/],
      ['[1,2]', 'verify', /run\.json holds an array, not a run manifest$/],
      ['{"schemaVersion": 1', 'evaluate', /run\.json: not valid JSON/],
    ];
    for (const [content, command, message] of cases) {
      writeFileSync(file, content);
      const args = command === 'predict' ? [command, 'colours/broken', image()] : [command, 'colours/broken'];
      const result = await runCli([...args, ...(command === 'verify' ? [] : WASM)], { cwd: fx.cwd });
      expect(result.code, `${command} on ${content}`).toBe(2);
      const lines = ourLines(result.stderr);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(message);
      expectNoStack(result.stderr);
    }
    // `runs` reads every run of the experiment: the broken one is named, not a crash.
    const runs = await runCli(['runs', 'colours', '--no-chart'], { cwd: fx.cwd });
    expect(runs.code).toBe(2);
    expect(ourLines(runs.stderr)[0]).toContain(file);
    expectNoStack(runs.stderr);
  });

  it('--config /dev/zero, a FIFO or a huge file is refused at once (exit 2), nothing written', async () => {
    const started = Date.now();
    const zero = await runCli(['--config', '/dev/zero'], { cwd: fx.cwd });
    expect(zero.code).toBe(2);
    expect(ourLines(zero.stderr)).toEqual([
      'image-classifier-trainer: --config /dev/zero: cannot read it (not a regular file)',
    ]);
    expect(Date.now() - started).toBeLessThan(20_000);
    const huge = join(fx.cwd, 'huge.yaml');
    writeFileSync(huge, `experiment-name: big\nrun-name: r\n# ${'x'.repeat(2 * 2 ** 20)}\n`);
    const big = await runCli(['--config', huge], { cwd: fx.cwd });
    expect(big.code).toBe(2);
    expect(ourLines(big.stderr)).toEqual([
      `image-classifier-trainer: --config ${huge}: cannot read it (2 MiB, more than the 1 MiB allowed)`,
    ]);
    expect(existsSync(join(fx.experiments, 'big'))).toBe(false);
  });

  it('predict says how label smoothing caps the probabilities it shows', async () => {
    const { code, stdout, stderr } = await runCli(['predict', fx.run, image(), ...WASM], { cwd: fx.cwd });
    expect(code, stderr).toBe(0);
    expect(stdout).toMatch(/red\/1\.jpg/);
    // 3 classes, smoothing 0.2: the target of the right class is 1 - 0.2 + 0.2 / 3.
    expect(stderr).toContain(
      'note: this model was trained with label smoothing 0.2, so even a sure prediction gets about 87%, not 100%',
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Messages: permissions, folders, one class

const root = process.getuid?.() === 0;

/** Runs the CLI as an unprivileged user (nobody) when we are root, so permissions apply. */
function runCliUnprivileged(args: string[], cwd: string): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(root ? { uid: 65534, gid: 65534 } : {}),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('hard cases: messages', () => {
  let cwd: string;
  let images: string;
  beforeAll(async () => {
    cwd = tempFolder('ic-msg-');
    // The unprivileged user works in here.
    chmodSync(cwd, 0o777);
    images = join(cwd, 'images');
    await makeFolder(images, 6);
    chmodSync(images, 0o755);
  });

  it('an image that may not be read is named with "permission denied", not as an unsupported format', async () => {
    const folder = join(cwd, 'locked');
    cpSync(images, folder, { recursive: true });
    const locked = join(folder, 'red', '2.jpg');
    chmodSync(locked, 0o000);
    const { code, stdout, stderr } = await runCliUnprivileged(
      ['--experiment-name', 'perm', '--run-name', 'r', ...quickImageFolderArgs(folder, ...WASM)],
      cwd,
    );
    expect(code).toBe(1);
    expect(ourLines(stderr)).toEqual([
      'image-classifier-trainer: 1 image could not be read: red/2.jpg (permission denied)',
    ]);
    expect(stdout + stderr).not.toMatch(/unsupported image format/);
    expect(existsSync(join(cwd, 'experiments', 'perm'))).toBe(false);
  });

  it('a read-only experiments folder is refused before any work (exit 2), saying it is not writable', async () => {
    const readOnly = join(cwd, 'ro-experiments');
    mkdirSync(readOnly);
    chmodSync(readOnly, 0o555);
    const { code, stdout, stderr } = await runCliUnprivileged(
      [
        '--experiment-name',
        'ro',
        '--run-name',
        'r',
        '--experiments-folder',
        readOnly,
        ...quickImageFolderArgs(images, ...WASM),
      ],
      cwd,
    );
    expect(code).toBe(2);
    expect(ourLines(stderr)).toEqual([
      `image-classifier-trainer: --experiments-folder ${readOnly} is not writable (${readOnly}: permission denied); choose another --experiments-folder`,
    ]);
    expect(stderr).not.toContain('ENOENT');
    // Refused before the images were decoded or a backend chosen.
    expect(stdout).toBe('');
    expect(readdirSync(readOnly)).toEqual([]);
  });

  it('a one-class image folder is refused up front (exit 2), not deep inside tfjs', async () => {
    const one = join(cwd, 'one-class');
    cpSync(join(images, 'red'), join(one, 'red'), { recursive: true });
    const { code, stdout, stderr } = await runCli(
      ['--experiment-name', 'one', '--run-name', 'r', ...quickImageFolderArgs(one, ...WASM)],
      { cwd },
    );
    expect(code).toBe(2);
    expect(ourLines(stderr)).toEqual([
      `image-classifier-trainer: --dataset-folder ${one}: ${one} has one class folder (red); a classifier needs at least 2 (<folder>/<class>/<image>)`,
    ]);
    expect(stdout + stderr).not.toContain('oneHot');
    expect(existsSync(join(cwd, 'experiments', 'one'))).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------
// The server: clients that go away, signals that come twice, one library type

describe('hard cases: serving', () => {
  let fx: QuickRun;
  let model: ClassifierModel;
  beforeAll(async () => {
    fx = await quickRun(12);
    model = await loadModel(fx.run, { experimentsFolder: fx.experiments, backend: 'wasm' });
  });
  afterAll(() => model?.dispose());

  it('an upload the client aborts is logged as aborted, without a stack trace, and the server goes on', async () => {
    const lines: string[] = [];
    const api = createServer(model, { log: (line) => lines.push(line), logFormat: 'text' });
    const { url, port } = await api.listen(0, '127.0.0.1');
    try {
      await new Promise<void>((resolve) => {
        const socket = net.connect(port, '127.0.0.1', () => {
          socket.write(
            'POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n',
          );
          socket.write(Buffer.alloc(1000));
          setTimeout(() => {
            socket.destroy();
            resolve();
          }, 100);
        });
      });
      for (let i = 0; i < 100 && lines.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/ POST \/predict aborted \d+\.\d ms$/);
      expectNoStack(lines.join('\n'));
      const metrics = await (await fetch(`${url}/metrics`)).text();
      expect(metrics).toMatch(/route="\/predict",status="aborted"} 1/);
      const ok = await fetch(`${url}/predict`, {
        method: 'POST',
        headers: { 'Content-Type': 'image/jpeg' },
        body: readFileSync(join(fx.images, 'red', '1.jpg')),
      });
      expect(ok.status).toBe(200);
    } finally {
      await api.close();
    }
  });

  it('one Ctrl-C delivered twice (terminal and npx) shuts down gracefully: exit 0', async () => {
    const child = spawn(
      process.execPath,
      [CLI, 'serve', fx.run, '--port', '0', '--log-format', 'text', ...WASM],
      {
        cwd: fx.cwd,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const listening = new Promise<void>((resolve) =>
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
        if (stdout.includes('listening on')) resolve();
      }),
    );
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    try {
      await listening;
      child.kill('SIGINT');
      child.kill('SIGINT');
      expect(await exited, stderr).toBe(0);
      expect(stdout).toContain('SIGINT: no new connections');
      expect(stdout.trim().split('\n').at(-1)).toBe('stopped');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
