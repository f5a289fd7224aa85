// The bias Add's SIMD loop (src/backends/wasm/add.ts).
import {
  addTo,
  f32x4Add,
  func,
  get,
  i32,
  loop,
  ofType,
  op,
  set,
  v128Load,
  v128Store,
  type FuncDef,
} from './asm.js';

export interface AddSimd {
  /** See addPattern below. */
  addPattern(x: number, y: number, blocks: number, pattern: number, blockBytes: number): void;
}

/**
 * y = x + pattern, the pattern repeated: `blocks` blocks of `blockBytes`
 * bytes (a multiple of 16) each. A per-channel bias over [rows, C] is this
 * with the bias repeated to lcm(C, 4) floats, so any C runs four lanes wide.
 */
function addPattern(): FuncDef {
  return func('addPattern', ofType('i32', 'x', 'y', 'blocks', 'pattern', 'blockBytes'), (p, locals) => {
    const { x, y, blocks, pattern, blockBytes } = p;
    const { i, end, j } = locals.named('i32', 'i', 'end', 'j');
    return [
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
    ];
  });
}

export const addFuncs = (): FuncDef[] => [addPattern()];
