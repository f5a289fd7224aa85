import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import * as tar from 'tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCifar10 } from '../src/data/cifar10/cifar10.js';
import { downloadCifar10 } from '../src/data/cifar10/fetch.js';
import { CIFAR10_URL_ENV, locateCifar10, readCifar10 } from '../src/data/cifar10/read.js';
import type { Dataset } from '../src/data/dataset.js';
import { NumpyArray, PickleCall, PickleDict, PickleGlobal, readPickle } from '../src/data/cifar10/pickle.js';
import { silentProgress } from '../src/reports/progress.js';

const CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];
const RECORD = 3073;
const quiet = { progress: silentProgress, log: () => {} };

// ---------------------------------------------------------------------------------------------
// Fixtures: a few CIFAR records with a known pattern

interface Batch {
  labels: number[];
  /** Rows of 3072 bytes, CHW (1024 R, 1024 G, 1024 B). */
  data: Uint8Array;
}

function makeBatch(count: number, salt: number): Batch {
  const labels = Array.from({ length: count }, (_, i) => (i * 3 + salt) % 10);
  const data = new Uint8Array(count * 3072);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + salt * 13 + (i >> 10)) & 255;
  return { labels, data };
}

const TRAIN: Batch[] = [1, 2, 3, 4, 5].map((b) => makeBatch(2, b));
const TEST: Batch = makeBatch(3, 9);

function binaryBatch(batch: Batch): Buffer {
  const out = Buffer.alloc(batch.labels.length * RECORD);
  batch.labels.forEach((label, r) => {
    out[r * RECORD] = label;
    out.set(batch.data.subarray(r * 3072, (r + 1) * 3072), r * RECORD + 1);
  });
  return out;
}

async function writeBinaryFixture(folder: string): Promise<string> {
  const dir = path.join(folder, 'cifar-10-batches-bin');
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'batches.meta.txt'), CLASSES.join('\n') + '\n\n');
  for (const [i, batch] of TRAIN.entries())
    await writeFile(path.join(dir, `data_batch_${i + 1}.bin`), binaryBatch(batch));
  await writeFile(path.join(dir, 'test_batch.bin'), binaryBatch(TEST));
  return dir;
}

/** The pixel at (y, x, channel) of image `r` in `batch`, read from the CHW source. */
function sourcePixel(batch: Batch, r: number, y: number, x: number, c: number): number {
  return batch.data[r * 3072 + c * 1024 + y * 32 + x]!;
}

function expectMatchesFixture(dataset: Dataset): void {
  expect(dataset.kind).toBe('cifar10');
  expect(dataset.classNames).toEqual(CLASSES);
  expect(dataset.train).toMatchObject({ count: 10, height: 32, width: 32, channels: 3 });
  expect(dataset.test).toMatchObject({ count: 3, height: 32, width: 32, channels: 3 });
  expect(dataset.train.images.length).toBe(10 * 3072);
  expect(Array.from(dataset.train.labels)).toEqual(TRAIN.flatMap((b) => b.labels));
  expect(Array.from(dataset.test.labels)).toEqual(TEST.labels);
  // NHWC: image 3 is batch 2's second record.
  for (const [y, x, c] of [
    [0, 0, 0],
    [0, 0, 2],
    [5, 17, 1],
    [31, 31, 2],
  ] as const) {
    expect(dataset.train.images[3 * 3072 + (y * 32 + x) * 3 + c]).toBe(sourcePixel(TRAIN[1]!, 1, y, x, c));
    expect(dataset.test.images[2 * 3072 + (y * 32 + x) * 3 + c]).toBe(sourcePixel(TEST, 2, y, x, c));
  }
}

// ---------------------------------------------------------------------------------------------
// A tiny pickler that emits what CPython's pickle (and Python 2's cPickle) write for these dicts

type Py =
  | null
  | boolean
  | number
  | string
  | Uint8Array
  | Py[]
  | { tuple: Py[] }
  | { dict: Array<[Py, Py]> }
  | { global: [string, string] }
  | { reduce: [Py, { tuple: Py[] }, Py?] }
  | { bytearray: Uint8Array };

type Flavour = 'py2' | 'py3-proto2' | 'proto3' | 'proto4' | 'proto5';

class Pickler {
  private out: number[] = [];
  private memo = new Map<unknown, number>();
  private nextMemo: number;
  private readonly proto: number;

  constructor(private readonly flavour: Flavour) {
    this.proto = flavour === 'py2' || flavour === 'py3-proto2' ? 2 : Number(flavour.slice(-1));
    this.nextMemo = flavour === 'py2' ? 1 : 0; // cPickle counted memo keys from 1
  }

  dump(value: Py): Buffer {
    this.save(value);
    this.out.push(0x2e);
    const body = Buffer.from(this.out);
    if (this.proto < 4) return Buffer.concat([Buffer.from([0x80, this.proto]), body]);
    const frame = Buffer.alloc(9);
    frame[0] = 0x95;
    frame.writeBigUInt64LE(BigInt(body.length), 1);
    return Buffer.concat([Buffer.from([0x80, this.proto]), frame, body]);
  }

  private bytes(...b: number[]) {
    this.out.push(...b);
  }
  private raw(b: Uint8Array) {
    for (const x of b) this.out.push(x);
  }
  private u32(n: number) {
    this.bytes(n & 255, (n >> 8) & 255, (n >> 16) & 255, (n >>> 24) & 255);
  }
  private put(key: unknown) {
    const i = this.nextMemo++;
    this.memo.set(key, i);
    if (this.proto >= 4) this.bytes(0x94);
    else if (i < 256) this.bytes(0x71, i);
    else {
      this.bytes(0x72);
      this.u32(i);
    }
  }
  private get(key: unknown): boolean {
    const i = this.memo.get(key);
    if (i === undefined) return false;
    if (i < 256) this.bytes(0x68, i);
    else {
      this.bytes(0x6a);
      this.u32(i);
    }
    return true;
  }

  private save(v: Py): void {
    if (v === null) return this.bytes(0x4e);
    if (v === true) return this.bytes(0x88);
    if (v === false) return this.bytes(0x89);
    if (typeof v === 'number') {
      if (v >= 0 && v < 256) return this.bytes(0x4b, v);
      if (v >= 0 && v < 65536) return this.bytes(0x4d, v & 255, v >> 8);
      this.bytes(0x4a);
      return this.u32(v >>> 0);
    }
    if (typeof v === 'string') {
      // Python interns these short identifiers, so equal strings share one memo entry.
      if (this.get(`str:${v}`)) return;
      const b = Buffer.from(v, this.flavour === 'py2' ? 'latin1' : 'utf8');
      if (this.flavour === 'py2') {
        if (b.length < 256) this.bytes(0x55, b.length);
        else {
          this.bytes(0x54);
          this.u32(b.length);
        }
      } else if (this.proto >= 4 && b.length < 256) this.bytes(0x8c, b.length);
      else {
        this.bytes(0x58);
        this.u32(b.length);
      }
      this.raw(b);
      return this.put(`str:${v}`);
    }
    if (v instanceof Uint8Array) {
      if (this.get(v)) return;
      if (this.flavour === 'py2') return this.save(Buffer.from(v).toString('latin1'));
      if (this.proto < 3) {
        // Python 3 at protocol 2: bytes travel as _codecs.encode(latin-1 text, 'latin1')
        return this.saveReduce(
          {
            reduce: [
              { global: ['_codecs', 'encode'] },
              { tuple: [Buffer.from(v).toString('latin1'), 'latin1'] },
            ],
          },
          v,
        );
      }
      if (v.length < 256) this.bytes(0x43, v.length);
      else {
        this.bytes(0x42);
        this.u32(v.length);
      }
      this.raw(v);
      return this.put(v);
    }
    if (Array.isArray(v)) {
      this.bytes(0x5d);
      this.put(v);
      if (v.length === 1) {
        this.save(v[0]!);
        this.bytes(0x61);
      } else if (v.length > 1) {
        this.bytes(0x28);
        for (const item of v) this.save(item);
        this.bytes(0x65);
      }
      return;
    }
    if ('tuple' in v) {
      const items = v.tuple;
      if (items.length === 0) return this.bytes(0x29);
      if (items.length <= 3) {
        for (const item of items) this.save(item);
        this.bytes([0x85, 0x86, 0x87][items.length - 1]!);
      } else {
        this.bytes(0x28);
        for (const item of items) this.save(item);
        this.bytes(0x74);
      }
      return this.put(v);
    }
    if ('dict' in v) {
      this.bytes(0x7d);
      this.put(v);
      this.bytes(0x28);
      for (const [k, val] of v.dict) {
        this.save(k);
        this.save(val);
      }
      return this.bytes(0x75);
    }
    if ('global' in v) {
      const [module, name] = v.global;
      if (this.get(`global:${module}.${name}`)) return;
      if (this.proto >= 4) {
        this.save(module);
        this.save(name);
        this.bytes(0x93);
      } else {
        this.bytes(0x63);
        this.raw(Buffer.from(`${module}\n${name}\n`, 'latin1'));
      }
      return this.put(`global:${module}.${name}`);
    }
    if ('reduce' in v) return this.saveReduce(v, v);
    // bytearray (protocol 5 in-band buffer)
    this.bytes(0x96);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(v.bytearray.length));
    this.raw(len);
    this.raw(v.bytearray);
    this.put(v);
  }

  private saveReduce(v: { reduce: [Py, { tuple: Py[] }, Py?] }, memoKey: unknown): void {
    const [func, args, state] = v.reduce;
    this.save(func);
    this.save(args);
    this.bytes(0x52);
    this.put(memoKey);
    if (state !== undefined) {
      this.save(state);
      this.bytes(0x62);
    }
  }
}

/** What numpy's ndarray.__reduce_ex__ hands the pickler for a C-ordered uint8 array. */
function numpyUint8(flavour: Flavour, shape: number[], data: Uint8Array): Py {
  const core = flavour === 'py2' ? 'numpy.core' : 'numpy._core';
  const dtypeArgs: Py[] = flavour === 'py2' ? ['u1', 0, 1] : ['u1', false, true];
  const dtype: Py = {
    reduce: [
      { global: ['numpy', 'dtype'] },
      { tuple: dtypeArgs },
      { tuple: [3, '|', null, null, null, -1, -1, 0] },
    ],
  };
  if (flavour === 'proto5') {
    return {
      reduce: [
        { global: [`${core}.numeric`, '_frombuffer'] },
        { tuple: [{ bytearray: data }, dtype, { tuple: shape }, 'C'] },
      ],
    };
  }
  return {
    reduce: [
      { global: [`${core}.multiarray`, '_reconstruct'] },
      { tuple: [{ global: ['numpy', 'ndarray'] }, { tuple: [0] }, new Uint8Array([0x62])] },
      { tuple: [1, { tuple: shape }, dtype, false, data] },
    ],
  };
}

const ascii = (s: string) => new Uint8Array(Buffer.from(s, 'latin1'));

function pickleBatch(flavour: Flavour, batch: Batch, label: string): Buffer {
  const rows = batch.labels.length;
  return new Pickler(flavour).dump({
    dict: [
      [ascii('batch_label'), ascii(label)],
      [ascii('labels'), [...batch.labels]],
      [ascii('data'), numpyUint8(flavour, [rows, 3072], batch.data)],
      [ascii('filenames'), batch.labels.map((_, i) => ascii(`img_${i}.png`))],
    ],
  });
}

function pickleMeta(flavour: Flavour): Buffer {
  return new Pickler(flavour).dump({
    dict: [
      [ascii('num_cases_per_batch'), 10000],
      [ascii('label_names'), CLASSES.map(ascii)],
      [ascii('num_vis'), 3072],
    ],
  });
}

async function writePythonFixture(folder: string, flavour: Flavour): Promise<string> {
  const dir = path.join(folder, 'cifar-10-batches-py');
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'batches.meta'), pickleMeta(flavour));
  for (const [i, batch] of TRAIN.entries()) {
    await writeFile(
      path.join(dir, `data_batch_${i + 1}`),
      pickleBatch(flavour, batch, `training batch ${i + 1} of 5`),
    );
  }
  await writeFile(path.join(dir, 'test_batch'), pickleBatch(flavour, TEST, 'testing batch 1 of 1'));
  return dir;
}

// ---------------------------------------------------------------------------------------------

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'ic-cifar10-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function freshDir(name: string): Promise<string> {
  const dir = path.join(tmp, name);
  await mkdir(dir, { recursive: true });
  return dir;
}

describe('CIFAR-10 binary version', () => {
  it('reads the batches into NHWC uint8 with labels, class names and per-file sha256', async () => {
    const root = await freshDir('bin');
    const dir = await writeBinaryFixture(root);
    const dataset = await loadCifar10({ cacheFolder: root, download: false, ...quiet });
    expectMatchesFixture(dataset);
    expect(dataset.source).toBe(dir);
    expect(Object.keys(dataset.checksums).sort()).toEqual([
      'batches.meta.txt',
      'data_batch_1.bin',
      'data_batch_2.bin',
      'data_batch_3.bin',
      'data_batch_4.bin',
      'data_batch_5.bin',
      'test_batch.bin',
    ]);
    const expected = createHash('sha256')
      .update(await readFile(path.join(dir, 'data_batch_2.bin')))
      .digest('hex');
    expect(dataset.checksums['data_batch_2.bin']).toBe(expected);
  });

  it('finds the data given the batches folder itself, or a folder above it', async () => {
    const root = await freshDir('locate');
    const dir = await writeBinaryFixture(root);
    expect(await locateCifar10(root)).toEqual({ format: 'binary', folder: dir });
    expect(await locateCifar10(dir)).toEqual({ format: 'binary', folder: dir });
    expect(await locateCifar10(await freshDir('locate-empty'))).toBeUndefined();
    expect(await locateCifar10(path.join(tmp, 'does-not-exist'))).toBeUndefined();
    // An explicit folder is searched before the cache.
    const dataset = await loadCifar10({
      folder: dir,
      cacheFolder: await freshDir('unused-cache'),
      download: false,
      ...quiet,
    });
    expect(dataset.train.count).toBe(10);
  });

  it('names a missing batch file', async () => {
    const root = await freshDir('missing');
    const dir = await writeBinaryFixture(root);
    await rm(path.join(dir, 'data_batch_3.bin'));
    await expect(loadCifar10({ cacheFolder: root, download: false, ...quiet })).rejects.toThrow(
      /data_batch_3\.bin/,
    );
  });

  it('rejects a batch that is not whole records', async () => {
    const root = await freshDir('ragged');
    const dir = await writeBinaryFixture(root);
    await writeFile(path.join(dir, 'test_batch.bin'), Buffer.alloc(RECORD + 5));
    await expect(readCifar10({ format: 'binary', folder: dir })).rejects.toThrow(/test_batch\.bin.*3073/);
  });

  it('says how to get the data when it is absent and downloads are off', async () => {
    const root = await freshDir('absent');
    await expect(loadCifar10({ cacheFolder: root, download: false, ...quiet })).rejects.toThrow(
      /CIFAR-10 not found in .*absent.*--dataset synthetic/,
    );
  });
});

describe('CIFAR-10 Python version (pickle)', () => {
  const flavours: Flavour[] = ['py2', 'py3-proto2', 'proto3', 'proto4', 'proto5'];
  for (const flavour of flavours) {
    it(`reads batches pickled as ${flavour}`, async () => {
      const root = await freshDir(`py-${flavour}`);
      const dir = await writePythonFixture(root, flavour);
      expect(await locateCifar10(root)).toEqual({ format: 'python', folder: dir });
      const dataset = await loadCifar10({ cacheFolder: root, download: false, ...quiet });
      expectMatchesFixture(dataset);
      expect(Object.keys(dataset.checksums)).toContain('data_batch_1');
    });
  }

  it('matches the binary version byte for byte', async () => {
    const bin = await readCifar10({
      format: 'binary',
      folder: await writeBinaryFixture(await freshDir('cmp-bin')),
    });
    const py = await readCifar10({
      format: 'python',
      folder: await writePythonFixture(await freshDir('cmp-py'), 'proto4'),
    });
    expect(Buffer.compare(bin.train.images, py.train.images)).toBe(0);
    expect(Buffer.compare(bin.test.images, py.test.images)).toBe(0);
  });

  it('decodes a numpy array pickled by Python 3 (protocol 4 bytes, as pickle.dumps writes them)', () => {
    // pickle.dumps(np.arange(6, dtype=np.uint8).reshape(2, 3), protocol=4) with numpy 2.x
    const bytes = new Pickler('proto4').dump(
      numpyUint8('proto4', [2, 3], new Uint8Array([0, 1, 2, 3, 4, 5])),
    );
    const value = readPickle(bytes);
    expect(value).toBeInstanceOf(NumpyArray);
    const array = value as NumpyArray;
    expect(array.shape).toEqual([2, 3]);
    expect(array.dtype?.str).toBe('u1');
    expect(Array.from(array.data)).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('records globals and calls as names without running them', () => {
    // cos\nsystem\n(S'echo hi'\ntR. written with binary opcodes: GLOBAL, MARK, SHORT_BINUNICODE, TUPLE, REDUCE
    const cmd = Buffer.from('echo hi');
    const bytes = Buffer.concat([
      Buffer.from([0x80, 0x02, 0x63]),
      Buffer.from('os\nsystem\n'),
      Buffer.from([0x28, 0x8c, cmd.length]),
      cmd,
      Buffer.from([0x74, 0x52, 0x2e]),
    ]);
    const value = readPickle(bytes);
    expect(value).toBeInstanceOf(PickleCall);
    const call = value as PickleCall;
    expect(call.callable).toBeInstanceOf(PickleGlobal);
    expect((call.callable as PickleGlobal).qualifiedName).toBe('os.system');
    expect(call.args).toEqual(['echo hi']);
  });

  it('reads dict lookups by bytes or str keys, and fails clearly on unknown opcodes and truncation', () => {
    const dict = readPickle(pickleMeta('proto3'));
    expect(dict).toBeInstanceOf(PickleDict);
    expect((dict as PickleDict).get('num_vis')).toBe(3072);
    expect(() => readPickle(Buffer.from([0x80, 0x02, 0x50, 0x2e]), 'evil.pkl')).toThrow(
      /evil\.pkl: unsupported pickle opcode 0x50/,
    );
    const whole = pickleMeta('proto3');
    expect(() => readPickle(whole.subarray(0, whole.length - 20))).toThrow(/unexpected end of data/);
  });
});

// ---------------------------------------------------------------------------------------------
// Downloads from a local server

interface Served {
  body: Buffer;
  truncate?: boolean;
}

describe('CIFAR-10 download', () => {
  let server: http.Server;
  let base: string;
  let archive: Buffer;
  const routes = new Map<string, Served>();
  /** The Range headers the server was sent. */
  const ranges: string[] = [];

  const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');

  /** A .tar.gz made of raw entries, to build archives node-tar itself would refuse to create. */
  function rawTarGz(
    entries: Array<{ path: string; type: 'File' | 'SymbolicLink'; body?: string; linkpath?: string }>,
  ): Buffer {
    const blocks: Buffer[] = [];
    for (const e of entries) {
      const body = Buffer.from(e.body ?? '');
      const header = new tar.Header({
        path: e.path,
        type: e.type,
        mode: 0o644,
        size: body.length,
        mtime: new Date(0),
        linkpath: e.linkpath,
      });
      const block = Buffer.alloc(512);
      header.encode(block, 0);
      blocks.push(block, body, Buffer.alloc((512 - (body.length % 512)) % 512));
    }
    blocks.push(Buffer.alloc(1024));
    return gzipSync(Buffer.concat(blocks));
  }

  beforeAll(async () => {
    const src = await freshDir('archive-src');
    await writeBinaryFixture(src);
    const file = path.join(tmp, 'cifar.tar.gz');
    await tar.c({ gzip: true, file, cwd: src, portable: true }, ['cifar-10-batches-bin']);
    archive = await readFile(file);
    routes.set('/cifar.tar.gz', { body: archive });
    routes.set('/truncated.tar.gz', { body: archive, truncate: true });
    routes.set('/escape.tar.gz', {
      body: rawTarGz([
        { path: 'cifar-10-batches-bin/batches.meta.txt', type: 'File', body: 'a\n' },
        { path: 'cifar-10-batches-bin/../../escape', type: 'File', body: 'pwned' },
      ]),
    });
    routes.set('/link.tar.gz', {
      body: rawTarGz([{ path: 'cifar-10-batches-bin/link', type: 'SymbolicLink', linkpath: '/etc/passwd' }]),
    });

    server = http.createServer((req, res) => {
      if (req.url === '/redirect') {
        res.writeHead(302, { location: '/cifar.tar.gz' });
        res.end();
        return;
      }
      const route = routes.get(req.url ?? '');
      if (!route) {
        res.writeHead(404);
        res.end();
        return;
      }
      const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
      if (range) ranges.push(req.headers.range!);
      if (range && !route.truncate) {
        const start = Number(range[1]);
        res.writeHead(206, {
          'content-length': route.body.length - start,
          'content-range': `bytes ${start}-${route.body.length - 1}/${route.body.length}`,
        });
        res.end(route.body.subarray(start));
        return;
      }
      res.writeHead(200, { 'content-length': route.body.length, 'content-type': 'application/gzip' });
      if (route.truncate) {
        res.write(route.body.subarray(0, Math.floor(route.body.length / 2)), () => res.destroy());
      } else {
        res.end(route.body);
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('downloads (following a redirect), verifies the MD5 and unpacks into the cache folder', async () => {
    const cache = path.join(tmp, 'dl-ok'); // does not exist yet: created on demand
    const sizes: number[] = [];
    const location = await downloadCifar10({
      url: `${base}/redirect`,
      cacheFolder: cache,
      md5: md5(archive),
      progress: (_label, total) => ({ update: (done) => sizes.push(done, total), stop() {} }),
      log: () => {},
    });
    expect(location).toEqual({ format: 'binary', folder: path.join(cache, 'cifar-10-batches-bin') });
    expect(await readdir(cache)).toEqual(['cifar-10-batches-bin']);
    expect(sizes.at(-2)).toBe(archive.length);
    expectMatchesFixture(await readCifar10(location));
  });

  it('loadCifar10 downloads when the data is absent, then reads it from the cache', async () => {
    const cache = await freshDir('dl-load');
    const lines: string[] = [];
    const first = await loadCifar10({
      cacheFolder: cache,
      url: `${base}/cifar.tar.gz`,
      md5: md5(archive),
      download: true,
      progress: silentProgress,
      log: (l) => lines.push(l),
    });
    expectMatchesFixture(first);
    expect(lines.join('\n')).toMatch(/Downloading CIFAR-10/);
    // The second load needs no server.
    const second = await loadCifar10({
      cacheFolder: cache,
      url: 'http://127.0.0.1:9/none',
      download: true,
      ...quiet,
    });
    expect(second.checksums).toEqual(first.checksums);
  });

  it(`takes the URL from ${CIFAR10_URL_ENV}`, async () => {
    const cache = await freshDir('dl-env');
    const saved = process.env[CIFAR10_URL_ENV];
    process.env[CIFAR10_URL_ENV] = `${base}/cifar.tar.gz`;
    try {
      const dataset = await loadCifar10({ cacheFolder: cache, md5: md5(archive), download: true, ...quiet });
      expect(dataset.train.count).toBe(10);
    } finally {
      if (saved === undefined) delete process.env[CIFAR10_URL_ENV];
      else process.env[CIFAR10_URL_ENV] = saved;
    }
  });

  it('deletes the download and says so when the MD5 does not match', async () => {
    const cache = await freshDir('dl-md5');
    await expect(
      downloadCifar10({ url: `${base}/cifar.tar.gz`, cacheFolder: cache, md5: '0'.repeat(32), ...quiet }),
    ).rejects.toThrow(new RegExp(`MD5 ${md5(archive)}, expected 0{32}`));
    expect(await readdir(cache)).toEqual([]);
  });

  it('keeps a cut-off download as a .partial (after retries) that the next call continues with Range', async () => {
    const cache = await freshDir('dl-truncated');
    const error = await loadCifar10({
      cacheFolder: cache,
      url: `${base}/truncated.tar.gz`,
      md5: md5(archive),
      download: true,
      retryDelayMs: 5,
      ...quiet,
    }).catch((e: unknown) => e as Error);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toMatch(
      /could not be downloaded from .*truncated\.tar\.gz \(download cut off at .* \(after 5 attempts\); .* kept in .*\.partial for the next run to continue\)/,
    );
    const partial = `cifar-10-${md5(archive).slice(0, 12)}.tar.gz.partial`;
    expect(await readdir(cache)).toEqual([partial]);
    const kept = (await readFile(path.join(cache, partial))).length;
    expect(kept).toBe(Math.floor(archive.length / 2));

    // The same file from a server that honours Range: only the rest is fetched.
    routes.set('/truncated.tar.gz', { body: archive });
    ranges.length = 0;
    try {
      const dataset = await loadCifar10({
        cacheFolder: cache,
        url: `${base}/truncated.tar.gz`,
        md5: md5(archive),
        download: true,
        ...quiet,
      });
      expectMatchesFixture(dataset);
    } finally {
      routes.set('/truncated.tar.gz', { body: archive, truncate: true });
    }
    expect(ranges).toEqual([`bytes=${kept}-`]);
    expect(await readdir(cache)).toEqual(['cifar-10-batches-bin']);
  });

  it('rejects archive entries that escape with ..', async () => {
    const cache = await freshDir('dl-escape');
    const body = routes.get('/escape.tar.gz')!.body;
    await expect(
      downloadCifar10({ url: `${base}/escape.tar.gz`, cacheFolder: cache, md5: md5(body), ...quiet }),
    ).rejects.toThrow(/unsafe entries cifar-10-batches-bin\/\.\.\/\.\.\/escape/);
    expect(await readdir(cache)).toEqual([]);
    expect(existsSync(path.join(tmp, 'escape'))).toBe(false);
  });

  it('rejects links in the archive', async () => {
    const cache = await freshDir('dl-link');
    const body = routes.get('/link.tar.gz')!.body;
    await expect(
      downloadCifar10({ url: `${base}/link.tar.gz`, cacheFolder: cache, md5: md5(body), ...quiet }),
    ).rejects.toThrow(/SymbolicLink entries are not allowed/);
    expect(await readdir(cache)).toEqual([]);
  });

  it('explains in one line what to do when the server cannot be reached', async () => {
    // A port that was just free: connections are refused.
    const probe = http.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const cache = await freshDir('dl-offline');
    const url = `http://127.0.0.1:${port}/cifar-10-binary.tar.gz`;
    const error = await loadCifar10({ cacheFolder: cache, url, download: true, ...quiet }).catch(
      (e: unknown) => e as Error,
    );
    expect(error).toBeInstanceOf(Error);
    const message = (error as Error).message;
    expect(message).not.toContain('\n');
    expect(message).toContain(
      `CIFAR-10 not found in ${cache} and it could not be downloaded from ${url} (ECONNREFUSED`,
    );
    expect(message).toContain('--dataset-folder');
    expect(message).toContain('--dataset synthetic');
    expect(await readdir(cache)).toEqual([]);
  });

  it('reports an HTTP error status', async () => {
    const cache = await freshDir('dl-404');
    await expect(
      downloadCifar10({ url: `${base}/nothing.tar.gz`, cacheFolder: cache, md5: md5(archive), ...quiet }),
    ).rejects.toThrow(/HTTP 404/);
    expect(await readdir(cache)).toEqual([]);
  });
});
