// The weights a fixed recipe trains, as sha256 of weights.bin, recorded before the restructuring of
// issue 14 (and equal at the commit before this session's changes, 8a6b587): code that moves, splits
// or renames must not change one bit of what the CPU backends train. A change that means to change
// the numbers updates these values and says why.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NATIVE_ADDON_PATH } from '../src/backends/native/addon.js';
import { runCli, tempFolder } from './helpers/cli.js';

const RECIPE = [
  '--dataset', 'synthetic', '--validation-split', '0', '--epochs', '2', '--batch-size', '64',
  '--learning-rate', '0.05', '--momentum', '0.9', '--seed', '3', '--lr-schedule', 'onecycle',
  '--weight-decay', '0.0005', '--label-smoothing', '0.1', '--threads', '2',
]; // prettier-ignore

const EXPECTED: Record<string, string> = {
  'net native': '1a039e3f17c762df7a0bfcaa041b98bbafcb21fa5f79f527da3661e0f77bfbe9',
  'net wasm': '2c55580d4b2647ad2d56a84c8477c24a98b0585392b4d6ca9cec01928c60c15e',
  'vgg native': 'fac6e024e5f7e854feae2acadf5f46258a36de46cb218030d2775bda4239bbab',
  'vgg wasm': 'f86b084d5380e7b4421589edce9d4a05151ac5bd678fe130dfea5b94bd3b73d0',
};

describe('the weights a fixed recipe trains', () => {
  const cwd = tempFolder();
  for (const [name, sha256] of Object.entries(EXPECTED)) {
    const [model, backend] = name.split(' ') as [string, string];
    it(`${model} on ${backend}: the recorded bytes`, async (ctx) => {
      if (backend === 'native' && !existsSync(NATIVE_ADDON_PATH))
        ctx.skip('the native addon is not built here');
      const run = `${model}-${backend}`;
      const r = await runCli(
        ['--experiment-name', 'w', '--run-name', run, '--model', model, '--backend', backend, ...RECIPE],
        { cwd },
      );
      expect(r.code, r.stderr).toBe(0);
      const weights = readFileSync(join(cwd, 'experiments', 'w', run, 'model', 'weights.bin'));
      expect(createHash('sha256').update(weights).digest('hex')).toBe(sha256);
    });
  }
});
