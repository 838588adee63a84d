import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ExtdError } from '@extd/core/utils/errors';
import { ENGINES, type Engine } from '../index.js';

/**
 * A command line that does not match the command's usage: an unknown or
 * malformed flag, a missing argument or required flag. The CLI prints it as
 * one line and exits with status 2 (other bad input: 1).
 */
export class UsageError extends ExtdError {
  override name = 'UsageError';
}

/**
 * node:util parseArgs with our error style: an unknown or malformed flag is a
 * one-line UsageError. A negative number after a flag that takes a value
 * (`--threads -1`) is taken as its value, so the flag's own check can say
 * what is allowed (parseArgs would call it ambiguous).
 */
export function parseCli<T extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: T, allowPositionals = true) {
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const name = a.startsWith('--') ? a.slice(2) : undefined;
    const next = argv[i + 1];
    if (name && options[name]?.type === 'string' && next !== undefined && /^-(\d|\.\d)/.test(next)) {
      args.push(`${a}=${next}`);
      i++;
    } else {
      args.push(a);
    }
  }
  try {
    return parseArgs({ args, options, allowPositionals, strict: true }) as {
      values: { [K in keyof T]?: T[K] extends { type: 'boolean' } ? boolean : T[K] extends { multiple: true } ? string[] : string };
      positionals: string[];
    };
  } catch (err) {
    // parseArgs' messages run on with advice about '--'; the first sentence says what is wrong.
    const first = (err as Error).message.split('\n')[0]!.split(/\.\s/)[0]!.replace(/\.$/, '');
    throw new UsageError(first.charAt(0).toLowerCase() + first.slice(1));
  }
}

export function numberFlag(value: string | undefined, flag: string, fallback: number, check: (v: number) => boolean, allowed: string): number {
  if (value === undefined) return fallback;
  const v = Number(value);
  if (value.trim() === '' || !Number.isFinite(v) || !check(v)) throw new ExtdError(`${flag} ${value}: expected ${allowed}`);
  return v;
}

export function threadsFlag(value: string | undefined, fallback = 2): number {
  return numberFlag(value, '--threads', fallback, (v) => Number.isInteger(v) && v >= 1 && v <= 64, 'an integer from 1 to 64');
}

/**
 * --precision float32|int8 and --calibration FILE (int8 only).
 * @throws ExtdError for another precision, or --calibration without int8.
 */
export function precisionFlags(precision: string | undefined, calibration: string | undefined): { precision?: 'float32' | 'int8'; calibration?: string } {
  if (precision !== undefined && precision !== 'float32' && precision !== 'int8') throw new ExtdError(`--precision ${precision}: expected float32 or int8`);
  if (calibration !== undefined && precision !== 'int8') throw new ExtdError('--calibration applies to --precision int8 only');
  return { precision, calibration };
}

/**
 * --engine auto|onnxruntime (createDetector's `engine`; default auto).
 * @throws ExtdError for any other value.
 */
export function engineFlag(engine: string | undefined): Engine | undefined {
  if (engine !== undefined && !ENGINES.includes(engine as Engine)) throw new ExtdError(`--engine ${engine}: expected ${ENGINES.join(' or ')}`);
  return engine as Engine | undefined;
}
