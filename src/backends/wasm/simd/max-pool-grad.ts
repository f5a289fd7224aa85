// The max-pool gradient's SIMD pass (src/backends/wasm/max-pool-grad.ts).
import {
  addTo,
  f32Add,
  f32Load,
  f32Store,
  f32x4Gt,
  f32x4Splat,
  func,
  get,
  i32,
  i32x4Add,
  i32x4ExtractLane,
  i32x4Splat,
  ifThen,
  loop,
  ofType,
  op,
  set,
  tee,
  v128Bitselect,
  v128Const,
  v128Load,
  type Code,
  type FuncDef,
} from './asm.js';

export interface MaxPoolGradSimd {
  /** See maxPoolGrad below. */
  maxPoolGrad(
    x: number,
    dy: number,
    delta: number,
    N: number,
    H: number,
    W: number,
    C: number,
    OH: number,
    OW: number,
    fH: number,
    fW: number,
    sH: number,
    sW: number,
    pT: number,
    pL: number,
  ): void;
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
  const params = ofType(
    'i32',
    'x',
    'dy',
    'delta',
    'N',
    'H',
    'W',
    'C',
    'OH',
    'OW',
    'fH',
    'fW',
    'sH',
    'sW',
    'pT',
    'pL',
  );
  return func('maxPoolGrad', params, (P, locals) => {
    const L = locals.named('i32', 'n', 'oh', 'ow', 'h0', 'h1', 'w0', 'w1', 'dyp', 'cb', 'cEnd', 'r', 'q');
    const V = locals.named('i32', 'rowPtr', 'pp', 'addr', 'xBase', 'rows', 'cols', 'pixStride', 'rowStride');
    const { best, pos, v, m } = locals.named('v128', 'best', 'pos', 'v', 'm');
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
    return [
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
    ];
  });
}

export const maxPoolGradFuncs = (): FuncDef[] => [maxPoolGrad()];
