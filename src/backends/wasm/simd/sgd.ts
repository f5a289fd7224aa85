// The SGD update's SIMD loop (src/backends/wasm/sgd.ts).
import {
  f32Add,
  f32Const,
  f32Load,
  f32Mul,
  f32Store,
  f32Sub,
  f32x4Add,
  f32x4Mul,
  f32x4Splat,
  f32x4Sub,
  func,
  get,
  i32,
  ifThen,
  loop,
  ofType,
  op,
  set,
  v128Load,
  v128Store,
  type Code,
  type FuncDef,
} from './asm.js';

export interface SgdSimd {
  /** See sgdUpdate below (nesterov: 0 or 1). */
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
}

/**
 * One SGD step, as src/training/sgd.ts does it with tfjs ops (each product and sum rounded to
 * float32 in the same order, so the same bits): g' = g + w * wd (wd > 0); buf = buf * m + g' in place
 * and u = nesterov ? g' + buf * m : buf (m > 0; else u = g'); wOut = w - u * lr. n floats; four at a
 * time, then the rest one by one.
 */
function sgdUpdate(): FuncDef {
  const params = {
    ...ofType('i32', 'w', 'wOut', 'g', 'buf', 'n'),
    ...ofType('f32', 'lr', 'm', 'wd'),
    ...ofType('i32', 'nesterov'),
  };
  return func('sgdUpdate', params, (p, locals) => {
    const { w, wOut, g, buf, n, lr, m, wd, nesterov } = p;
    const { i, end4 } = locals.named('i32', 'i', 'end4');
    const { wv, gv, bv, uv } = locals.named('v128', 'wv', 'gv', 'bv', 'uv');
    const { ws, gs, bs, us } = locals.named('f32', 'ws', 'gs', 'bs', 'us');
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
    return [
      // Byte offsets: i runs over the data, end4 stops the vector loop at a multiple of 16 bytes.
      [get(n), i32(4), op.i32Mul, set(n)],
      [get(n), i32(-16), op.i32And, set(end4)],
      i32(0),
      set(i),
      loop(i, end4, 16, step(true)),
      loop(i, n, 4, step(false)),
    ];
  });
}

export const sgdFuncs = (): FuncDef[] => [sgdUpdate()];
