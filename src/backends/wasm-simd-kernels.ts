// Small WebAssembly SIMD loops that run directly on the tfjs wasm backend's
// heap (they import its memory), for the element-wise and per-channel work of
// batch norm. Plain JS loops over the heap ran 4-8x slower; these are built at
// run time with ./wasm-asm.ts. All loops run in a fixed order, so results are
// bit-identical run to run.
//
// Pointers are byte offsets into the heap; `c` (channels) must be a multiple
// of 4; accumulators are float64, two per 16 bytes.
import {
  addTo,
  op,
  buildModule,
  f32Add,
  f32Const,
  f32Mul,
  f32Sub,
  f32Load,
  f32Store,
  i32Load,
  f32x4Add,
  f32x4Gt,
  i32x4Add,
  i32x4ExtractLane,
  i32x4Splat,
  ifThen,
  v128Bitselect,
  v128Const,
  f32x4Mul,
  f32x4Splat,
  f32x4Sub,
  f64x2Add,
  f64x2Mul,
  f64x2PromoteLow,
  get,
  i32,
  loop,
  tee,
  set,
  splatLane,
  swapHalves,
  v128Load,
  v128Store,
  type Code,
  type FuncDef,
} from './wasm-asm.js';
import type { WasmMemory } from './wasm-internals.js';

/** The parts of the global WebAssembly API we use (not in our tsconfig libs). */
interface WebAssemblyApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: Record<string, Record<string, unknown>>) => { exports: unknown };
}
// Cast: Node always provides WebAssembly; only its typings are missing here.
const WA = (globalThis as unknown as { WebAssembly: WebAssemblyApi }).WebAssembly;

export interface SimdKernels {
  /** sum[j] += x[r, j]; sumSq[j] += x[r, j]^2 over rows r (float64 accumulators). */
  bnStats(x: number, rows: number, c: number, sum: number, sumSq: number): void;
  /** y[r, j] = x[r, j] * scale[j] + shift[j]. */
  bnApply(x: number, y: number, rows: number, c: number, scale: number, shift: number): void;
  /** sumDy[j] += dy; sumDyXc[j] += dy * (x - mean[j]) (float64 accumulators). */
  bnGradStats(
    dy: number,
    x: number,
    mean: number,
    rows: number,
    c: number,
    sumDy: number,
    sumDyXc: number,
  ): void;
  /** dx = a[j] * dy + b[j] * (x - mean[j]) + d[j]. */
  bnGradApply(
    dy: number,
    x: number,
    dx: number,
    rows: number,
    c: number,
    a: number,
    b: number,
    mean: number,
    d: number,
  ): void;
  /** See sgdUpdate below: w, wOut, g, buf, n, lr, momentum, weightDecay, nesterov (0/1). */
  sgdUpdate(
    w: number,
    wOut: number,
    g: number,
    buf: number,
    n: number,
    lr: number,
    m: number,
    wd: number,
    nesterov: number,
  ): void;
  /** See addPattern below. */
  addPattern(x: number, y: number, blocks: number, pattern: number, blockBytes: number): void;
  /** See maxPoolGrad below. */
  maxPoolGrad: MaxPoolGrad;
  convFilterGrad4: ConvFilterGrad;
  convFilterGrad1: ConvFilterGrad;
}

/** See maxPoolGrad below: x, dy, delta, N, H, W, C, OH, OW, fH, fW, sH, sW, pT, pL. */
type MaxPoolGrad = (...args: number[]) => void;

/** See convFilterGrad below; all arguments are numbers (pointers are heap byte offsets). */
type ConvFilterGrad = (
  x: number,
  dy: number,
  dw: number,
  table: number,
  N: number,
  H: number,
  W: number,
  C: number,
  OH: number,
  OW: number,
  F: number,
  KH: number,
  KW: number,
  sH: number,
  pT: number,
  fBegin: number,
  fEnd: number,
  xStride: number,
  xRowBytes: number,
  dyPixBytes: number,
) => void;

/** f64 accumulator at `ptr` (+0: lanes 0-1, +16: lanes 2-3) += promoted `v`. */
function accumulate(ptr: number, v: number): Code {
  return [
    [get(ptr), get(ptr), v128Load(0), get(v), f64x2PromoteLow, f64x2Add, v128Store(0)],
    [get(ptr), get(ptr), v128Load(16), swapHalves(v), f64x2PromoteLow, f64x2Add, v128Store(16)],
  ];
}

function bnStats(): FuncDef {
  // params: x 0, rows 1, c 2, sum 3, sumSq 4
  const [x, rows, c, sum, sq] = [0, 1, 2, 3, 4];
  const [r, j, xp, ap, qp, v, v2] = [5, 6, 7, 8, 9, 10, 11];
  return {
    name: 'bnStats',
    params: ['i32', 'i32', 'i32', 'i32', 'i32'],
    locals: ['i32', 'i32', 'i32', 'i32', 'i32', 'v128', 'v128'],
    body: [
      get(x),
      set(xp),
      loop(r, rows, 1, [
        i32(0),
        set(j),
        get(sum),
        set(ap),
        get(sq),
        set(qp),
        loop(j, c, 4, [
          get(xp),
          v128Load(0),
          set(v),
          // Squares in float32 would round; promote first, then square.
          accumulate(ap, v),
          [
            get(qp),
            get(qp),
            v128Load(0),
            get(v),
            f64x2PromoteLow,
            get(v),
            f64x2PromoteLow,
            f64x2Mul,
            f64x2Add,
          ],
          v128Store(0),
          swapHalves(v),
          set(v2),
          [
            get(qp),
            get(qp),
            v128Load(16),
            get(v2),
            f64x2PromoteLow,
            get(v2),
            f64x2PromoteLow,
            f64x2Mul,
            f64x2Add,
          ],
          v128Store(16),
          addTo(xp, i32(16)),
          addTo(ap, i32(32)),
          addTo(qp, i32(32)),
        ]),
      ]),
    ],
  };
}

function bnApply(): FuncDef {
  const [x, y, rows, c, scale, shift] = [0, 1, 2, 3, 4, 5];
  const [r, j, xp, yp, sp, hp] = [6, 7, 8, 9, 10, 11];
  return {
    name: 'bnApply',
    params: ['i32', 'i32', 'i32', 'i32', 'i32', 'i32'],
    locals: ['i32', 'i32', 'i32', 'i32', 'i32', 'i32'],
    body: [
      get(x),
      set(xp),
      get(y),
      set(yp),
      loop(r, rows, 1, [
        i32(0),
        set(j),
        get(scale),
        set(sp),
        get(shift),
        set(hp),
        loop(j, c, 4, [
          get(yp),
          [get(xp), v128Load(0), get(sp), v128Load(0), f32x4Mul, get(hp), v128Load(0), f32x4Add],
          v128Store(0),
          addTo(xp, i32(16)),
          addTo(yp, i32(16)),
          addTo(sp, i32(16)),
          addTo(hp, i32(16)),
        ]),
      ]),
    ],
  };
}

function bnGradStats(): FuncDef {
  const [dy, x, mean, rows, c, sumDy, sumDyXc] = [0, 1, 2, 3, 4, 5, 6];
  const [r, j, dp, xp, mp, ap, bp, d, p] = [7, 8, 9, 10, 11, 12, 13, 14, 15];
  return {
    name: 'bnGradStats',
    params: ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32'],
    locals: ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'v128', 'v128'],
    body: [
      get(dy),
      set(dp),
      get(x),
      set(xp),
      loop(r, rows, 1, [
        i32(0),
        set(j),
        get(mean),
        set(mp),
        get(sumDy),
        set(ap),
        get(sumDyXc),
        set(bp),
        loop(j, c, 4, [
          get(dp),
          v128Load(0),
          set(d),
          [get(d), get(xp), v128Load(0), get(mp), v128Load(0), f32x4Sub, f32x4Mul],
          set(p),
          accumulate(ap, d),
          accumulate(bp, p),
          addTo(dp, i32(16)),
          addTo(xp, i32(16)),
          addTo(mp, i32(16)),
          addTo(ap, i32(32)),
          addTo(bp, i32(32)),
        ]),
      ]),
    ],
  };
}

function bnGradApply(): FuncDef {
  const [dy, x, dx, rows, c, a, b, mean, d] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const [r, j, dyp, xp, dxp, ap, bp, mp, dp] = [9, 10, 11, 12, 13, 14, 15, 16, 17];
  return {
    name: 'bnGradApply',
    params: ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32'],
    locals: ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32'],
    body: [
      get(dy),
      set(dyp),
      get(x),
      set(xp),
      get(dx),
      set(dxp),
      loop(r, rows, 1, [
        i32(0),
        set(j),
        get(a),
        set(ap),
        get(b),
        set(bp),
        get(mean),
        set(mp),
        get(d),
        set(dp),
        loop(j, c, 4, [
          get(dxp),
          [get(ap), v128Load(0), get(dyp), v128Load(0), f32x4Mul],
          [get(bp), v128Load(0), get(xp), v128Load(0), get(mp), v128Load(0), f32x4Sub, f32x4Mul],
          f32x4Add,
          [get(dp), v128Load(0), f32x4Add],
          v128Store(0),
          addTo(dyp, i32(16)),
          addTo(xp, i32(16)),
          addTo(dxp, i32(16)),
          addTo(ap, i32(16)),
          addTo(bp, i32(16)),
          addTo(mp, i32(16)),
          addTo(dp, i32(16)),
        ]),
      ]),
    ],
  };
}

/**
 * Conv2D filter gradient over whole images: dw[kh, kw, c, f] += sum over
 * images, output rows and valid output columns of x[pixel][c] * dy[pixel][f],
 * for filters f in [fBegin, fEnd) only.
 * `table` holds three i32 per kernel column: byte offsets of its first x
 * pixel within an x row and first dy pixel within a dy row, and its pixel
 * count. x pixels are `xStride` bytes apart (the conv stride), x rows
 * `xRowBytes` (W is not read); dy pixels `dyPixBytes`. Layouts: x NHWC, dy
 * [N, OH, OW, *], dw HWIO with F (a multiple of 8) filters. Register tiles of
 * `rows` channels (4: C % 4 == 0; 1: any C) x 8 filters. With fewer real
 * filters than F (dyPixBytes < 4F), the loads read on into the next pixel and
 * the extra dw columns are garbage for the caller to drop.
 */
function convFilterGrad(rows: 1 | 4): FuncDef {
  const P = {
    x: 0,
    dy: 1,
    dw: 2,
    table: 3,
    N: 4,
    H: 5,
    W: 6,
    C: 7,
    OH: 8,
    OW: 9,
    F: 10,
    KH: 11,
    KW: 12,
    sH: 13,
    pT: 14,
    fBegin: 15,
    fEnd: 16,
    xStride: 17,
    xRowBytes: 18,
    dyPixBytes: 19,
  };
  const L = {
    n: 20,
    oh: 21,
    kh: 22,
    ih: 23,
    xRow: 24,
    dyRow: 25,
    t: 26,
    tp: 27,
    xBase: 28,
    dyBase: 29,
    dwBase: 30,
    count: 31,
    c0: 32,
    f0: 33,
    p: 34,
    xp: 35,
    dp: 36,
    wp: 37,
    rowBytes: 38,
    tapBytes: 39,
    xv: 40,
    d0: 41,
    d1: 42,
    s: 43,
  };
  const i32Locals = 20; // n .. tapBytes
  // acc[2r + h]: channel row r, filter half h (4 filters each).
  const acc = Array.from({ length: 2 * rows }, (_, i) => 44 + i);
  const accAddr = (r: number): Code => [get(L.wp), get(L.rowBytes), i32(r), op.i32Mul, op.i32Add];
  const loadAcc = acc.map((a, i) => [accAddr(i >> 1), v128Load((i & 1) * 16), set(a)]);
  const storeAcc = acc.map((a, i) => [accAddr(i >> 1), get(a), v128Store((i & 1) * 16)]);
  const fma = (r: number): Code => [
    rows === 4 ? splatLane(L.xv, r) : get(L.xv),
    set(L.s),
    [get(acc[2 * r]!), get(L.s), get(L.d0), f32x4Mul, f32x4Add, set(acc[2 * r]!)],
    [get(acc[2 * r + 1]!), get(L.s), get(L.d1), f32x4Mul, f32x4Add, set(acc[2 * r + 1]!)],
  ];
  const mul = (...terms: Code[]): Code => [terms[0]!, ...terms.slice(1).map((t) => [t, op.i32Mul])];
  const tileLoops: Code = [
    i32(0),
    set(L.c0),
    loop(L.c0, P.C, rows, [
      get(P.fBegin),
      set(L.f0),
      loop(L.f0, P.fEnd, 8, [
        // wp = dwBase + (c0 * F + f0) * 4
        [
          get(L.dwBase),
          mul(get(L.c0), get(P.F)),
          get(L.f0),
          op.i32Add,
          i32(4),
          op.i32Mul,
          op.i32Add,
          set(L.wp),
        ],
        loadAcc,
        [get(L.xBase), get(L.c0), i32(4), op.i32Mul, op.i32Add, set(L.xp)],
        [get(L.dyBase), get(L.f0), i32(4), op.i32Mul, op.i32Add, set(L.dp)],
        i32(0),
        set(L.p),
        loop(L.p, L.count, 1, [
          // 4 channels as a vector, or 1 channel splatted to all lanes.
          [get(L.xp), rows === 4 ? v128Load(0) : [f32Load(0), f32x4Splat], set(L.xv)],
          [get(L.dp), v128Load(0), set(L.d0)],
          [get(L.dp), v128Load(16), set(L.d1)],
          Array.from({ length: rows }, (_, r) => fma(r)),
          addTo(L.xp, get(P.xStride)),
          addTo(L.dp, get(P.dyPixBytes)),
        ]),
        storeAcc,
      ]),
    ]),
  ];
  return {
    name: `convFilterGrad${rows}`,
    params: Array.from({ length: 20 }, () => 'i32' as const),
    locals: [
      ...Array.from({ length: i32Locals }, () => 'i32' as const),
      ...(['v128', 'v128', 'v128', 'v128'] as const),
      ...acc.map(() => 'v128' as const),
    ],
    body: [
      [get(P.F), i32(4), op.i32Mul, set(L.rowBytes)],
      [mul(get(P.C), get(P.F), i32(4)), set(L.tapBytes)],
      i32(0),
      set(L.n),
      loop(L.n, P.N, 1, [
        i32(0),
        set(L.oh),
        loop(L.oh, P.OH, 1, [
          // dyRow = dy + ((n * OH + oh) * OW * F) * 4
          [
            get(P.dy),
            mul([mul(get(L.n), get(P.OH)), get(L.oh), op.i32Add], get(P.OW), get(P.dyPixBytes)),
            op.i32Add,
          ],
          set(L.dyRow),
          i32(0),
          set(L.kh),
          loop(L.kh, P.KH, 1, [
            // ih = oh * sH + kh - pT; rows outside x (padding) contribute nothing.
            [mul(get(L.oh), get(P.sH)), get(L.kh), op.i32Add, get(P.pT), op.i32Sub, set(L.ih)],
            ifThen(
              [get(L.ih), get(P.H), op.i32LtU],
              [
                // xRow = x + (n * H + ih) * xRowBytes
                [get(P.x), mul([mul(get(L.n), get(P.H)), get(L.ih), op.i32Add], get(P.xRowBytes))],
                op.i32Add,
                set(L.xRow),
                // dwBase = dw + kh * KW * C * F * 4
                [get(P.dw), mul(get(L.kh), get(P.KW), get(L.tapBytes)), op.i32Add, set(L.dwBase)],
                [get(P.table), set(L.tp)],
                i32(0),
                set(L.t),
                loop(L.t, P.KW, 1, [
                  [get(L.xRow), get(L.tp), i32Load(0), op.i32Add, set(L.xBase)],
                  [get(L.dyRow), get(L.tp), i32Load(4), op.i32Add, set(L.dyBase)],
                  [get(L.tp), i32Load(8), set(L.count)],
                  ifThen([get(L.count), i32(0), op.i32Ne], tileLoops),
                  addTo(L.tp, i32(12)),
                  addTo(L.dwBase, get(L.tapBytes)),
                ]),
              ],
            ),
          ]),
        ]),
      ]),
    ],
  };
}

/** Little-endian bytes of four float32 or int32 lanes. */
function lanesOf(values: number[], kind: 'f32' | 'i32'): number[] {
  const buf = Buffer.alloc(16);
  values.forEach((v, i) => (kind === 'f32' ? buf.writeFloatLE(v, 4 * i) : buf.writeInt32LE(v, 4 * i)));
  return [...buf];
}

/**
 * Max-pool gradient over `N` whole images (NHWC): for each output pixel and
 * channel, finds the first maximum of x over its pooling window and adds dy
 * there in dx (dx address = x address + delta; dx zeroed by the caller).
 * Channels go four to a vector, the last C % 4 one at a time (splatted; only
 * lane 0 is used).
 */
function maxPoolGrad(): FuncDef {
  const P = {
    x: 0,
    dy: 1,
    delta: 2,
    N: 3,
    H: 4,
    W: 5,
    C: 6,
    OH: 7,
    OW: 8,
    fH: 9,
    fW: 10,
    sH: 11,
    sW: 12,
    pT: 13,
    pL: 14,
  };
  const L = {
    n: 15,
    oh: 16,
    ow: 17,
    h0: 18,
    h1: 19,
    w0: 20,
    w1: 21,
    dyp: 22,
    cb: 23,
    cEnd: 24,
    r: 25,
    q: 26,
  };
  const V = { rowPtr: 27, pp: 28, addr: 29, xBase: 30, rows: 31, cols: 32, pixStride: 33, rowStride: 34 };
  const [best, pos, v, m] = [35, 36, 37, 38];
  const max = (a: Code, b: Code): Code => [a, b, a, b, op.i32GtS, op.select];
  const min = (a: Code, b: Code): Code => [a, b, a, b, op.i32LtS, op.select];
  // Input rows (or columns) [lo, hi) under output position o: o * stride - pad + [0, f), clipped to [0, size).
  const windowRange = (
    o: number,
    stride: number,
    pad: number,
    f: number,
    size: number,
    lo: number,
    hi: number,
  ): Code => {
    const start: Code = [get(o), get(stride), op.i32Mul, get(pad), op.i32Sub];
    return [
      [max(start, i32(0)), set(lo)],
      [min([start, get(f), op.i32Add], get(size)), set(hi)],
    ];
  };
  const scatter = (lane: number): Code => [
    ifThen(
      [get(pos), i32x4ExtractLane(lane), i32(-1), op.i32Ne],
      [
        [get(pos), i32x4ExtractLane(lane), get(P.delta), op.i32Add, set(V.addr)],
        get(V.addr),
        [get(V.addr), f32Load(0), get(L.dyp), get(L.cb), op.i32Add, f32Load(4 * lane), f32Add],
        f32Store(0),
      ],
    ),
  ];
  // One channel group (`lanes` channels from byte cb) of one window.
  const channels = (lanes: 4 | 1): Code => [
    [v128Const(lanesOf([-Infinity, -Infinity, -Infinity, -Infinity], 'f32')), set(best)],
    [v128Const(lanesOf([-1, -1, -1, -1], 'i32')), set(pos)],
    [get(V.xBase), get(L.cb), op.i32Add, set(V.rowPtr)],
    i32(0),
    set(L.r),
    loop(L.r, V.rows, 1, [
      [get(V.rowPtr), set(V.pp)],
      i32(0),
      set(L.q),
      loop(L.q, V.cols, 1, [
        [get(V.pp), lanes === 4 ? v128Load(0) : [f32Load(0), f32x4Splat], set(v)],
        // Strictly greater: the first maximum wins (as on the cpu backend).
        [get(v), get(best), f32x4Gt, set(m)],
        [get(v), get(best), get(m), v128Bitselect, set(best)],
        [
          get(V.pp),
          i32x4Splat,
          v128Const(lanesOf([0, 4, 8, 12], 'i32')),
          i32x4Add,
          get(pos),
          get(m),
          v128Bitselect,
        ],
        set(pos),
        addTo(V.pp, get(V.pixStride)),
      ]),
      addTo(V.rowPtr, get(V.rowStride)),
    ]),
    Array.from({ length: lanes }, (_, lane) => scatter(lane)),
  ];
  const windowBody: Code = [
    // xBase = x + ((n * H + h0) * W + w0) * C * 4
    [get(L.n), get(P.H), op.i32Mul, get(L.h0), op.i32Add, get(P.W), op.i32Mul, get(L.w0), op.i32Add],
    [get(V.pixStride), op.i32Mul, get(P.x), op.i32Add, set(V.xBase)],
    [get(L.h1), get(L.h0), op.i32Sub, set(V.rows)],
    [get(L.w1), get(L.w0), op.i32Sub, set(V.cols)],
    // Four channels a vector while four remain, then one at a time.
    i32(0),
    set(L.cb),
    loop(L.cb, L.cEnd, 16, channels(4)),
    loop(L.cb, V.pixStride, 4, channels(1)),
  ];
  return {
    name: 'maxPoolGrad',
    params: Array.from({ length: 15 }, () => 'i32' as const),
    locals: [...Array.from({ length: 20 }, () => 'i32' as const), 'v128', 'v128', 'v128', 'v128'],
    body: [
      [get(P.C), i32(4), op.i32Mul, tee(V.pixStride), i32(-16), op.i32And, set(L.cEnd)],
      [get(P.W), get(V.pixStride), op.i32Mul, set(V.rowStride)],
      [get(P.dy), set(L.dyp)],
      i32(0),
      set(L.n),
      loop(L.n, P.N, 1, [
        i32(0),
        set(L.oh),
        loop(L.oh, P.OH, 1, [
          windowRange(L.oh, P.sH, P.pT, P.fH, P.H, L.h0, L.h1),
          i32(0),
          set(L.ow),
          loop(L.ow, P.OW, 1, [
            windowRange(L.ow, P.sW, P.pL, P.fW, P.W, L.w0, L.w1),
            ifThen([get(L.h1), get(L.h0), op.i32GtS, get(L.w1), get(L.w0), op.i32GtS, op.i32And], windowBody),
            addTo(L.dyp, get(V.pixStride)),
          ]),
        ]),
      ]),
    ],
  };
}

/**
 * y = x + pattern, the pattern repeated: `blocks` blocks of `blockBytes`
 * bytes (a multiple of 16) each. A per-channel bias over [rows, C] is this
 * with the bias repeated to lcm(C, 4) floats, so any C runs four lanes wide.
 */
function addPattern(): FuncDef {
  const [x, y, blocks, pattern, blockBytes, i, end, j] = [0, 1, 2, 3, 4, 5, 6, 7];
  return {
    name: 'addPattern',
    params: ['i32', 'i32', 'i32', 'i32', 'i32'],
    locals: ['i32', 'i32', 'i32'],
    body: [
      [get(blocks), get(blockBytes), op.i32Mul, set(end)],
      i32(0),
      set(i),
      // Step 0: i advances by the (run-time) block size at the end of the body.
      loop(i, end, 0, [
        i32(0),
        set(j),
        loop(j, blockBytes, 16, [
          [get(y), get(i), op.i32Add, get(j), op.i32Add],
          [get(x), get(i), op.i32Add, get(j), op.i32Add, v128Load(0)],
          [get(pattern), get(j), op.i32Add, v128Load(0)],
          f32x4Add,
          v128Store(0),
        ]),
        addTo(i, get(blockBytes)),
      ]),
    ],
  };
}

/**
 * One SGD step, as src/training/sgd.ts does it with tfjs ops (each product and sum rounded to
 * float32 in the same order, so the same bits): g' = g + w * wd (wd > 0); buf = buf * m + g' in place
 * and u = nesterov ? g' + buf * m : buf (m > 0; else u = g'); wOut = w - u * lr. n floats; four at a
 * time, then the rest one by one.
 */
function sgdUpdate(): FuncDef {
  const [w, wOut, g, buf, n, lr, m, wd, nesterov] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const [i, end4, wv, gv, bv, uv, ws, gs, bs, us] = [9, 10, 11, 12, 13, 14, 15, 16, 17, 18];
  // The same step on vectors (v128 ops, constants splatted) or on scalars.
  const step = (vector: boolean): Code => {
    const load = vector ? v128Load(0) : f32Load(0);
    const store = vector ? v128Store(0) : f32Store(0);
    const [add, sub, mul] = vector ? [f32x4Add, f32x4Sub, f32x4Mul] : [f32Add, f32Sub, f32Mul];
    const k = (local: number): Code => (vector ? [get(local), f32x4Splat] : get(local));
    const [W, G, B, U] = vector ? [wv, gv, bv, uv] : [ws, gs, bs, us];
    const at = (base: number): Code => [get(base), get(i), op.i32Add];
    return [
      [at(w), load, set(W)],
      [at(g), load, set(G)],
      ifThen([get(wd), f32Const(0), op.f32Gt], [get(G), get(W), k(wd), mul, add, set(G)]),
      [get(G), set(U)],
      ifThen(
        [get(m), f32Const(0), op.f32Gt],
        [
          [at(buf), load, k(m), mul, get(G), add, set(B)],
          [at(buf), get(B), store],
          [get(B), set(U)],
          ifThen([get(nesterov)], [get(G), get(B), k(m), mul, add, set(U)]),
        ],
      ),
      [at(wOut), get(W), get(U), k(lr), mul, sub, store],
    ];
  };
  return {
    name: 'sgdUpdate',
    params: ['i32', 'i32', 'i32', 'i32', 'i32', 'f32', 'f32', 'f32', 'i32'],
    locals: ['i32', 'i32', 'v128', 'v128', 'v128', 'v128', 'f32', 'f32', 'f32', 'f32'],
    body: [
      // Byte offsets: i runs over the data, end4 stops the vector loop at a multiple of 16 bytes.
      [get(n), i32(4), op.i32Mul, set(n)],
      [get(n), i32(-16), op.i32And, set(end4)],
      i32(0),
      set(i),
      loop(i, end4, 16, step(true)),
      loop(i, n, 4, step(false)),
    ],
  };
}

/** Compiled modules: for a plain and for a shared (threaded build) memory. */
const compiled = new Map<boolean, object | null>();
const instances = new WeakMap<WasmMemory, SimdKernels>();

/**
 * Our kernels as a compiled WebAssembly.Module, importing a plain or a shared
 * memory; null where WebAssembly SIMD is not available.
 */
export function simdModule(sharedMemory: boolean): object | null {
  let mod = compiled.get(sharedMemory);
  if (mod === undefined) {
    const bytes = buildModule(
      [
        bnStats(),
        bnApply(),
        bnGradStats(),
        bnGradApply(),
        convFilterGrad(4),
        convFilterGrad(1),
        maxPoolGrad(),
        addPattern(),
        sgdUpdate(),
      ],
      sharedMemory,
    );
    mod = WA.validate(bytes) ? new WA.Module(bytes) : null;
    compiled.set(sharedMemory, mod);
  }
  return mod;
}

/**
 * The kernels bound to `memory`, or null where WebAssembly SIMD is not
 * available (callers then use their plain JS loops).
 */
export function simdKernels(memory: WasmMemory | undefined): SimdKernels | null {
  if (memory === undefined) return null;
  let k = instances.get(memory);
  if (k !== undefined) return k;
  const shared = typeof SharedArrayBuffer !== 'undefined' && memory.buffer instanceof SharedArrayBuffer;
  const mod = simdModule(shared);
  if (mod === null) return null;
  const instance = new WA.Instance(mod, { env: { memory } });
  // Cast: the exports are the functions defined above.
  k = instance.exports as unknown as SimdKernels;
  instances.set(memory, k);
  return k;
}
