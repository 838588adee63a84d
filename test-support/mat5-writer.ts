/**
 * A minimal little-endian MATLAB v5 writer for tests, written from the format
 * description, to build inputs whose content we know.
 */
export function tag(type: number, body: Uint8Array, pad = true): Uint8Array {
  const n = body.length;
  const padded = pad ? (n + 7) & ~7 : n;
  const out = new Uint8Array(8 + padded);
  const v = new DataView(out.buffer);
  v.setUint32(0, type, true);
  v.setUint32(4, n, true);
  out.set(body, 8);
  return out;
}
export function small(type: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setUint32(0, (body.length << 16) | type, true);
  out.set(body, 4);
  return out;
}
export const cat = (...parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};
export const i32 = (...xs: number[]): Uint8Array => new Uint8Array(new Int32Array(xs).buffer);
export const f64 = (...xs: number[]): Uint8Array => new Uint8Array(new Float64Array(xs).buffer);
export const u16 = (s: string): Uint8Array => new Uint8Array(new Uint16Array([...s].map((c) => c.charCodeAt(0))).buffer);
export function matrix(cls: number, dims: number[], name: string, ...rest: Uint8Array[]): Uint8Array {
  const flags = tag(6, new Uint8Array(new Uint32Array([cls, 0]).buffer));
  const nm = name.length <= 4 ? small(1, new TextEncoder().encode(name)) : tag(1, new TextEncoder().encode(name));
  return tag(14, cat(flags, tag(5, i32(...dims)), nm, ...rest));
}
export function header(): Uint8Array {
  const h = new Uint8Array(128).fill(0x20);
  h.set(new TextEncoder().encode('MATLAB 5.0 MAT-file, test'), 0);
  h.set([0, 0, 0, 0, 0, 0, 0, 0], 116);
  h.set([0x00, 0x01, 0x49, 0x4d], 124);
  return h;
}

/** mxCLASS codes used by the helpers' callers. */
export const MX = { CELL: 1, CHAR: 4, DOUBLE: 6 } as const;

/** A char array (1 x n). */
export const charArray = (s: string, name = ''): Uint8Array => matrix(MX.CHAR, [1, s.length], name, tag(4, u16(s)));

/** A double matrix given row-major rows (stored column-major). */
export function doubleMatrix(rows: number[][], name = ''): Uint8Array {
  const n = rows.length,
    m = n > 0 ? rows[0]!.length : 0;
  const col: number[] = [];
  for (let c = 0; c < m; c++) for (let r = 0; r < n; r++) col.push(rows[r]![c]!);
  return matrix(MX.DOUBLE, [n, m], name, tag(9, f64(...col)));
}

/** A cell array (n x 1) of already encoded elements. */
export const cellArray = (items: Uint8Array[], name = ''): Uint8Array => matrix(MX.CELL, [items.length, 1], name, ...items);

/**
 * A WIDER annotation .mat file: events, each with images (name without
 * extension, faces as x y w h rows, optional invalid flags per face).
 */
export function widerMat(events: Array<{ event: string; images: Array<{ name: string; boxes: number[][]; invalid?: number[] }> }>): Uint8Array {
  return cat(
    header(),
    cellArray(
      events.map((e) => charArray(e.event)),
      'event_list',
    ),
    cellArray(
      events.map((e) => cellArray(e.images.map((im) => charArray(im.name)))),
      'file_list',
    ),
    cellArray(
      events.map((e) => cellArray(e.images.map((im) => doubleMatrix(im.boxes)))),
      'face_bbx_list',
    ),
    cellArray(
      events.map((e) => cellArray(e.images.map((im) => doubleMatrix((im.invalid ?? im.boxes.map(() => 0)).map((v) => [v]))))),
      'invalid_label_list',
    ),
  );
}
