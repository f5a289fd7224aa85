// Batch norm's full-size passes (src/backends/wasm/batch-norm.ts): per-channel float64 sums and the
// per-channel affine maps, four channels a vector. Pointers are byte offsets into the heap; `c`
// (channels) must be a multiple of 4; accumulators are float64, two per 16 bytes.
import {
  addTo,
  f32x4Add,
  f32x4Mul,
  f32x4Sub,
  f64x2Add,
  f64x2Mul,
  f64x2PromoteLow,
  func,
  get,
  i32,
  loop,
  ofType,
  set,
  swapHalves,
  v128Load,
  v128Store,
  type Code,
  type FuncDef,
} from './asm.js';

export interface BatchNormSimd {
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
}

/** f64 accumulator at `ptr` (+0: lanes 0-1, +16: lanes 2-3) += promoted `v`. */
function accumulate(ptr: number, v: number): Code {
  return [
    [get(ptr), get(ptr), v128Load(0), get(v), f64x2PromoteLow, f64x2Add, v128Store(0)],
    [get(ptr), get(ptr), v128Load(16), swapHalves(v), f64x2PromoteLow, f64x2Add, v128Store(16)],
  ];
}

function bnStats(): FuncDef {
  return func('bnStats', ofType('i32', 'x', 'rows', 'c', 'sum', 'sumSq'), (p, locals) => {
    const { x, rows, c, sum, sumSq: sq } = p;
    const { r, j, xp, ap, qp } = locals.named('i32', 'r', 'j', 'xp', 'ap', 'qp');
    const { v, v2 } = locals.named('v128', 'v', 'v2');
    return [
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
    ];
  });
}

function bnApply(): FuncDef {
  return func('bnApply', ofType('i32', 'x', 'y', 'rows', 'c', 'scale', 'shift'), (p, locals) => {
    const { x, y, rows, c, scale, shift } = p;
    const { r, j, xp, yp, sp, hp } = locals.named('i32', 'r', 'j', 'xp', 'yp', 'sp', 'hp');
    return [
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
    ];
  });
}

function bnGradStats(): FuncDef {
  const params = ofType('i32', 'dy', 'x', 'mean', 'rows', 'c', 'sumDy', 'sumDyXc');
  return func('bnGradStats', params, (p, locals) => {
    const { dy, x, mean, rows, c, sumDy, sumDyXc } = p;
    const { r, j, dp, xp, mp, ap, bp } = locals.named('i32', 'r', 'j', 'dp', 'xp', 'mp', 'ap', 'bp');
    const { d, p: prod } = locals.named('v128', 'd', 'p');
    return [
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
          set(prod),
          accumulate(ap, d),
          accumulate(bp, prod),
          addTo(dp, i32(16)),
          addTo(xp, i32(16)),
          addTo(mp, i32(16)),
          addTo(ap, i32(32)),
          addTo(bp, i32(32)),
        ]),
      ]),
    ];
  });
}

function bnGradApply(): FuncDef {
  const params = ofType('i32', 'dy', 'x', 'dx', 'rows', 'c', 'a', 'b', 'mean', 'd');
  return func('bnGradApply', params, (p, locals) => {
    const { dy, x, dx, rows, c, a, b, mean, d } = p;
    const { r, j, dyp, xp, dxp, ap, bp, mp, dp } = locals.named(
      'i32',
      'r',
      'j',
      'dyp',
      'xp',
      'dxp',
      'ap',
      'bp',
      'mp',
      'dp',
    );
    return [
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
    ];
  });
}

/** The four passes, in the module's order. */
export const batchNormFuncs = (): FuncDef[] => [bnStats(), bnApply(), bnGradStats(), bnGradApply()];
