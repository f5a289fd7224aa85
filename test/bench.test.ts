// `npm run bench` end to end, kept tiny: one small measurement of `net` on wasm, no PyTorch.
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runNode } from './helpers/cli.js';

const ROOT = resolve(import.meta.dirname, '..');

function runBench(args: string[]): ReturnType<typeof runNode> {
  // `node --import tsx` is what the `tsx` command does, without npm's start-up time.
  return runNode(['--import', 'tsx', 'scripts/bench.ts', ...args], { cwd: ROOT });
}

interface BenchJson {
  mode: string;
  results: { backend: string; model: string; batch: number; imagesPerSecond: number; peakRssMB: number }[];
}

describe('bench script', () => {
  it('measures net on wasm and prints JSON with images/s and peak RSS', async () => {
    const { code, stdout, stderr } = await runBench([
      '--images',
      '128',
      '--warmup',
      '2',
      '--models',
      'net',
      '--backends',
      'wasm',
      '--json',
    ]);
    expect(code, stderr).toBe(0);
    const report = JSON.parse(stdout) as BenchJson;
    expect(report.mode).toBe('throughput');
    expect(report.results).toHaveLength(1);
    const [row] = report.results;
    expect(row).toMatchObject({ backend: 'wasm', model: 'net', batch: 64 });
    expect(row!.imagesPerSecond).toBeGreaterThan(0);
    expect(row!.peakRssMB).toBeGreaterThan(0);
  }, 20_000);

  it('refuses an unknown option with one line and exit code 2', async () => {
    const { code, stderr } = await runBench(['--model', 'net']);
    expect(code).toBe(2);
    expect(stderr.trim().split('\n')).toHaveLength(1);
  });
});
