// Conv2DBackpropFilter for the webgpu backend: dW[kh,kw,c,f] = sum over (n,oh,ow) of
// x[n, oh*s+kh-pad, ow*s+kw-pad, c] * dy[n,oh,ow,f], a product of an [M = KH*KW*C] x [K = N*OH*OW]
// gather of x by a [K] x [F] dy. The output is small (VGG: 288x32 .. 1152x128) and the reduction
// long (262,144 at batch 256), so the reduction is split: each workgroup takes a TMxTN output tile
// over one chunk of K, writes its partial sums, and a second pass adds the chunks in chunk order.
// No atomics: the same inputs give the same bits. tfjs-backend-webgpu's own kernel gives one
// thread one output and walks the whole reduction: 3-190 GFLOP/s on VGG's layers on an H200,
// 93 % of a training step (issue 13).
import * as tf from '@tensorflow/tfjs';
import { elementwise, program, run, type WebGpuBackend } from './program.js';

/** Tile sizes and split; exported so the GPU bench can try others. */
export const filterGradTuning = {
  /** Reduction steps staged in workgroup memory at a time. */
  tk: 16,
  /** Workgroups to aim for across tiles and chunks (enough to fill a large GPU). */
  targetGroups: 1024,
  /** Output rows (KH*KW*C) and columns (F) per workgroup, at most; each thread does 4x4. */
  maxTileM: 64,
  maxTileN: 64,
};

interface Geometry {
  n: number;
  h: number;
  w: number;
  c: number;
  f: number;
  kh: number;
  kw: number;
  oh: number;
  ow: number;
  sh: number;
  sw: number;
  pt: number;
  pl: number;
}

function tiles(g: Geometry) {
  const { tk, targetGroups, maxTileM, maxTileN } = filterGradTuning;
  const m = g.kh * g.kw * g.c;
  const k = g.n * g.oh * g.ow;
  const tm = m <= 32 ? 32 : maxTileM;
  const tn = g.f <= 32 ? 32 : maxTileN;
  const outputTiles = Math.ceil(m / tm) * Math.ceil(g.f / tn);
  const kTiles = Math.ceil(k / tk);
  const split = Math.min(kTiles, Math.max(1, Math.ceil(targetGroups / outputTiles)));
  const chunk = Math.ceil(kTiles / split) * tk;
  return { m, k, tm, tn, tk, chunk, splits: Math.ceil(k / chunk) };
}

function partialProgram(g: Geometry) {
  const t = tiles(g);
  const threads = (t.tm * t.tn) / 16;
  const key = `dw_${Object.values(g).join('_')}_${t.tm}_${t.tn}_${t.tk}_${t.chunk}`;
  const code = `
const M = ${t.m}; const K = ${t.k}; const F = ${g.f}; const C = ${g.c};
const H = ${g.h}; const W = ${g.w}; const OH = ${g.oh}; const OW = ${g.ow}; const KW = ${g.kw};
const SH = ${g.sh}; const SW = ${g.sw}; const PT = ${g.pt}; const PL = ${g.pl};
const TM = ${t.tm}; const TN = ${t.tn}; const TK = ${t.tk}; const CHUNK = ${t.chunk};
const THREADS = ${threads};
var<workgroup> As: array<vec4<f32>, ${(t.tk * t.tm) / 4}>;
var<workgroup> Bs: array<vec4<f32>, ${(t.tk * t.tn) / 4}>;
// Per reduction step of the current tile: where its output pixel's window starts in x.
var<workgroup> rowY: array<i32, TK>;
var<workgroup> rowX: array<i32, TK>;
var<workgroup> rowBase: array<i32, TK>;

fn main() {
  let t = i32(localIndex);
  let m0 = i32(workgroupId.x) * TM;
  let f0 = i32(workgroupId.y) * TN;
  let split = i32(workgroupId.z);
  let kBegin = split * CHUNK;
  let kEnd = min(kBegin + CHUNK, K);
  // This thread stages x for one row m (fixed) and dy for one column f (fixed) of the tiles.
  let am = t % TM;
  let m = m0 + am;
  let c = m % C;
  let kx = (m / C) % KW;
  let ky = m / (C * KW);
  let tap = (ky * W + kx) * C + c;
  let bf = t % TN;
  let f = f0 + bf;
  // And computes rows m0 + 4*tm .. +3, columns f0 + 4*tn .. +3.
  let tm = t % (TM / 4);
  let tn = t / (TM / 4);
  var acc: array<vec4<f32>, 4>;
  // Constant trip count: workgroupBarrier needs uniform control flow, and WGSL does not know that
  // workgroupId is uniform. The last chunk's steps past K load zeros.
  for (var step = 0; step < CHUNK; step += TK) {
    let k0 = kBegin + step;
    // The (n, oh, ow) of each reduction step, decomposed once per tile instead of once per load.
    if (t < TK) {
      let k = k0 + t;
      let b = k / (OH * OW);
      let r = k % (OH * OW);
      let oy = (r / OW) * SH - PT;
      let ox = (r % OW) * SW - PL;
      rowY[t] = select(-1000000, oy, k < kEnd);
      rowX[t] = ox;
      rowBase[t] = ((b * H + oy) * W + ox) * C;
    }
    workgroupBarrier();
    for (var j = t / TM; j < TK; j += THREADS / TM) {
      let iy = rowY[j] + ky;
      let ix = rowX[j] + kx;
      var v = 0.0;
      if (m < M && iy >= 0 && iy < H && ix >= 0 && ix < W) {
        v = x[rowBase[j] + tap];
      }
      As[j * (TM / 4) + am / 4][am % 4] = v;
    }
    for (var j = t / TN; j < TK; j += THREADS / TN) {
      let k = k0 + j;
      var v = 0.0;
      if (f < F && k < kEnd) {
        v = dy[k * F + f];
      }
      Bs[j * (TN / 4) + bf / 4][bf % 4] = v;
    }
    workgroupBarrier();
    for (var j = 0; j < TK; j++) {
      let a = As[j * (TM / 4) + tm];
      let b = Bs[j * (TN / 4) + tn];
      acc[0] = fma(vec4<f32>(a.x), b, acc[0]);
      acc[1] = fma(vec4<f32>(a.y), b, acc[1]);
      acc[2] = fma(vec4<f32>(a.z), b, acc[2]);
      acc[3] = fma(vec4<f32>(a.w), b, acc[3]);
    }
    workgroupBarrier();
  }
  for (var i = 0; i < 4; i++) {
    let row = m0 + tm * 4 + i;
    if (row < M) {
      for (var j = 0; j < 4; j++) {
        let col = f0 + tn * 4 + j;
        if (col < F) {
          result[(split * M + row) * F + col] = acc[i][j];
        }
      }
    }
  }
}`;
  return {
    tiles: t,
    program: program({
      key,
      outputShape: [t.splits, t.m, g.f],
      inputs: ['x', 'dy'],
      workgroupSize: threads,
      grid: [Math.ceil(t.m / t.tm), Math.ceil(g.f / t.tn), t.splits],
      code,
    }),
  };
}

/** Sums [S, ...shape] over S in order into shape. */
function sumSplitsProgram(backend: WebGpuBackend, splits: number, shape: number[]) {
  const size = shape.reduce((a, b) => a * b, 1);
  return elementwise(
    backend,
    `sum_splits_${splits}`,
    shape,
    ['parts'],
    `var s = parts[i];
  for (var j = 1; j < ${splits}; j++) { s += parts[j * ${size} + i]; }
  result[i] = s;`,
  );
}

type Args = {
  inputs: tf.NamedTensorInfoMap;
  backend: tf.KernelBackend;
  attrs?: tf.NamedAttrMap;
};

export function conv2DBackpropFilterConfig(stock: tf.KernelConfig | undefined): tf.KernelConfig {
  return {
    kernelName: tf.Conv2DBackpropFilter,
    backendName: 'webgpu',
    kernelFunc: (args) => {
      const { inputs, attrs } = args as Args;
      const backend = args.backend as unknown as WebGpuBackend;
      const { x, dy } = inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
      const { strides, pad, dataFormat, dimRoundingMode, filterShape } =
        attrs as unknown as tf.Conv2DBackpropFilterAttrs;
      if ((dataFormat !== undefined && dataFormat !== 'NHWC') || x.dtype !== 'float32') {
        if (stock === undefined) throw new Error('Conv2DBackpropFilter: only NHWC float32 is supported');
        return stock.kernelFunc(args);
      }
      const info = tf.backend_util.computeConv2DInfo(
        x.shape as [number, number, number, number],
        filterShape,
        strides,
        1,
        pad,
        dimRoundingMode,
      );
      const g: Geometry = {
        n: info.batchSize,
        h: info.inHeight,
        w: info.inWidth,
        c: info.inChannels,
        f: info.outChannels,
        kh: info.filterHeight,
        kw: info.filterWidth,
        oh: info.outHeight,
        ow: info.outWidth,
        sh: info.strideHeight,
        sw: info.strideWidth,
        pt: info.padInfo.top,
        pl: info.padInfo.left,
      };
      const partial = partialProgram(g);
      if (partial.tiles.splits === 1) {
        // One chunk: its partial sums are the gradient already (same layout as [KH,KW,C,F]).
        partial.program.outputShape = filterShape;
        return run(backend, partial.program, [x, dy]);
      }
      const parts = run(backend, partial.program, [x, dy]);
      const out = run(backend, sumSplitsProgram(backend, partial.tiles.splits, filterShape), [parts]);
      backend.disposeData(parts.dataId);
      return out;
    },
  };
}
