// `auto`'s choice among backends that work: a GPU backend only where a measured training step is
// not slower there than on the best CPU backend (issue 13: WebGPU at 860 img/s was picked over native
// at 2,220 on an H200 machine).
import { describe, expect, it } from 'vitest';
import { autoChoice, type BackendReport } from '../src/backends/select.js';

const report = (name: BackendReport['name'], device: 'cpu' | 'gpu', stepMs?: number): BackendReport => ({
  name,
  device,
  works: true,
  stepMs,
});

describe('autoChoice', () => {
  it('takes the GPU backend when its step is faster', () => {
    const reports = [report('webgpu', 'gpu', 12), report('native', 'cpu', 480), report('wasm', 'cpu', 2000)];
    expect(autoChoice(reports)?.name).toBe('webgpu');
  });

  it('takes the best CPU backend when the GPU one is slower', () => {
    const reports = [report('webgpu', 'gpu', 300), report('native', 'cpu', 115), report('wasm', 'cpu', 2000)];
    expect(autoChoice(reports)?.name).toBe('native');
  });

  it('keeps the order of preference when nothing was measured, and skips what does not work', () => {
    expect(autoChoice([report('webgpu', 'gpu'), report('native', 'cpu')])?.name).toBe('webgpu');
    const broken: BackendReport = { name: 'webgpu', device: 'gpu', works: false, reason: 'no GPU device' };
    expect(autoChoice([broken, report('wasm', 'cpu', 2000)])?.name).toBe('wasm');
    expect(autoChoice([broken])).toBeUndefined();
  });
});
