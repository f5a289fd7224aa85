// The fused training batch norm (src/backends/batch-norm.ts) on WebGPU: x viewed as [R, C] (all axes
// but the channel one are rows). Without these, the custom gradient runs as ~9 tfjs ops forward and
// ~12 backward per layer, several of them full-size passes.
//
// Forward: workgroups take chunks of rows and write each chunk's mean and sum of squared deviations
// (two reads of the chunk, which stays in cache: no cancellation of a one-pass sum of squares);
// one thread per channel combines the chunks in chunk order (Chan et al.'s pairwise update); then
// y = (x - mean) * gamma / sqrt(var + eps) + beta element-wise. Backward: per-chunk sums of dy and
// dy * xhat, combined in chunk order, then dx element-wise. Fixed orders throughout: the same
// inputs give the same bits.
import * as tf from '@tensorflow/tfjs';
import { BATCH_NORM_TRAIN, BATCH_NORM_TRAIN_GRAD, MOVING_AVERAGE } from '../batch-norm.js';
import { elementwise, program, run, type WebGpuBackend } from './program.js';

/** Workgroups to aim for across chunks and channel blocks. */
const TARGET_GROUPS = 512;
/** Fewest rows a chunk takes (below that the combining pass costs more than it saves). */
const MIN_CHUNK_ROWS = 64;

interface Layout {
  rows: number;
  c: number;
  /** Channels per workgroup, and row lanes (256 threads = block x lanes). */
  block: number;
  lanes: number;
  chunkRows: number;
  chunks: number;
}

function layout(x: tf.TensorInfo): Layout {
  const c = x.shape[x.shape.length - 1]!;
  const rows = x.shape.reduce((a, b) => a * b, 1) / c;
  const block = c > 32 ? 64 : 32;
  const blocks = Math.ceil(c / block);
  const wanted = Math.ceil(TARGET_GROUPS / blocks);
  const chunks0 = Math.max(1, Math.min(wanted, Math.ceil(rows / MIN_CHUNK_ROWS)));
  const chunkRows = Math.ceil(rows / chunks0);
  return { rows, c, block, lanes: 256 / block, chunkRows, chunks: Math.ceil(rows / chunkRows) };
}

const key = (l: Layout) => `${l.rows}_${l.c}_${l.block}_${l.chunkRows}`;

/**
 * Per chunk and channel, two statistics of `x` (with `dy`, `mean`, `variance` for the gradient):
 * forward: the chunk's mean and sum of squared deviations; backward: sum of dy and of dy * xhat.
 * Output [chunks, 2, C].
 */
function chunkStatsProgram(l: Layout, grad: boolean, epsilon: number) {
  const lane = (expr: string) => `
  red[t] = ${expr};
  workgroupBarrier();
  var ${expr}Total = 0.0;
  for (var j = 0; j < LANES; j++) { ${expr}Total += red[j * BLOCK + cl]; }
  workgroupBarrier();`;
  const body = grad
    ? `
  var s0 = 0.0;
  var s1 = 0.0;
  if (c < C) {
    let mu = mean[c];
    let invStd = inverseSqrt(variance[c] + ${epsilon});
    for (var r = r0 + rl; r < r1; r += LANES) {
      let g = dy[r * C + c];
      s0 += g;
      s1 += g * ((x[r * C + c] - mu) * invStd);
    }
  }
  ${lane('s0')}
  ${lane('s1')}`
    : `
  var s0 = 0.0;
  if (c < C) {
    for (var r = r0 + rl; r < r1; r += LANES) { s0 += x[r * C + c]; }
  }
  ${lane('s0')}
  let chunkMean = s0Total / f32(r1 - r0);
  s0Total = chunkMean;
  var s1 = 0.0;
  if (c < C) {
    for (var r = r0 + rl; r < r1; r += LANES) {
      let d = x[r * C + c] - chunkMean;
      s1 += d * d;
    }
  }
  ${lane('s1')}`;
  return program({
    key: `bn_chunks_${grad ? 'grad' : 'fwd'}_${key(l)}_${epsilon}`,
    outputShape: [l.chunks, 2, l.c],
    inputs: grad ? ['x', 'dy', 'mean', 'variance'] : ['x'],
    workgroupSize: 256,
    grid: [l.chunks, Math.ceil(l.c / l.block), 1],
    code: `
const R = ${l.rows}; const C = ${l.c}; const BLOCK = ${l.block}; const LANES = ${l.lanes};
const CHUNK = ${l.chunkRows};
var<workgroup> red: array<f32, 256>;
fn main() {
  let t = i32(localIndex);
  let cl = t % BLOCK;
  let rl = t / BLOCK;
  let c = i32(workgroupId.y) * BLOCK + cl;
  let chunk = i32(workgroupId.x);
  let r0 = chunk * CHUNK;
  let r1 = min(r0 + CHUNK, R);
  ${body}
  if (rl == 0 && c < C) {
    result[(chunk * 2) * C + c] = s0Total;
    result[(chunk * 2 + 1) * C + c] = s1Total;
  }
}`,
  });
}

/**
 * One [C] result from the chunk statistics, combined in chunk order. Forward: `mean` or `variance`
 * (biased, as tf.moments); backward: `sum0` (dbeta) or `sum1` (dgamma).
 */
function combineProgram(backend: WebGpuBackend, l: Layout, what: 'mean' | 'variance' | 'sum0' | 'sum1') {
  const body =
    what === 'sum0' || what === 'sum1'
      ? `var s = 0.0;
  for (var k = 0; k < ${l.chunks}; k++) { s += parts[(k * 2 + ${what === 'sum0' ? 0 : 1}) * ${l.c} + i]; }
  result[i] = s;`
      : `var n = 0.0;
  var mean = 0.0;
  var m2 = 0.0;
  for (var k = 0; k < ${l.chunks}; k++) {
    let nb = f32(min(${l.chunkRows}, ${l.rows} - k * ${l.chunkRows}));
    let delta = parts[(k * 2) * ${l.c} + i] - mean;
    let total = n + nb;
    mean += delta * (nb / total);
    m2 += parts[(k * 2 + 1) * ${l.c} + i] + delta * delta * (n * nb / total);
    n = total;
  }
  result[i] = ${what === 'mean' ? 'mean' : `m2 / ${l.rows}.0`};`;
  return elementwise(backend, `bn_combine_${what}_${key(l)}`, [l.c], ['parts'], body);
}

type Params = Parameters<tf.KernelFunc>[0];

/** The chunk statistics of x (and of dy, for the gradient), combined into two [C] results. */
function statistics(
  backend: WebGpuBackend,
  l: Layout,
  epsilon: number,
  inputs: tf.TensorInfo[],
  which: ['mean', 'variance'] | ['sum0', 'sum1'],
): [tf.TensorInfo, tf.TensorInfo] {
  const parts = run(backend, chunkStatsProgram(l, which[0] === 'sum0', epsilon), inputs);
  const [a, b] = which.map((what) => run(backend, combineProgram(backend, l, what), [parts]));
  backend.disposeData(parts.dataId);
  return [a!, b!];
}

function batchNormTrain({ inputs, backend: b, attrs }: Params): tf.TensorInfo[] {
  const backend = b as unknown as WebGpuBackend;
  const { x, gamma, beta } = inputs as { x: tf.TensorInfo; gamma: tf.TensorInfo; beta: tf.TensorInfo };
  const { epsilon } = attrs as unknown as { epsilon: number };
  const l = layout(x);
  const [mean, variance] = statistics(backend, l, epsilon, [x], ['mean', 'variance']);
  const y = run(
    backend,
    elementwise(
      backend,
      `bn_apply_${key(l)}_${epsilon}`,
      x.shape,
      ['x', 'mean', 'variance', 'gamma', 'beta'],
      `let c = i % ${l.c};
  let scale = gamma[c] * inverseSqrt(variance[c] + ${epsilon});
  result[i] = (x[i] - mean[c]) * scale + beta[c];`,
    ),
    [x, mean, variance, gamma, beta],
  );
  return [y, mean, variance];
}

function batchNormTrainGrad({ inputs, backend: b, attrs }: Params): tf.TensorInfo[] {
  const backend = b as unknown as WebGpuBackend;
  const { dy, x, gamma, mean, variance } = inputs as Record<
    'dy' | 'x' | 'gamma' | 'mean' | 'variance',
    tf.TensorInfo
  >;
  const { epsilon } = attrs as unknown as { epsilon: number };
  const l = layout(x);
  const [dbeta, dgamma] = statistics(backend, l, epsilon, [x, dy, mean, variance], ['sum0', 'sum1']);
  // dx = gamma * invStd * (dy - dbeta / m - xhat * dgamma / m), m the rows per channel.
  const dx = run(
    backend,
    elementwise(
      backend,
      `bn_grad_apply_${key(l)}_${epsilon}`,
      x.shape,
      ['dy', 'x', 'gamma', 'mean', 'variance', 'dgamma', 'dbeta'],
      `let c = i % ${l.c};
  let invStd = inverseSqrt(variance[c] + ${epsilon});
  let xhat = (x[i] - mean[c]) * invStd;
  let m = ${l.rows}.0;
  result[i] = gamma[c] * invStd * ((dy[i] - dbeta[c] / m) - xhat * (dgamma[c] / m));`,
    ),
    [dy, x, gamma, mean, variance, dgamma, dbeta],
  );
  return [dx, dgamma, dbeta];
}

/** The moving mean's or variance's update; decay is a uniform (one shader for every layer). */
function movingAverage({ inputs, backend: b, attrs }: Params): tf.TensorInfo {
  const backend = b as unknown as WebGpuBackend;
  const { orig, value } = inputs as { orig: tf.TensorInfo; value: tf.TensorInfo };
  const { decay } = attrs as unknown as { decay: number };
  const prog = elementwise(
    backend,
    'moving_average',
    orig.shape,
    ['orig', 'value'],
    'result[i] = orig[i] - (orig[i] - value[i]) * uniforms.decay;',
    'decay : f32,',
  );
  return run(backend, prog, [orig, value], [{ type: 'float32', data: [decay] }]);
}

export function batchNormTrainConfigs(): tf.KernelConfig[] {
  return [
    { kernelName: BATCH_NORM_TRAIN, backendName: 'webgpu', kernelFunc: batchNormTrain },
    { kernelName: BATCH_NORM_TRAIN_GRAD, backendName: 'webgpu', kernelFunc: batchNormTrainGrad },
    { kernelName: MOVING_AVERAGE, backendName: 'webgpu', kernelFunc: movingAverage },
  ];
}
