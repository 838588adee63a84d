/**
 * The YAML subset a YOLO dataset file (`data.yaml`) uses, parsed by a small
 * reader of our own (no YAML parser is among our dependencies):
 *
 *     path: ../datasets/faces        # top-level `key: scalar`
 *     train: images/train
 *     val: [images/val, more/val]    # flow sequence of scalars
 *     nc: 2
 *     names: ['face', "mask"]        # or a block sequence / mapping:
 *     names:
 *       - face                       #   - item
 *       - mask
 *     names:
 *       0: face                      #   index: name
 *       1: mask
 *
 * Comments (`#` after whitespace or at the start of a line) and blank lines
 * are skipped; scalars may be single- or double-quoted. A top-level key whose
 * block holds anything deeper (e.g. Roboflow's `roboflow:` section) is kept
 * as `null` rather than refused, since YOLO readers do not use those. What
 * this subset cannot express (anchors, tags, multi-line scalars) is an
 * ExtdError naming `source` and the line. No node: imports.
 */
import { ExtdError } from '../utils/errors.js';

export type YamlValue = string | string[] | Record<string, string> | null;

/** Top-level keys in file order; a repeated key is an error. */
export function parseDataYaml(text: string, source: string): Map<string, YamlValue> {
  const lines = text.replace(/^\ufeff/, '').split(/\r?\n/);
  const out = new Map<string, YamlValue>();
  const fail = (no: number, msg: string): never => {
    throw new ExtdError(`${source}:${no}: ${msg}`);
  };
  let i = 0;
  const content = (raw: string): string => stripComment(raw).replace(/\s+$/, '');
  while (i < lines.length) {
    const no = i + 1;
    const line = content(lines[i]!);
    i++;
    if (line.trim() === '' || line.trim() === '---') continue;
    if (/^\s/.test(line)) fail(no, `unexpected indentation (expected a top-level 'key: value')`);
    const m = /^([^:#'"\s][^:]*?|'[^']*'|"[^"]*")\s*:(?:\s+(.*))?$/.exec(line);
    if (!m) fail(no, `expected 'key: value', got '${clip(line)}'`);
    const key = unquote(m![1]!, no, fail);
    if (out.has(key)) fail(no, `key '${key}' given twice`);
    const rest = (m![2] ?? '').trim();
    if (rest !== '') {
      out.set(key, parseInline(rest, no, fail));
      continue;
    }
    // A block: the following more-indented lines.
    const block: Array<{ no: number; text: string }> = [];
    while (i < lines.length) {
      const l = content(lines[i]!);
      if (l.trim() === '') {
        i++;
        continue;
      }
      if (!/^\s/.test(l) && !l.startsWith('- ') && l !== '-') break;
      block.push({ no: i + 1, text: l });
      i++;
    }
    out.set(key, parseBlock(block, fail));
  }
  return out;
}

function parseBlock(block: Array<{ no: number; text: string }>, fail: (no: number, msg: string) => never): YamlValue {
  if (block.length === 0) return null;
  const indent = (s: string) => s.length - s.trimStart().length;
  const base = indent(block[0]!.text);
  // Anything indented deeper than the first line: a nested structure we do not model.
  if (block.some((b) => indent(b.text) !== base)) return null;
  const items = block.map((b) => ({ no: b.no, text: b.text.trim() }));
  if (items.every((b) => b.text === '-' || b.text.startsWith('- '))) {
    return items.map((b) => {
      const v = b.text.slice(1).trim();
      if (v === '') fail(b.no, 'empty sequence item');
      return scalar(v, b.no, fail);
    });
  }
  const map: Record<string, string> = {};
  for (const b of items) {
    const m = /^([^:#'"\s][^:]*?|'[^']*'|"[^"]*")\s*:\s+(.+)$/.exec(b.text);
    if (!m) return null; // not a flat mapping of scalars: not something YOLO reads
    const k = unquote(m[1]!, b.no, fail);
    if (k in map) fail(b.no, `key '${k}' given twice`);
    const v = m[2]!.trim();
    if (v.startsWith('[') || v.startsWith('{')) return null;
    map[k] = scalar(v, b.no, fail);
  }
  return map;
}

function parseInline(rest: string, no: number, fail: (no: number, msg: string) => never): YamlValue {
  if (rest.startsWith('[')) {
    if (!rest.endsWith(']')) fail(no, `flow sequence not closed on its line: '${clip(rest)}'`);
    const inner = rest.slice(1, -1).trim();
    if (inner === '') return [];
    return splitFlow(inner, no, fail).map((s) => scalar(s, no, fail));
  }
  if (rest.startsWith('{')) {
    if (!rest.endsWith('}')) fail(no, `flow mapping not closed on its line: '${clip(rest)}'`);
    const inner = rest.slice(1, -1).trim();
    const map: Record<string, string> = {};
    if (inner === '') return map;
    for (const part of splitFlow(inner, no, fail)) {
      const m = /^([^:'"]+?|'[^']*'|"[^"]*")\s*:\s*(.+)$/.exec(part);
      if (!m) fail(no, `expected 'key: value' in the flow mapping, got '${clip(part)}'`);
      map[unquote(m![1]!.trim(), no, fail)] = scalar(m![2]!.trim(), no, fail);
    }
    return map;
  }
  if (rest.startsWith('|') || rest.startsWith('>')) fail(no, 'multi-line scalars are not supported here');
  if (rest.startsWith('&') || rest.startsWith('*') || rest.startsWith('!')) fail(no, 'anchors, aliases and tags are not supported here');
  return scalar(rest, no, fail);
}

/** Split a flow collection's inside at top-level commas (quotes respected). */
function splitFlow(s: string, no: number, fail: (no: number, msg: string) => never): string[] {
  const parts: string[] = [];
  let cur = '';
  let q: string | null = null;
  for (const ch of s) {
    if (q) {
      cur += ch;
      if (ch === q) q = null;
    } else if (ch === '"' || ch === "'") {
      q = ch;
      cur += ch;
    } else if (ch === '[' || ch === '{') {
      fail(no, 'nested collections are not supported here');
    } else if (ch === ',') {
      parts.push(cur.trim());
      cur = '';
    } else cur += ch;
  }
  if (q) fail(no, `unclosed quote in '${clip(s)}'`);
  if (cur.trim() !== '') parts.push(cur.trim());
  else if (parts.length > 0) fail(no, 'empty item in a flow collection');
  return parts;
}

function scalar(s: string, no: number, fail: (no: number, msg: string) => never): string {
  if (s.startsWith('"') || s.startsWith("'")) return unquote(s, no, fail);
  return s;
}

function unquote(s: string, no: number, fail: (no: number, msg: string) => never): string {
  if (s.startsWith("'")) {
    if (s.length < 2 || !s.endsWith("'")) fail(no, `unclosed quote in ${clip(s)}`);
    return s.slice(1, -1).replace(/''/g, "'");
  }
  if (s.startsWith('"')) {
    if (s.length < 2 || !s.endsWith('"')) fail(no, `unclosed quote in ${clip(s)}`);
    return s.slice(1, -1).replace(/\\(["\\/nt])/g, (_, c: string) => (c === 'n' ? '\n' : c === 't' ? '\t' : c));
  }
  return s;
}

/** Drop a comment: '#' at the start or after whitespace, outside quotes. */
function stripComment(line: string): string {
  let q: string | null = null;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (q) {
      if (ch === q) q = null;
    } else if (ch === '"' || ch === "'") {
      // Quotes only start a quoted scalar at a token start.
      if (i === 0 || /[\s:[,{-]/.test(line[i - 1]!)) q = ch;
    } else if (ch === '#' && (i === 0 || /\s/.test(line[i - 1]!))) {
      return line.slice(0, i);
    }
  }
  return line;
}

function clip(s: string): string {
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}
