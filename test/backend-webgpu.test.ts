// The WebGPU path (Dawn through the `webgpu` package, tfjs-backend-webgpu's kernels, our async
// readbacks) trained end to end. Machines without a GPU can run it on a software Vulkan driver
// (Mesa's lavapipe; .ci/run installs it where it can); where no WebGPU adapter exists at all the
// tests are skipped, and say why.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Metrics } from '../src/index.js';
import { runCli, tempFolder, type CliResult } from './helpers/cli.js';
import { makeFolder, quickImageFolderArgs } from './helpers/images.js';

const UNAVAILABLE = /package not installed|no Vulkan loader|no WebGPU adapter/;

describe('WebGPU backend', () => {
  const cwd = tempFolder();
  const images = join(cwd, 'images');
  const args = (run: string, backend: string) => [
    '--experiment-name',
    'gpu',
    '--run-name',
    run,
    ...quickImageFolderArgs(images, '--batch-size', '8', '--backend', backend),
  ];
  let webgpu: CliResult;

  beforeAll(async () => {
    await makeFolder(images, 6);
    webgpu = await runCli(args('webgpu', 'webgpu'), { cwd });
  });

  it('trains the same numbers as wasm (within float tolerance) when an adapter exists', async (ctx) => {
    if (webgpu.code !== 0 && UNAVAILABLE.test(webgpu.stderr)) {
      ctx.skip(`no WebGPU adapter here: ${webgpu.stderr.trim().split('\n').at(-1)}`);
    }
    expect(webgpu.code, webgpu.stderr).toBe(0);
    expect(webgpu.stdout).toMatch(/backend: webgpu \(@tensorflow\/tfjs-backend-webgpu@[\d.]+, gpu: /);
    const wasm = await runCli(args('wasm', 'wasm'), { cwd });
    expect(wasm.code, wasm.stderr).toBe(0);
    const read = (run: string) =>
      JSON.parse(readFileSync(join(cwd, 'experiments', 'gpu', run, 'metrics.json'), 'utf8')) as Metrics;
    const [a, b] = [read('webgpu'), read('wasm')];
    expect(a.history).toHaveLength(2);
    a.history.forEach((h, i) => {
      const w = b.history[i]!;
      expect(Math.abs(h.trainLoss - w.trainLoss) / w.trainLoss).toBeLessThan(1e-3);
      expect(Math.abs(h.validationLoss - w.validationLoss) / w.validationLoss).toBeLessThan(1e-3);
    });
    const manifest = JSON.parse(
      readFileSync(join(cwd, 'experiments', 'gpu', 'webgpu', 'run.json'), 'utf8'),
    ) as {
      backend: { name: string; adapter?: string };
    };
    expect(manifest.backend.name).toBe('webgpu');
    expect(manifest.backend.adapter).toBeTruthy();
  });

  it('trains to the same weights, bit for bit, twice (same data, seed and adapter)', async (ctx) => {
    if (webgpu.code !== 0 && UNAVAILABLE.test(webgpu.stderr)) {
      ctx.skip(`no WebGPU adapter here: ${webgpu.stderr.trim().split('\n').at(-1)}`);
    }
    const again = await runCli(args('webgpu-again', 'webgpu'), { cwd });
    expect(again.code, again.stderr).toBe(0);
    const weights = (run: string) =>
      readFileSync(join(cwd, 'experiments', 'gpu', run, 'model', 'weights.bin'));
    expect(weights('webgpu-again').equals(weights('webgpu'))).toBe(true);
  });

  it('auto never picks a software adapter, and probing prints nothing on a machine without a GPU', async (ctx) => {
    const doctor = await runCli(['doctor'], { cwd });
    expect(doctor.code, doctor.stderr).toBe(0);
    const line = doctor.stdout.split('\n').find((l) => l.startsWith('webgpu'))!;
    if (/\bworks\b/.test(line)) ctx.skip('a hardware WebGPU adapter here');
    expect(line).toMatch(
      /unavailable: (no GPU device|only a software WebGPU adapter|no Vulkan loader|package not installed)/,
    );
    expect(doctor.stdout).not.toMatch(/--device auto uses: webgpu/);
    // Dawn's warnings (printed while it looks at a software adapter) must not reach every run's stderr.
    expect(doctor.stderr).not.toMatch(/Warning/);
  });
});
