import { ExtdError } from '../utils/errors.js';

/**
 * The models shipped in this package's `models/` folder, by name, and their
 * URLs (BUNDLED_MODEL_URLS): `extd` turns a URL into a file path, `@extd/web`
 * fetches it. Provenance and scores: models/README.md.
 */
export interface BundledModel {
  /** The name users pass as `model` / `--model`. */
  name: string;
  /** File under the package's `models/` folder. */
  file: string;
  /** Canonical variant name of the file's tensors. */
  variant: string;
  /** One line for help texts and the demo's model list. */
  description: string;
  /** int8 calibration ranges under `models/` (extd quantize's output for this file), or null when none is shipped. */
  calibration: string | null;
  /**
   * The arithmetic a detector of this model uses when no `precision` is
   * given: 'int8' where the int8 graph's AP on the 646 WIDER val images is
   * within 0.005 of float32's on every setting (easy, medium, hard; single
   * protocol; measured with `npm run bench:tradeoff`, see models/README.md),
   * else 'float32'.
   */
  defaultPrecision: 'float32' | 'int8';
  /**
   * Whether a detector of this model uses int8 by default where extd's
   * native kernels run int8 (Node, engine 'auto', a CPU with AVX512-VNNI;
   * no calibration needed): true where the kernels' int8 AP on the 646 WIDER
   * val images is within 0.005 of float32's on every setting (single
   * protocol; see models/README.md). Elsewhere `defaultPrecision` applies.
   */
  int8OnKernels: boolean;
}

/** The name of a bundled model, as users pass it to `model` / `--model`. */
export type BundledModelName = 'extd-32' | 'extd-48' | 'extd-64' | 'extd-32-scratch';

/**
 * The bundled models by name: the released EXTD-32/48/64 weights (with int8
 * calibration ranges) and a from-scratch EXTD-32 (without).
 */
export const BUNDLED_MODELS: Readonly<Record<BundledModelName, BundledModel>> = {
  'extd-32': {
    name: 'extd-32',
    defaultPrecision: 'float32',
    int8OnKernels: true,
    file: 'extd-32.safetensors',
    calibration: 'extd-32.int8.json',
    variant: 'extd-fpn-32-prelu',
    description: "EXTD-32, the authors' released weights (default)",
  },
  'extd-48': {
    name: 'extd-48',
    defaultPrecision: 'int8',
    int8OnKernels: true,
    file: 'extd-48.safetensors',
    calibration: 'extd-48.int8.json',
    variant: 'extd-fpn-48-prelu',
    description: "EXTD-48, the authors' released weights",
  },
  'extd-64': {
    name: 'extd-64',
    defaultPrecision: 'float32',
    int8OnKernels: true,
    file: 'extd-64.safetensors',
    calibration: 'extd-64.int8.json',
    variant: 'extd-fpn-64-prelu',
    description: "EXTD-64, the authors' released weights (most accurate)",
  },
  'extd-32-scratch': {
    name: 'extd-32-scratch',
    defaultPrecision: 'float32',
    int8OnKernels: false,
    file: 'extd-32-scratch.safetensors',
    calibration: null,
    variant: 'extd-fpn-32-prelu',
    description: 'EXTD-32 trained by extd train on a 2-core CPU (from He initialisation, later distilled from EXTD-64; weak; see README Training)',
  },
};

/** The model used when none is given: the best one we ship (the released EXTD-32). */
export const DEFAULT_MODEL_NAME: BundledModelName = 'extd-32';

/** The bundled models' names, in BUNDLED_MODELS' order (the default, extd-32, first). */
export const BUNDLED_MODEL_NAMES = Object.keys(BUNDLED_MODELS) as BundledModelName[];

/**
 * The precision a detector uses when none is given: 'int8' when
 * `kernelsRunInt8` (the detector's engine would be extd's native kernels with
 * their int8 path) and the bundled model's `int8OnKernels`; otherwise its
 * `defaultPrecision` (`name` undefined: the default model's); 'float32' for
 * any other model (`name` null).
 */
export function defaultPrecisionOf(name: BundledModelName | null | undefined, kernelsRunInt8 = false): 'float32' | 'int8' {
  if (name === null) return 'float32';
  const m = BUNDLED_MODELS[name ?? DEFAULT_MODEL_NAME];
  return kernelsRunInt8 && m.int8OnKernels ? 'int8' : m.defaultPrecision;
}

/** True when `value` is the name of a bundled model (a key of BUNDLED_MODELS). */
export function isBundledModelName(value: string): value is BundledModelName {
  return Object.hasOwn(BUNDLED_MODELS, value);
}

/**
 * True for strings that look like a model name rather than a file path or URL
 * (no slash, no dot): used to report an unknown name as such.
 */
export function looksLikeModelName(value: string): boolean {
  return /^[\w-]+$/.test(value);
}

/** @throws ExtdError naming the value and listing the bundled names. */
export function unknownModelError(value: string, what = 'model'): ExtdError {
  return new ExtdError(`${what} '${value}': not a bundled model name (names: ${BUNDLED_MODEL_NAMES.join(', ')}) and no such file`);
}

/** What a `--model` flag accepts, for help texts: the names (default first), or a file. */
export const MODEL_FLAG_CHOICES = `${[DEFAULT_MODEL_NAME, ...BUNDLED_MODEL_NAMES.filter((n) => n !== DEFAULT_MODEL_NAME)]
  .map((n) => (n === DEFAULT_MODEL_NAME ? `${n} (default)` : n))
  .join(' | ')}, or a .safetensors/.pth file`;

/** URLs of the bundled models' calibration files (int8), like BUNDLED_MODEL_URLS. */
export const BUNDLED_CALIBRATION_URLS: Partial<Record<BundledModelName, () => URL>> = {
  'extd-32': () => new URL('../../models/extd-32.int8.json', import.meta.url),
  'extd-48': () => new URL('../../models/extd-48.int8.json', import.meta.url),
  'extd-64': () => new URL('../../models/extd-64.int8.json', import.meta.url),
};

/**
 * URLs of the bundled models: files of this package (`@extd/core/models/`),
 * two folders above this module in src/ and in dist/. Written as static `new URL(..., import.meta.url)` expressions
 * so that bundlers (Vite, webpack 5, esbuild with a loader) copy the files
 * into the build as assets; nothing is fetched from a third-party host.
 */
export const BUNDLED_MODEL_URLS: Record<BundledModelName, () => URL> = {
  'extd-32': () => new URL('../../models/extd-32.safetensors', import.meta.url),
  'extd-48': () => new URL('../../models/extd-48.safetensors', import.meta.url),
  'extd-64': () => new URL('../../models/extd-64.safetensors', import.meta.url),
  'extd-32-scratch': () => new URL('../../models/extd-32-scratch.safetensors', import.meta.url),
};
