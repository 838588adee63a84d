/**
 * Figures as SVG, rendered to PNG by sharp (librsvg inside libvips): the one
 * drawing path of the PR plots (`eval`) and the training-log plots
 * (`plot-log`), so no canvas library is needed.
 *
 * `SvgContext` records the small subset of the canvas 2D API those plots use
 * (rectangles, polylines, text) with canvas semantics: coordinates in pixels
 * from the top-left corner, text drawn at its baseline, `textAlign`
 * left/center/right.
 */
import sharp from 'sharp';

/** Font family list of every figure (DejaVu Sans ships with most Linux distributions). */
export const SVG_FONT = 'DejaVu Sans, Arial, Helvetica, sans-serif';

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** A number with one decimal, as SVG attributes take it. */
const n = (v: number) => (Math.round(v * 10) / 10).toString();

/** Records canvas-2D-style drawing calls as SVG elements. Size in pixels. */
export class SvgContext {
  fillStyle = '#000';
  strokeStyle = '#000';
  lineWidth = 1;
  globalAlpha = 1;
  lineJoin: 'round' | 'miter' | 'bevel' = 'miter';
  textAlign: 'left' | 'center' | 'right' = 'left';
  /** CSS font shorthand subset: `[bold ]SIZEpx FAMILY`. */
  font = `10px ${SVG_FONT}`;
  private readonly parts: string[] = [];
  private path: number[][] = [];

  constructor(
    readonly width: number,
    readonly height: number,
  ) {}

  private opacity(): string {
    return this.globalAlpha < 1 ? ` opacity="${this.globalAlpha}"` : '';
  }

  fillRect(x: number, y: number, w: number, h: number): void {
    this.parts.push(`<rect x="${n(x)}" y="${n(y)}" width="${n(w)}" height="${n(h)}" fill="${this.fillStyle}"${this.opacity()}/>`);
  }

  strokeRect(x: number, y: number, w: number, h: number): void {
    this.parts.push(
      `<rect x="${n(x)}" y="${n(y)}" width="${n(w)}" height="${n(h)}" fill="none" stroke="${this.strokeStyle}" stroke-width="${this.lineWidth}"${this.opacity()}/>`,
    );
  }

  beginPath(): void {
    this.path = [];
  }

  moveTo(x: number, y: number): void {
    this.path.push([x, y]);
  }

  lineTo(x: number, y: number): void {
    this.path.push([x, y]);
  }

  /** Strokes the current path as one polyline (points that are not finite are skipped). */
  stroke(): void {
    const pts = this.path.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)).map(([x, y]) => `${n(x!)},${n(y!)}`);
    if (pts.length < 2) return;
    this.parts.push(
      `<polyline points="${pts.join(' ')}" fill="none" stroke="${this.strokeStyle}" stroke-width="${this.lineWidth}" stroke-linejoin="${this.lineJoin}"${this.opacity()}/>`,
    );
  }

  /** A filled disc of radius r centred on (x, y), with the current fillStyle (a scatter plot's point). */
  fillCircle(x: number, y: number, r: number): void {
    this.parts.push(`<circle cx="${n(x)}" cy="${n(y)}" r="${n(r)}" fill="${this.fillStyle}"${this.opacity()}/>`);
  }

  /** Text with its baseline at y; `rotate` turns it -90 degrees about (x, y) (a y-axis label). */
  fillText(text: string, x: number, y: number, rotate = false): void {
    const m = /^(bold\s+)?(\d+(?:\.\d+)?)px\s+(.+)$/.exec(this.font);
    const size = m ? m[2] : '10';
    const family = m ? m[3]!.replace(/"/g, "'") : SVG_FONT;
    const anchor = this.textAlign === 'left' ? 'start' : this.textAlign === 'right' ? 'end' : 'middle';
    const rot = rotate ? ` transform="rotate(-90 ${n(x)} ${n(y)})"` : '';
    this.parts.push(
      `<text x="${n(x)}" y="${n(y)}" font-size="${size}" font-family="${family}" fill="${this.fillStyle}" text-anchor="${anchor}"${m?.[1] ? ' font-weight="bold"' : ''}${rot}${this.opacity()}>${escapeXml(text)}</text>`,
    );
  }

  /** The drawing as an SVG document; `title` (optional) becomes its <title>, the text alternative screen readers and linters look for. */
  toSvg(title?: string): string {
    return (
      [
        `<svg xmlns="http://www.w3.org/2000/svg" width="${this.width}" height="${this.height}" viewBox="0 0 ${this.width} ${this.height}">`,
        ...(title ? [`<title>${escapeXml(title)}</title>`] : []),
        ...this.parts,
        '</svg>',
      ].join('\n') + '\n'
    );
  }
}

/** Renders an SVG document to PNG bytes (sharp, 72 dpi: one SVG unit is one pixel). */
export async function svgToPng(svg: string): Promise<Uint8Array> {
  return new Uint8Array(await sharp(Buffer.from(svg), { density: 72 }).png().toBuffer());
}
