import { ExtdError } from '../utils/errors.js';

/**
 * The 18 EXTD variants of the paper's Table 2: feature aggregation (FPN or
 * SSD-style heads on the backbone maps), channel width, and activation.
 * Canonical name: `extd-<arch>-<width>-<activation>`, e.g. `extd-fpn-64-prelu`.
 */
export const ARCHS = ['fpn', 'ssd'] as const;
export const WIDTHS = [32, 48, 64] as const;
export const ACTIVATIONS = ['prelu', 'leaky', 'relu'] as const;

export type Arch = (typeof ARCHS)[number];
export type Width = (typeof WIDTHS)[number];
export type ActivationKind = (typeof ACTIVATIONS)[number];

/** One EXTD variant; `variantName` gives its canonical name, `parseVariant` reads one. */
export interface Variant {
  /** Feature aggregation: 'fpn' (top-down upsample-and-add before the heads) or 'ssd' (heads on the backbone maps). */
  arch: Arch;
  /** Channel width of the backbone's feature maps and heads: 32, 48 or 64. */
  width: Width;
  /** Activation after each conv unit: 'prelu' (learnable slope), 'leaky' (slope 0.25) or 'relu'. */
  activation: ActivationKind;
}

/** Slope of the LeakyReLU variant (the paper's "leaky ReLU" uses 0.25, PReLU's initial value). */
export const LEAKY_SLOPE = 0.25;

/** Canonical name of a variant, `extd-<arch>-<width>-<activation>`, e.g. `extd-fpn-64-prelu`. */
export function variantName(v: Variant): string {
  return `extd-${v.arch}-${v.width}-${v.activation}`;
}

/** All 18 variants (2 archs x 3 widths x 3 activations), fpn first, then by width and activation. */
export function allVariants(): Variant[] {
  const out: Variant[] = [];
  for (const arch of ARCHS) for (const width of WIDTHS) for (const activation of ACTIVATIONS) out.push({ arch, width, activation });
  return out;
}

/**
 * Parse a variant name. Accepts the canonical form and the short forms users
 * type: `extd-64` / `EXTD_64` / `64` (the released FPN PReLU models),
 * `fpn-32-relu`, `extd-ssd-48-leakyrelu`. Arch defaults to fpn, activation to prelu.
 * @throws ExtdError when the width is missing or a part is not recognised.
 */
export function parseVariant(name: string): Variant {
  const s = name
    .trim()
    .toLowerCase()
    .replace(/_/g, '-')
    .replace(/^extd-?/, '');
  const parts = s.split('-').filter(Boolean);
  let arch: Arch = 'fpn';
  let activation: ActivationKind = 'prelu';
  let width: Width | undefined;
  let unknownPart = false;
  for (const p of parts) {
    if ((ARCHS as readonly string[]).includes(p)) arch = p as Arch;
    else if (p === 'leakyrelu' || p === 'lrelu' || p === 'leaky') activation = 'leaky';
    else if ((ACTIVATIONS as readonly string[]).includes(p)) activation = p as ActivationKind;
    else if (/^\d+$/.test(p) && (WIDTHS as readonly number[]).includes(Number(p))) width = Number(p) as Width;
    else unknownPart = true;
  }
  if (width === undefined || unknownPart) {
    throw new ExtdError(
      `unknown model variant '${name}' (allowed: extd-{fpn,ssd}-{32,48,64}-{prelu,leaky,relu}, or 32/48/64 for the released FPN PReLU models)`,
    );
  }
  return { arch, width, activation };
}
