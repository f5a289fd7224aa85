// A small pickle reader for data files such as CIFAR-10's Python batches. It never runs anything:
// globals become PickleGlobal names, calls become PickleCall records, and only a few known pure
// data constructors (bytes via _codecs.encode, numpy arrays and dtypes) are rebuilt as plain values.

export type PickleValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PickleValue[]
  | PickleDict
  | PickleGlobal
  | PickleCall
  | NumpyDtype
  | NumpyArray;

/** A module attribute named by GLOBAL/STACK_GLOBAL; recorded, never imported. */
export class PickleGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

/** A call (REDUCE/NEWOBJ) of something this reader does not rebuild, kept as data. */
export class PickleCall {
  state: PickleValue | undefined = undefined;
  constructor(
    readonly callable: PickleValue,
    readonly args: PickleValue[],
  ) {}
}

/** A dict; keys are kept as pickled (bytes, str, int, ...). */
export class PickleDict {
  readonly entries: Array<[PickleValue, PickleValue]> = [];
  /** Entry index by key, for the key types that compare by value in Python. */
  private readonly index = new Map<string, number>();

  set(key: PickleValue, value: PickleValue): void {
    const id = keyId(key);
    const at = id === undefined ? undefined : this.index.get(id);
    if (at !== undefined) {
      this.entries[at] = [key, value];
      return;
    }
    if (id !== undefined) this.index.set(id, this.entries.length);
    this.entries.push([key, value]);
  }

  /** Looks a key up by its text, matching str keys and bytes keys (b'data' as 'data') alike. */
  get(key: string): PickleValue | undefined {
    const at = this.index.get(`s:${key}`) ?? this.index.get(`b:${key}`);
    return at === undefined ? undefined : this.entries[at]![1];
  }
}

function keyId(key: PickleValue): string | undefined {
  if (typeof key === 'string') return `s:${key}`;
  if (key instanceof Uint8Array) return `b:${latin1(key)}`;
  if (typeof key === 'number' || typeof key === 'bigint') return `n:${key}`;
  return undefined;
}

export class NumpyDtype {
  /** Byte order from the dtype's BUILD state: '|' (not applicable), '<' or '>'. */
  byteOrder = '|';
  constructor(readonly descr: string) {}
  /** E.g. 'u1', '<i8'. */
  get str(): string {
    return this.byteOrder === '|' ? this.descr : `${this.byteOrder}${this.descr}`;
  }
}

export class NumpyArray {
  shape: number[] = [];
  dtype: NumpyDtype | undefined = undefined;
  fortranOrder = false;
  /** Raw element bytes, in C order unless fortranOrder. */
  data: Uint8Array = new Uint8Array(0);
}

function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}

const MARK = Symbol('mark');
type StackItem = PickleValue | typeof MARK;

const NUMPY_RECONSTRUCT = new Set(['numpy.core.multiarray._reconstruct', 'numpy._core.multiarray._reconstruct']);
const NUMPY_FROMBUFFER = new Set(['numpy.core.numeric._frombuffer', 'numpy._core.numeric._frombuffer']);

/** Reads one pickle from `bytes`. Throws on unknown opcodes, truncation or malformed data. */
export function readPickle(bytes: Uint8Array, name = 'pickle'): PickleValue {
  return new Reader(bytes, name).run();
}

class Reader {
  private pos = 0;
  private stack: StackItem[] = [];
  private marks: number[] = [];
  private memo = new Map<number, PickleValue>();
  private readonly view: DataView;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly name: string,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  private fail(message: string): never {
    throw new Error(`${this.name}: ${message} (at byte ${this.pos})`);
  }

  private need(n: number): void {
    if (n < 0 || this.pos + n > this.bytes.length) this.fail('unexpected end of data');
  }

  private u8(): number {
    this.need(1);
    return this.bytes[this.pos++]!;
  }
  private u16(): number {
    this.need(2);
    const v = this.view.getUint16(this.pos, true);
    this.pos += 2;
    return v;
  }
  private u32(): number {
    this.need(4);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  private i32(): number {
    this.need(4);
    const v = this.view.getInt32(this.pos, true);
    this.pos += 4;
    return v;
  }
  private u64(): number {
    this.need(8);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.fail('length too large');
    return Number(v);
  }
  private take(n: number): Uint8Array {
    this.need(n);
    const out = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  private utf8(n: number): string {
    return Buffer.from(this.take(n)).toString('utf8');
  }
  /** A newline-terminated text argument (GLOBAL, GET, PUT, INT, ...). */
  private line(): string {
    const end = this.bytes.indexOf(0x0a, this.pos);
    if (end < 0) this.fail('unexpected end of data in a text argument');
    const text = Buffer.from(this.bytes.subarray(this.pos, end)).toString('latin1');
    this.pos = end + 1;
    return text;
  }

  private push(v: StackItem): void {
    this.stack.push(v);
  }
  private pop(): PickleValue {
    if (this.stack.length === 0) this.fail('stack underflow');
    const v = this.stack.pop()!;
    if (v === MARK) this.fail('unexpected MARK on the stack');
    return v;
  }
  private top(): PickleValue {
    const v = this.stack[this.stack.length - 1];
    if (v === undefined || v === MARK) this.fail('stack underflow');
    return v;
  }
  /** Pops everything above the last MARK, and the MARK. */
  private popMark(): PickleValue[] {
    const at = this.marks.pop();
    if (at === undefined) this.fail('no MARK on the stack');
    const items = this.stack.splice(at);
    items.shift(); // the MARK itself
    if (items.some((v) => v === MARK)) this.fail('nested MARK');
    return items as PickleValue[];
  }
  private markPush(): void {
    this.marks.push(this.stack.length);
    this.stack.push(MARK);
  }
  private memoGet(i: number): void {
    const v = this.memo.get(i);
    if (v === undefined) this.fail(`memo key ${i} not defined`);
    this.push(v);
  }

  run(): PickleValue {
    for (;;) {
      const start = this.pos;
      const op = this.u8();
      switch (op) {
        case 0x80: // PROTO
          if (this.u8() > 5) this.fail('unsupported pickle protocol');
          break;
        case 0x95: // FRAME: only a length hint for buffered readers
          this.u64();
          break;
        case 0x2e: // STOP
          return this.pop();
        case 0x28: // MARK
          this.markPush();
          break;
        case 0x30: // POP
          if (this.stack[this.stack.length - 1] === MARK) this.popMark();
          else this.pop();
          break;
        case 0x31: // POP_MARK
          this.popMark();
          break;
        case 0x32: // DUP
          this.push(this.top());
          break;

        case 0x4e: // NONE
          this.push(null);
          break;
        case 0x88: // NEWTRUE
          this.push(true);
          break;
        case 0x89: // NEWFALSE
          this.push(false);
          break;
        case 0x4b: // BININT1
          this.push(this.u8());
          break;
        case 0x4d: // BININT2
          this.push(this.u16());
          break;
        case 0x4a: // BININT
          this.push(this.i32());
          break;
        case 0x8a: // LONG1
          this.push(this.long(this.u8()));
          break;
        case 0x8b: // LONG4
          this.push(this.long(this.i32()));
          break;
        case 0x49: {
          // INT (text); protocol 0 spells booleans as 01/00
          const text = this.line();
          if (text === '01') this.push(true);
          else if (text === '00') this.push(false);
          else this.push(this.parseInt(text));
          break;
        }
        case 0x4c: // LONG (text, trailing L)
          this.push(this.parseInt(this.line().replace(/L$/, '')));
          break;
        case 0x47: // BINFLOAT
          this.need(8);
          this.push(this.view.getFloat64(this.pos, false));
          this.pos += 8;
          break;

        // Python 2 str: kept as bytes, as Python 3 does with encoding='bytes'
        case 0x55: // SHORT_BINSTRING
          this.push(this.take(this.u8()));
          break;
        case 0x54: {
          // BINSTRING
          const n = this.i32();
          if (n < 0) this.fail('negative BINSTRING length');
          this.push(this.take(n));
          break;
        }
        case 0x43: // SHORT_BINBYTES
          this.push(this.take(this.u8()));
          break;
        case 0x42: // BINBYTES
          this.push(this.take(this.u32()));
          break;
        case 0x8e: // BINBYTES8
        case 0x96: // BYTEARRAY8
          this.push(this.take(this.u64()));
          break;
        case 0x98: // READONLY_BUFFER: flags only
          break;
        case 0x97: // NEXT_BUFFER
          this.fail('out-of-band buffers (NEXT_BUFFER) are not supported');
          break;
        case 0x8c: // SHORT_BINUNICODE
          this.push(this.utf8(this.u8()));
          break;
        case 0x58: // BINUNICODE
          this.push(this.utf8(this.u32()));
          break;
        case 0x8d: // BINUNICODE8
          this.push(this.utf8(this.u64()));
          break;

        case 0x5d: // EMPTY_LIST
          this.push([]);
          break;
        case 0x6c: // LIST
          this.push(this.popMark());
          break;
        case 0x61: {
          // APPEND
          const v = this.pop();
          this.listOnTop().push(v);
          break;
        }
        case 0x65: {
          // APPENDS
          const items = this.popMark();
          this.listOnTop().push(...items);
          break;
        }
        case 0x29: // EMPTY_TUPLE
          this.push([]);
          break;
        case 0x74: // TUPLE
          this.push(this.popMark());
          break;
        case 0x85: // TUPLE1
          this.push([this.pop()]);
          break;
        case 0x86: {
          // TUPLE2
          const b = this.pop();
          const a = this.pop();
          this.push([a, b]);
          break;
        }
        case 0x87: {
          // TUPLE3
          const c = this.pop();
          const b = this.pop();
          const a = this.pop();
          this.push([a, b, c]);
          break;
        }
        case 0x7d: // EMPTY_DICT
          this.push(new PickleDict());
          break;
        case 0x64: {
          // DICT
          const items = this.popMark();
          this.push(this.fillDict(new PickleDict(), items));
          break;
        }
        case 0x73: {
          // SETITEM
          const value = this.pop();
          const key = this.pop();
          this.dictOnTop().set(key, value);
          break;
        }
        case 0x75: {
          // SETITEMS
          const items = this.popMark();
          this.fillDict(this.dictOnTop(), items);
          break;
        }
        case 0x8f: // EMPTY_SET: sets become lists
          this.push([]);
          break;
        case 0x90: {
          // ADDITEMS
          const items = this.popMark();
          this.listOnTop().push(...items);
          break;
        }
        case 0x91: // FROZENSET
          this.push(this.popMark());
          break;

        case 0x68: // BINGET
          this.memoGet(this.u8());
          break;
        case 0x6a: // LONG_BINGET
          this.memoGet(this.u32());
          break;
        case 0x67: // GET
          this.memoGet(this.parseIndex(this.line()));
          break;
        case 0x71: // BINPUT
          this.memo.set(this.u8(), this.top());
          break;
        case 0x72: // LONG_BINPUT
          this.memo.set(this.u32(), this.top());
          break;
        case 0x70: // PUT
          this.memo.set(this.parseIndex(this.line()), this.top());
          break;
        case 0x94: // MEMOIZE
          this.memo.set(this.memo.size, this.top());
          break;

        case 0x63: {
          // GLOBAL
          const module = this.line();
          const name = this.line();
          this.push(new PickleGlobal(module, name));
          break;
        }
        case 0x93: {
          // STACK_GLOBAL
          const name = this.pop();
          const module = this.pop();
          if (typeof module !== 'string' || typeof name !== 'string') this.fail('STACK_GLOBAL needs two strings');
          this.push(new PickleGlobal(module, name));
          break;
        }
        case 0x52: {
          // REDUCE
          const args = this.pop();
          const callable = this.pop();
          if (!Array.isArray(args)) this.fail('REDUCE arguments are not a tuple');
          this.push(this.call(callable, args));
          break;
        }
        case 0x81: {
          // NEWOBJ
          const args = this.pop();
          const cls = this.pop();
          if (!Array.isArray(args)) this.fail('NEWOBJ arguments are not a tuple');
          this.push(new PickleCall(cls, args));
          break;
        }
        case 0x92: {
          // NEWOBJ_EX: keyword arguments are dropped with the call kept as a record
          this.pop();
          const args = this.pop();
          const cls = this.pop();
          if (!Array.isArray(args)) this.fail('NEWOBJ_EX arguments are not a tuple');
          this.push(new PickleCall(cls, args));
          break;
        }
        case 0x62: {
          // BUILD
          const state = this.pop();
          this.build(this.top(), state);
          break;
        }
        default:
          this.pos = start;
          this.fail(`unsupported pickle opcode 0x${op.toString(16).padStart(2, '0')}`);
      }
    }
  }

  private long(n: number): number | bigint {
    if (n < 0) this.fail('negative LONG length');
    const b = this.take(n);
    if (n === 0) return 0;
    let v = 0n;
    for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
    if (b[n - 1]! & 0x80) v -= 1n << BigInt(8 * n); // two's complement
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }

  private parseInt(text: string): number | bigint {
    if (!/^[-+]?\d+$/.test(text)) this.fail(`bad integer ${JSON.stringify(text)}`);
    const v = BigInt(text);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }

  private parseIndex(text: string): number {
    const v = this.parseInt(text);
    if (typeof v !== 'number' || v < 0) this.fail(`bad memo index ${JSON.stringify(text)}`);
    return v;
  }

  private listOnTop(): PickleValue[] {
    const target = this.top();
    if (!Array.isArray(target)) this.fail('APPEND target is not a list');
    return target;
  }

  private dictOnTop(): PickleDict {
    const target = this.top();
    if (!(target instanceof PickleDict)) this.fail('SETITEM target is not a dict');
    return target;
  }

  private fillDict(dict: PickleDict, items: PickleValue[]): PickleDict {
    if (items.length % 2 !== 0) this.fail('odd number of dict items');
    for (let i = 0; i < items.length; i += 2) dict.set(items[i]!, items[i + 1]!);
    return dict;
  }

  /** REDUCE: rebuilds the few known pure data constructors, records anything else. */
  private call(callable: PickleValue, args: PickleValue[]): PickleValue {
    if (!(callable instanceof PickleGlobal)) return new PickleCall(callable, args);
    const name = callable.qualifiedName;
    if (name === '_codecs.encode') {
      // How Python 3 pickles bytes at protocol < 3: encode(str, 'latin1')
      const [text, encoding] = args;
      if (typeof text === 'string' && (encoding === 'latin1' || encoding === 'latin-1')) {
        return new Uint8Array(Buffer.from(text, 'latin1'));
      }
    } else if (name === 'numpy.dtype') {
      const [descr] = args;
      const text = typeof descr === 'string' ? descr : descr instanceof Uint8Array ? latin1(descr) : undefined;
      if (text !== undefined) return new NumpyDtype(text);
    } else if (NUMPY_RECONSTRUCT.has(name)) {
      return new NumpyArray(); // filled in by BUILD
    } else if (NUMPY_FROMBUFFER.has(name)) {
      // Protocol 5: _frombuffer(buffer, dtype, shape, order)
      const [buffer, dtype, shape, order] = args;
      if (buffer instanceof Uint8Array && dtype instanceof NumpyDtype && Array.isArray(shape)) {
        const array = new NumpyArray();
        array.data = buffer;
        array.dtype = dtype;
        array.shape = this.shape(shape);
        array.fortranOrder = order === 'F';
        return array;
      }
    }
    return new PickleCall(callable, args);
  }

  private shape(value: PickleValue[]): number[] {
    return value.map((d) => {
      if (typeof d !== 'number' || !Number.isInteger(d) || d < 0) this.fail('bad numpy array shape');
      return d;
    });
  }

  private build(target: PickleValue, state: PickleValue): void {
    if (target instanceof NumpyDtype) {
      // (version, byteorder, subarray, names, fields, elsize, alignment, flags)
      if (Array.isArray(state) && typeof state[1] === 'string') target.byteOrder = state[1];
      return;
    }
    if (target instanceof NumpyArray) {
      // (version, shape, dtype, is_fortran, raw data); very old numpy omits the version
      const s = Array.isArray(state) && state.length === 4 ? [1, ...state] : state;
      if (!Array.isArray(s) || s.length !== 5) this.fail('unexpected numpy array state');
      const [, shape, dtype, fortran, data] = s;
      if (!Array.isArray(shape) || !(dtype instanceof NumpyDtype)) this.fail('unexpected numpy array state');
      if (!(data instanceof Uint8Array)) {
        this.fail('numpy array without raw bytes (object arrays are not supported)');
      }
      target.shape = this.shape(shape);
      target.dtype = dtype;
      target.fortranOrder = fortran === true || fortran === 1;
      target.data = data;
      return;
    }
    if (target instanceof PickleCall) {
      target.state = state;
      return;
    }
    this.fail('BUILD on a value that is not an object');
  }
}
