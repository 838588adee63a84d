/**
 * A RESTRICTED Python unpickler: enough of pickle protocols 2-5 to read a
 * PyTorch state_dict, and nothing that can reach arbitrary code or names.
 *
 * A pickle is a program for a stack machine; its only dangerous instructions
 * are the ones that look up a global by name (GLOBAL, STACK_GLOBAL, INST,
 * ...) and call it. Here a global resolves ONLY through the caller's
 * allow-list; any other name is rejected the moment it is read, before
 * anything is called, and the opcodes that name classes implicitly (INST, OBJ,
 * EXT*) are not implemented at all. Python values map to JS as:
 * str -> string, int -> number (bigint beyond 2^53), float -> number,
 * bool/None -> boolean/null, bytes -> Uint8Array, list and tuple -> Array,
 * dict -> PyDict.
 *
 * Works on Uint8Array only (no node: imports) so the browser build can use it.
 */
import { ExtdError } from '../utils/errors.js';

/** A Python dict (or OrderedDict): insertion-ordered, keys compared by value for str/int. */
export class PyDict {
  readonly map = new Map<unknown, unknown>();
  /** Instance attributes set by BUILD (e.g. state_dict's `_metadata`); kept, never interpreted. */
  attributes: unknown = undefined;
}

/** An allowed global. `call` implements REDUCE / NEWOBJ; without it the global is a plain value (e.g. a storage type). */
export interface PickleGlobal {
  call?: (args: unknown[]) => unknown;
}

export interface UnpickleOptions {
  /** Names the input in error messages (a file path, maybe with the part of the file). */
  source: string;
  /** Allowed globals by 'module.name'; every other global is refused. */
  globals: Readonly<Record<string, PickleGlobal>>;
  /** Resolves BINPERSID ids (PyTorch uses them for tensor storages); absent -> BINPERSID is refused. */
  persistentLoad?: (pid: unknown) => unknown;
}

/** A resolved allowed global on the stack. */
class GlobalRef {
  constructor(
    readonly qualname: string,
    readonly impl: PickleGlobal,
  ) {}
}

const MARK = Symbol('mark');

// Opcodes we deliberately do not implement, named so an error says what was met.
const UNSUPPORTED: Record<number, string> = {
  0x69: 'INST',
  0x6f: 'OBJ',
  0x82: 'EXT1',
  0x83: 'EXT2',
  0x84: 'EXT4',
  0x50: 'PERSID',
  0x49: 'INT',
  0x4c: 'LONG',
  0x46: 'FLOAT',
  0x53: 'STRING',
  0x56: 'UNICODE',
  0x70: 'PUT',
  0x67: 'GET',
  0x92: 'NEWOBJ_EX',
  0x8f: 'EMPTY_SET',
  0x90: 'ADDITEMS',
  0x91: 'FROZENSET',
  0x96: 'BYTEARRAY8',
  0x97: 'NEXT_BUFFER',
  0x98: 'READONLY_BUFFER',
};

export interface UnpickleResult {
  value: unknown;
  /** Offset just past the STOP opcode (legacy .pth files hold several pickles back to back). */
  end: number;
}

/** Run the pickle starting at `start` until its STOP opcode. */
export function unpickle(bytes: Uint8Array, start: number, opts: UnpickleOptions): UnpickleResult {
  const { source } = opts;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let pos = start;
  let opPos = start;
  let stack: unknown[] = [];
  const marks: unknown[][] = [];
  const memo = new Map<number, unknown>();

  const err = (msg: string): never => {
    throw new ExtdError(`${source}: ${msg} (pickle offset ${opPos})`);
  };
  const need = (n: number): number => {
    if (pos + n > bytes.length) err(`pickle truncated: needs ${n} more bytes at offset ${pos}, the data ends at ${bytes.length}`);
    const at = pos;
    pos += n;
    return at;
  };
  /** The next byte (need() has checked that it exists). */
  const byte = (): number => bytes[need(1)]!;
  const pop = (): unknown => {
    if (stack.length === 0) err('pickle stack underflow');
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0) err('pickle stack underflow');
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const items = stack;
    const prev = marks.pop();
    if (!prev) err('pickle MARK missing');
    stack = prev!;
    return items;
  };
  const text = (at: number, n: number): string => {
    try {
      return decoder.decode(bytes.subarray(at, at + n));
    } catch {
      return err('pickle string is not valid UTF-8');
    }
  };
  const resolveGlobal = (module: string, name: string): GlobalRef => {
    const qualname = `${module}.${name}`;
    const impl = Object.hasOwn(opts.globals, qualname) ? opts.globals[qualname] : undefined;
    if (!impl) err(`refusing pickle global '${qualname}' (allowed: ${Object.keys(opts.globals).join(', ')})`);
    return new GlobalRef(qualname, impl!);
  };
  const call = (fn: unknown, args: unknown, how: string): unknown => {
    if (!(fn instanceof GlobalRef) || !fn.impl.call) err(`pickle ${how} of ${describe(fn)}, which is not callable here`);
    if (!Array.isArray(args)) err(`pickle ${how} arguments are ${describe(args)}, expected a tuple`);
    return (fn as GlobalRef).impl.call!(args as unknown[]);
  };
  const setItems = (target: unknown, kv: unknown[]): void => {
    if (!(target instanceof PyDict)) err(`pickle SETITEM(S) on ${describe(target)}, expected a dict`);
    if (kv.length % 2 !== 0) err('pickle SETITEMS with an odd number of items');
    for (let i = 0; i < kv.length; i += 2) {
      const k = kv[i];
      if (typeof k !== 'string' && typeof k !== 'number' && typeof k !== 'bigint' && typeof k !== 'boolean' && k !== null) {
        err(`pickle dict key ${describe(k)} is not supported (str, int, bool, None only)`);
      }
      (target as PyDict).map.set(k, kv[i + 1]);
    }
  };
  const appendItems = (target: unknown, items: unknown[]): void => {
    if (!Array.isArray(target)) err(`pickle APPEND(S) on ${describe(target)}, expected a list`);
    (target as unknown[]).push(...items);
  };

  for (;;) {
    opPos = pos;
    const op = byte();
    switch (op) {
      case 0x80: {
        // PROTO
        const v = byte();
        if (v > 5) err(`pickle protocol ${v} is not supported (2-5)`);
        break;
      }
      case 0x95:
        need(8);
        break; // FRAME: a length hint only
      case 0x2e: {
        // STOP
        const value = pop();
        return { value, end: pos };
      }
      case 0x28:
        marks.push(stack);
        stack = [];
        break; // MARK
      case 0x7d:
        stack.push(new PyDict());
        break; // EMPTY_DICT
      case 0x5d:
        stack.push([]);
        break; // EMPTY_LIST
      case 0x29:
        stack.push([]);
        break; // EMPTY_TUPLE
      case 0x4e:
        stack.push(null);
        break; // NONE
      case 0x88:
        stack.push(true);
        break; // NEWTRUE
      case 0x89:
        stack.push(false);
        break; // NEWFALSE
      case 0x4b:
        stack.push(byte());
        break; // BININT1
      case 0x4d:
        stack.push(view.getUint16(need(2), true));
        break; // BININT2
      case 0x4a:
        stack.push(view.getInt32(need(4), true));
        break; // BININT
      case 0x8a: {
        // LONG1
        const n = byte();
        stack.push(littleEndianSigned(bytes.subarray(need(n), pos)));
        break;
      }
      case 0x8b: {
        // LONG4
        const n = view.getInt32(need(4), true);
        if (n < 0) err('pickle LONG4 with negative length');
        stack.push(littleEndianSigned(bytes.subarray(need(n), pos)));
        break;
      }
      case 0x47:
        stack.push(view.getFloat64(need(8), false));
        break; // BINFLOAT (big-endian)
      case 0x8c: {
        const n = byte();
        stack.push(text(need(n), n));
        break;
      } // SHORT_BINUNICODE
      case 0x58: {
        const n = view.getUint32(need(4), true);
        stack.push(text(need(n), n));
        break;
      } // BINUNICODE
      case 0x8d: {
        const n = u64(view, need(8));
        stack.push(text(need(n), n));
        break;
      } // BINUNICODE8
      // Python 2 str: bytes of unknown encoding; latin-1 keeps every byte.
      case 0x55: {
        const n = byte();
        stack.push(latin1(bytes.subarray(need(n), pos)));
        break;
      } // SHORT_BINSTRING
      case 0x54: {
        const n = view.getUint32(need(4), true);
        stack.push(latin1(bytes.subarray(need(n), pos)));
        break;
      } // BINSTRING
      case 0x43: {
        const n = byte();
        stack.push(bytes.slice(need(n), pos));
        break;
      } // SHORT_BINBYTES
      case 0x42: {
        const n = view.getUint32(need(4), true);
        stack.push(bytes.slice(need(n), pos));
        break;
      } // BINBYTES
      case 0x8e: {
        const n = u64(view, need(8));
        stack.push(bytes.slice(need(n), pos));
        break;
      } // BINBYTES8
      case 0x85:
        stack.push([pop()]);
        break; // TUPLE1
      case 0x86: {
        const b = pop();
        const a = pop();
        stack.push([a, b]);
        break;
      } // TUPLE2
      case 0x87: {
        const c = pop();
        const b = pop();
        const a = pop();
        stack.push([a, b, c]);
        break;
      } // TUPLE3
      // popMark() replaces `stack`, so take its result before naming `stack`.
      case 0x74: {
        const t = popMark();
        stack.push(t);
        break;
      } // TUPLE
      case 0x6c: {
        const l = popMark();
        stack.push(l);
        break;
      } // LIST
      case 0x64: {
        const items = popMark();
        const d = new PyDict();
        setItems(d, items);
        stack.push(d);
        break;
      } // DICT
      case 0x73: {
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      } // SETITEM
      case 0x75: {
        const items = popMark();
        setItems(top(), items);
        break;
      } // SETITEMS
      case 0x61: {
        const v = pop();
        appendItems(top(), [v]);
        break;
      } // APPEND
      case 0x65: {
        const items = popMark();
        appendItems(top(), items);
        break;
      } // APPENDS
      case 0x30:
        pop();
        break; // POP
      case 0x31:
        popMark();
        break; // POP_MARK
      case 0x32:
        stack.push(top());
        break; // DUP
      case 0x71:
        memo.set(byte(), top());
        break; // BINPUT
      case 0x72:
        memo.set(view.getUint32(need(4), true), top());
        break; // LONG_BINPUT
      case 0x94:
        memo.set(memo.size, top());
        break; // MEMOIZE
      case 0x68:
      case 0x6a: {
        // BINGET, LONG_BINGET
        const k = op === 0x68 ? byte() : view.getUint32(need(4), true);
        if (!memo.has(k)) err(`pickle memo key ${k} is not defined`);
        stack.push(memo.get(k));
        break;
      }
      case 0x63: {
        // GLOBAL: "module\nname\n"
        const module = line();
        const name = line();
        stack.push(resolveGlobal(module, name));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') err('pickle STACK_GLOBAL needs two strings');
        stack.push(resolveGlobal(module as string, name as string));
        break;
      }
      case 0x52: {
        const args = pop();
        const fn = pop();
        stack.push(call(fn, args, 'REDUCE'));
        break;
      } // REDUCE
      case 0x81: {
        const args = pop();
        const cls = pop();
        stack.push(call(cls, args, 'NEWOBJ'));
        break;
      } // NEWOBJ
      case 0x62: {
        // BUILD
        const state = pop();
        const obj = top();
        if (!(obj instanceof PyDict)) err(`pickle BUILD on ${describe(obj)} is not supported`);
        (obj as PyDict).attributes = state;
        break;
      }
      case 0x51: {
        // BINPERSID
        const pid = pop();
        if (!opts.persistentLoad) err('pickle uses persistent ids, which this input may not');
        stack.push(opts.persistentLoad!(pid));
        break;
      }
      default: {
        const name = UNSUPPORTED[op];
        err(`unsupported pickle opcode 0x${op.toString(16).padStart(2, '0')}${name ? ` (${name})` : ''}`);
      }
    }
  }

  function line(): string {
    const nl = bytes.indexOf(0x0a, pos);
    if (nl < 0) err('pickle truncated inside a GLOBAL name');
    const at = need(nl - pos + 1);
    return text(at, nl - at);
  }
}

function u64(view: DataView, at: number): number {
  return Number(view.getBigUint64(at, true));
}

function latin1(b: Uint8Array): string {
  let s = '';
  for (const c of b) s += String.fromCharCode(c);
  return s;
}

/** Python's LONG1/LONG4 payload: little-endian two's complement; number when exact, else bigint. */
function littleEndianSigned(b: Uint8Array): number | bigint {
  if (b.length === 0) return 0;
  let v = 0n;
  for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
  if (b[b.length - 1]! & 0x80) v -= 1n << BigInt(8 * b.length);
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/** A short description of a pickle value for error messages. */
export function describe(v: unknown): string {
  if (v instanceof GlobalRef) return `global '${v.qualname}'`;
  if (v instanceof PyDict) return 'a dict';
  if (Array.isArray(v)) return `a tuple/list of ${v.length}`;
  if (v instanceof Uint8Array) return `bytes[${v.length}]`;
  if (v === null) return 'None';
  if (typeof v === 'string') return `'${v.length > 40 ? `${v.slice(0, 40)}...` : v}'`;
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'an object';
  return String(v);
}

/** The allowed global a value refers to, if it is one (for persistent-id parsing). */
export function globalName(v: unknown): string | undefined {
  return v instanceof GlobalRef ? v.qualname : undefined;
}
