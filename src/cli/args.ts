import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ExtdError } from '../utils/errors.js';

/** node:util parseArgs with our error style: an unknown or malformed flag is a one-line ExtdError. */
export function parseCli<T extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: T, allowPositionals = true) {
  try {
    return parseArgs({ args: argv, options, allowPositionals, strict: true }) as {
      values: { [K in keyof T]?: T[K] extends { type: 'boolean' } ? boolean : T[K] extends { multiple: true } ? string[] : string };
      positionals: string[];
    };
  } catch (err) {
    throw new ExtdError((err as Error).message.split('\n')[0]!);
  }
}

export function numberFlag(value: string | undefined, flag: string, fallback: number, check: (v: number) => boolean, allowed: string): number {
  if (value === undefined) return fallback;
  const v = Number(value);
  if (!Number.isFinite(v) || !check(v)) throw new ExtdError(`${flag} ${value}: expected ${allowed}`);
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
