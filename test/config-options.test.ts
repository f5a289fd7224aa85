// Options without a model: a config file loaded and merged as the CLI does it, the serving commands'
// options checked by their schemas, and the one signal handler's counting.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { flagSpecs, loadConfigFile, mergeConfig, parseOptions, parseRunConfig } from '../src/config.js';
import { predictOptionsSchema, serveOptionsSchema, SERVING_DEFAULTS } from '../src/model-options.js';
import { handleSignals, type Interrupts } from '../src/cli/signals.js';
import { tempFolder } from './helpers/cli.js';

describe('config files', () => {
  const folder = tempFolder();

  it('loads keys in any spelling; the flags override the file; the schema fills in the rest', () => {
    const file = join(folder, 'base.yaml');
    writeFileSync(file, 'experiment_name: base\nlearning-rate: 0.05\nbatchSize: 64\nseed: 3\n');
    const fromFile = loadConfigFile(file);
    expect(fromFile).toEqual({ experimentName: 'base', learningRate: 0.05, batchSize: 64, seed: 3 });
    const config = parseRunConfig(mergeConfig(fromFile, { runName: 'r2', seed: 1 }));
    expect(config).toMatchObject({ experimentName: 'base', runName: 'r2', learningRate: 0.05, seed: 1 });
    expect(config.momentum).toBe(0.9);
  });

  it('an empty file is no options; anything but a mapping is refused, naming the file', () => {
    const empty = join(folder, 'empty.yaml');
    writeFileSync(empty, '');
    expect(loadConfigFile(empty)).toEqual({});
    const list = join(folder, 'list.yaml');
    writeFileSync(list, '- a\n- b\n');
    expect(() => loadConfigFile(list)).toThrow(`--config ${list}: must hold a mapping of options`);
    expect(() => loadConfigFile(join(folder, 'missing.yaml'))).toThrow(/cannot read it \(ENOENT\)/);
  });
});

describe('the serving options', () => {
  it('fill in the defaults, and take a byte size as text', () => {
    const serve = parseOptions(serveOptionsSchema, { maxBodyBytes: '512k' });
    expect(serve).toMatchObject({
      port: SERVING_DEFAULTS.port,
      host: SERVING_DEFAULTS.host,
      maxBodyBytes: 512 * 1024,
      device: 'auto',
      backend: 'auto',
    });
    expect(parseOptions(serveOptionsSchema, {}).maxBodyBytes).toBe(SERVING_DEFAULTS.maxBodyBytes);
  });

  it("refuse bad values in the flags' words", () => {
    const refused = (input: unknown) => () => parseOptions(serveOptionsSchema, input);
    expect(refused({ port: 70000 })).toThrow('--port must be an integer from 0 to 65535 (got 70000)');
    expect(refused({ batchWindowMs: -1 })).toThrow('--batch-window-ms must be from 0 to 1000 (got -1)');
    expect(refused({ maxBodyBytes: 'ten' })).toThrow(
      '--max-body-bytes must be a size in bytes such as 10485760, 512k or 10M (got ten)',
    );
    expect(refused({ maxBatch: 4096 })).toThrow('--max-batch must be <= 1024 (got 4096)');
    expect(refused({ threads: 0 })).toThrow('--threads must be a positive integer (got 0)');
    expect(refused({ backend: 'abacus' })).toThrow(/^--backend must be one of auto, /);
    expect(refused({ colour: 'red' })).toThrow('unknown option --colour');
    expect(() => parseOptions(predictOptionsSchema, { topK: 1.5 })).toThrow(
      '--top-k must be a positive integer (got 1.5)',
    );
  });

  it('are described as flags, compute options last', () => {
    const flags = flagSpecs(predictOptionsSchema).map((s) => s.flag);
    expect(flags).toEqual(['experiments-folder', 'top-k', 'batch-size', 'device', 'backend', 'threads']);
  });
});

describe('signals', () => {
  let interrupts: Interrupts | undefined;
  afterEach(() => interrupts?.done());

  it('the first stops gracefully, the second at once; repeats within the window count once', async () => {
    const said: string[] = [];
    interrupts = handleSignals({
      first: (name) => said.push(`first ${name}`),
      second: (name) => said.push(`second ${name}`),
      sameWithinMs: 10_000,
    });
    // As Node delivers a signal: its name as the argument.
    process.emit('SIGTERM', 'SIGTERM');
    process.emit('SIGINT', 'SIGINT');
    expect(await interrupts.first).toBe('SIGTERM');
    expect(interrupts.signal.aborted).toBe(true);
    expect(interrupts.stopNow.aborted).toBe(false);
    expect(said).toEqual(['first SIGTERM']);
  });

  it('without a window every signal counts', () => {
    const said: string[] = [];
    interrupts = handleSignals({
      first: (name) => said.push(`first ${name}`),
      second: (name) => said.push(`second ${name}`),
    });
    process.emit('SIGINT', 'SIGINT');
    process.emit('SIGINT', 'SIGINT');
    expect(interrupts.stopNow.aborted).toBe(true);
    expect(said).toEqual(['first SIGINT', 'second SIGINT']);
  });
});
