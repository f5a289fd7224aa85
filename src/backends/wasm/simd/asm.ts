// A minimal WebAssembly binary writer: just enough to express our small SIMD
// loops as readable TypeScript and build the module at run time (no compiler
// or binary blobs in the repo). Functions take i32/f32 parameters, use locals,
// and read/write an imported memory (the tfjs wasm backend's heap).

export type ValType = 'i32' | 'f32' | 'f64' | 'v128';
const TYPE_CODE: Record<ValType, number> = { i32: 0x7f, f32: 0x7d, f64: 0x7c, v128: 0x7b };

/** Instruction bytes; nested arrays are flattened. */
export type Code = number | Code[];

function flat(code: Code, out: number[] = []): number[] {
  if (typeof code === 'number') out.push(code);
  else for (const c of code) flat(c, out);
  return out;
}

function uleb(v: number): number[] {
  const out: number[] = [];
  let n = v >>> 0;
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

function sleb(v: number): number[] {
  const out: number[] = [];
  let n = v | 0;
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}

function str(s: string): number[] {
  const bytes = [...Buffer.from(s, 'utf8')];
  return [...uleb(bytes.length), ...bytes];
}

function vec(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

function section(id: number, body: number[]): number[] {
  return [id, ...uleb(body.length), ...body];
}

// ---- instructions ----------------------------------------------------------

export const get = (i: number): Code => [0x20, uleb(i)];
export const set = (i: number): Code => [0x21, uleb(i)];
export const tee = (i: number): Code => [0x22, uleb(i)];
export const i32 = (v: number): Code => [0x41, sleb(v)];

export const op = {
  i32Ne: 0x47,
  i32Add: 0x6a,
  i32Sub: 0x6b,
  i32Mul: 0x6c,
  i32And: 0x71,
  i32GeU: 0x4f,
  i32LtU: 0x49,
  i32Eqz: 0x45,
  i32LtS: 0x48,
  i32GtS: 0x4a,
  f32Gt: 0x5e,
  drop: 0x1a,
  /** Pops a, b, cond; pushes a if cond else b. */
  select: 0x1b,
} as const;

/** memarg for a load/store: alignment as log2 bytes, constant byte offset. */
const memarg = (alignLog2: number, offset: number): number[] => [...uleb(alignLog2), ...uleb(offset)];
const simd = (opcode: number): Code => [0xfd, uleb(opcode)];

export const i32Load = (offset = 0): Code => [0x28, memarg(2, offset)];
export const f32Load = (offset = 0): Code => [0x2a, memarg(2, offset)];
export const f32Store = (offset = 0): Code => [0x38, memarg(2, offset)];
/** An f32 constant. */
export const f32Const = (v: number): Code => {
  const b = Buffer.alloc(4);
  b.writeFloatLE(v);
  return [0x43, ...b];
};
export const f32Add: Code = 0x92;
export const f32Sub: Code = 0x93;
export const f32Mul: Code = 0x94;
export const v128Load = (offset = 0): Code => [simd(0x00), memarg(4, offset)];
export const v128Store = (offset = 0): Code => [simd(0x0b), memarg(4, offset)];
export const f32x4Splat: Code = simd(0x13);
export const f32x4Add: Code = simd(0xe4);
export const f32x4Sub: Code = simd(0xe5);
export const f32x4Mul: Code = simd(0xe6);
export const f64x2Add: Code = simd(0xf0);
export const f64x2Mul: Code = simd(0xf2);
/** Lanes 0 and 1 of an f32x4 as an f64x2. */
export const f64x2PromoteLow: Code = simd(0x5f);
/** Moves lanes 2,3 of the top v128 into lanes 0,1 (two operands, same vector). */
export const swapHalves = (local: number): Code => [
  get(local),
  get(local),
  simd(0x0d),
  [8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7],
];

/** Lane `lane` of the f32x4 in `local`, splatted to all four lanes. */
export const splatLane = (local: number, lane: number): Code => {
  const b = [4 * lane, 4 * lane + 1, 4 * lane + 2, 4 * lane + 3];
  return [get(local), get(local), simd(0x0d), [...b, ...b, ...b, ...b]];
};

/** `while (counter < end) { body; counter += step }` (unsigned compare). */
export function loop(counter: number, end: number, step: number, body: Code): Code {
  return [
    [0x02, 0x40], // block
    [0x03, 0x40], // loop
    get(counter),
    get(end),
    op.i32GeU,
    [0x0d, 1], // br_if to the block's end
    body,
    get(counter),
    i32(step),
    op.i32Add,
    set(counter),
    [0x0c, 0], // br to the loop's start
    0x0b,
    0x0b,
  ];
}

/** `if (cond) { body }`; cond leaves an i32 on the stack. */
export function ifThen(cond: Code, body: Code): Code {
  return [cond, [0x04, 0x40], body, 0x0b];
}

/** A v128 constant from four 32-bit lanes given as raw little-endian bytes. */
export function v128Const(bytes: number[]): Code {
  if (bytes.length !== 16) throw new Error('v128Const needs 16 bytes');
  return [simd(0x0c), bytes];
}

export const i32x4Splat: Code = simd(0x11);
export const i32x4Add: Code = simd(0xae);
export const i32x4ExtractLane = (lane: number): Code => [simd(0x1b), lane];
export const f32x4Gt: Code = simd(0x44);
/** (a & mask) | (b & ~mask), operands pushed as a, b, mask. */
export const v128Bitselect: Code = simd(0x52);

/** `local += amount` for i32 locals. */
export function addTo(local: number, amount: Code): Code {
  return [get(local), amount, op.i32Add, set(local)];
}

// ---- module ----------------------------------------------------------------

export interface FuncDef {
  name: string;
  params: ValType[];
  /** Extra locals after the parameters (indices continue from params). */
  locals: ValType[];
  body: Code;
}

/** The locals of a function being defined: each one declared where its index is handed out. */
export class Locals {
  /** Their types, in index order: the function's local declarations. */
  readonly types: ValType[] = [];
  private readonly names = new Set<string>();

  /** `first`: the first index after the parameters. */
  constructor(private readonly first: number) {}

  /** A new local of `type`; its index. */
  add(type: ValType): number {
    this.types.push(type);
    return this.first + this.types.length - 1;
  }

  /** New locals of `type`, indexed in the order named (each name once per function). */
  named<K extends string>(type: ValType, ...names: K[]): Record<K, number> {
    // Cast: every name gets its entry below.
    const out = {} as Record<K, number>;
    for (const name of names) {
      if (this.names.has(name)) throw new Error(`image-classifier: local '${name}' named twice`);
      this.names.add(name);
      out[name] = this.add(type);
    }
    return out;
  }
}

/** Parameters (or locals) of one type, for `func`'s parameter list: `{ ...ofType('i32', 'x', 'n') }`. */
export function ofType<K extends string>(type: ValType, ...names: K[]): Record<K, ValType> {
  // Cast: fromEntries types its keys as any string.
  return Object.fromEntries(names.map((n) => [n, type])) as Record<K, ValType>;
}

/**
 * A function with named parameters and locals: the parameters take indices 0.. in the order of
 * `params` (its keys' order), and `build` declares its locals through `locals` as it names them, so
 * the declarations and the indices the body uses cannot disagree.
 */
export function func<P extends Record<string, ValType>>(
  name: string,
  params: P,
  build: (p: Record<keyof P, number>, locals: Locals) => Code,
): FuncDef {
  const keys = Object.keys(params) as Array<keyof P>;
  // Cast: every parameter gets its index below.
  const indices = {} as Record<keyof P, number>;
  keys.forEach((k, i) => (indices[k] = i));
  const locals = new Locals(keys.length);
  const body = build(indices, locals);
  return { name, params: keys.map((k) => params[k]), locals: locals.types, body };
}

/**
 * A module importing `env.memory` and exporting the given functions. A shared
 * memory (threaded builds) must be imported as shared, with a maximum no
 * smaller than its own: we declare the 4 GiB wasm32 limit.
 */
export function buildModule(funcs: FuncDef[], sharedMemory = false): Uint8Array {
  const types = funcs.map((f) => [0x60, ...vec(f.params.map((p) => [TYPE_CODE[p]])), 0x00]);
  const limits = sharedMemory ? [0x03, ...uleb(0), ...uleb(65536)] : [0x00, ...uleb(0)];
  const imports = vec([[...str('env'), ...str('memory'), 0x02, ...limits]]);
  const funcSection = vec(funcs.map((_, i) => uleb(i)));
  const exports = vec(funcs.map((f, i) => [...str(f.name), 0x00, ...uleb(i)]));
  const bodies = funcs.map((f) => {
    const locals = vec(f.locals.map((t) => [1, TYPE_CODE[t]]));
    const body = [...locals, ...flat(f.body), 0x0b];
    return [...uleb(body.length), ...body];
  });
  return new Uint8Array([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vec(types)),
    ...section(2, imports),
    ...section(3, funcSection),
    ...section(7, exports),
    ...section(10, vec(bodies)),
  ]);
}
