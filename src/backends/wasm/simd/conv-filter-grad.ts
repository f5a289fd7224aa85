// The Conv2D filter gradient's SIMD loop (src/backends/wasm/conv-grad.ts), in two register tilings.
import {
  addTo,
  f32Load,
  f32x4Add,
  f32x4Mul,
  f32x4Splat,
  func,
  get,
  i32,
  i32Load,
  ifThen,
  loop,
  ofType,
  op,
  set,
  splatLane,
  v128Load,
  v128Store,
  type Code,
  type FuncDef,
} from './asm.js';

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

export interface ConvFilterGradSimd {
  convFilterGrad4: ConvFilterGrad;
  convFilterGrad1: ConvFilterGrad;
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
  const params = ofType(
    'i32',
    'x',
    'dy',
    'dw',
    'table',
    'N',
    'H',
    'W',
    'C',
    'OH',
    'OW',
    'F',
    'KH',
    'KW',
    'sH',
    'pT',
    'fBegin',
    'fEnd',
    'xStride',
    'xRowBytes',
    'dyPixBytes',
  );
  return func(`convFilterGrad${rows}`, params, (P, locals) => {
    const L = {
      ...locals.named(
        'i32',
        'n',
        'oh',
        'kh',
        'ih',
        'xRow',
        'dyRow',
        't',
        'tp',
        'xBase',
        'dyBase',
        'dwBase',
        'count',
        'c0',
        'f0',
        'p',
        'xp',
        'dp',
        'wp',
        'rowBytes',
        'tapBytes',
      ),
      ...locals.named('v128', 'xv', 'd0', 'd1', 's'),
    };
    // acc[2r + h]: channel row r, filter half h (4 filters each).
    const acc = Array.from({ length: 2 * rows }, () => locals.add('v128'));
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
    return [
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
    ];
  });
}

/** Both tilings, in the module's order. */
export const convFilterGradFuncs = (): FuncDef[] => [convFilterGrad(4), convFilterGrad(1)];
