/**
 * A small, strict XML parser: enough for annotation files (Pascal VOC and
 * the like), written for this project because no XML parser is among our
 * dependencies and the subset needed is small.
 *
 * Handles: the `<?xml ...?>` declaration and other processing instructions
 * (skipped), comments, `<!DOCTYPE ...>` without an internal subset (skipped),
 * CDATA sections, elements with single- or double-quoted attributes,
 * self-closing tags, the five predefined entities and numeric character
 * references. Text between child elements is kept (concatenated, see
 * `XmlElement.text`). Malformed input (an unclosed or mismatched tag, a stray
 * `<`, an unknown entity, text after the root element) is an ExtdError naming
 * `source` and the line. Namespaces are not interpreted (a prefixed name is
 * just a name). No node: imports.
 */
import { ExtdError } from '../utils/errors.js';

export interface XmlElement {
  name: string;
  attributes: Record<string, string>;
  children: XmlElement[];
  /** The element's own character data (children's text excluded), entities decoded, not trimmed. */
  text: string;
  /** 1-based line of the start tag. */
  line: number;
}

const NAME = /[A-Za-z_:][-A-Za-z0-9_:.]*/y;
const ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

/** Parse a whole document; returns its root element. */
export function parseXml(text: string, source: string): XmlElement {
  let pos = 0;
  // Line numbers on demand: count newlines up to an offset.
  const lineAt = (offset: number): number => {
    let n = 1;
    for (let i = 0; i < offset && i < text.length; i++) if (text.charCodeAt(i) === 10) n++;
    return n;
  };
  const fail = (msg: string, at = pos): never => {
    throw new ExtdError(`${source}:${lineAt(at)}: ${msg}`);
  };
  const decode = (raw: string, at: number): string =>
    raw.replace(/&([^;&\s<]*);?/g, (m, name: string) => {
      if (!m.endsWith(';')) fail(`'&' not followed by an entity reference ending in ';' (write &amp; for a literal &)`, at);
      if (name.startsWith('#x') || name.startsWith('#X')) {
        const cp = parseInt(name.slice(2), 16);
        if (!/^[0-9a-fA-F]+$/.test(name.slice(2)) || cp > 0x10ffff) fail(`bad character reference &${name};`, at);
        return String.fromCodePoint(cp);
      }
      if (name.startsWith('#')) {
        const cp = Number(name.slice(1));
        if (!/^\d+$/.test(name.slice(1)) || cp > 0x10ffff) fail(`bad character reference &${name};`, at);
        return String.fromCodePoint(cp);
      }
      const e = ENTITIES[name];
      if (e === undefined) return fail(`unknown entity &${name};`, at);
      return e;
    });
  const readName = (): string => {
    NAME.lastIndex = pos;
    const m = NAME.exec(text);
    if (!m) return fail(`expected a name after '${text.slice(Math.max(0, pos - 1), pos + 10).replace(/\s+/g, ' ')}'`);
    pos += m[0].length;
    return m[0];
  };
  const skipSpace = () => {
    while (pos < text.length && /\s/.test(text[pos]!)) pos++;
  };
  /** Skip comments, processing instructions and DOCTYPE at the current position; true if something was skipped. */
  const skipMisc = (): boolean => {
    if (text.startsWith('<!--', pos)) {
      const end = text.indexOf('-->', pos + 4);
      if (end < 0) fail('comment not closed (missing -->)');
      pos = end + 3;
      return true;
    }
    if (text.startsWith('<?', pos)) {
      const end = text.indexOf('?>', pos + 2);
      if (end < 0) fail("processing instruction not closed (missing '?>')");
      pos = end + 2;
      return true;
    }
    if (text.startsWith('<!DOCTYPE', pos)) {
      const end = text.indexOf('>', pos);
      if (end < 0 || text.slice(pos, end).includes('[')) fail('DOCTYPE with an internal subset is not supported');
      pos = end + 1;
      return true;
    }
    return false;
  };

  const parseElement = (): XmlElement => {
    const start = pos;
    pos++; // '<'
    const name = readName();
    const el: XmlElement = { name, attributes: {}, children: [], text: '', line: lineAt(start) };
    for (;;) {
      skipSpace();
      if (pos >= text.length) fail(`start tag <${name}> not closed`, start);
      if (text.startsWith('/>', pos)) {
        pos += 2;
        return el;
      }
      if (text[pos] === '>') {
        pos++;
        break;
      }
      const attrAt = pos;
      const attr = readName();
      skipSpace();
      if (text[pos] !== '=') fail(`attribute ${attr} of <${name}> has no value`, attrAt);
      pos++;
      skipSpace();
      const q = text[pos];
      if (q !== '"' && q !== "'") fail(`value of attribute ${attr} of <${name}> is not quoted`, attrAt);
      const end = text.indexOf(q!, pos + 1);
      if (end < 0) fail(`value of attribute ${attr} of <${name}> not closed`, attrAt);
      const raw = text.slice(pos + 1, end);
      if (raw.includes('<')) fail(`'<' in the value of attribute ${attr} of <${name}>`, attrAt);
      if (attr in el.attributes) fail(`attribute ${attr} given twice in <${name}>`, attrAt);
      el.attributes[attr] = decode(raw, attrAt);
      pos = end + 1;
    }
    // Content.
    let text_ = '';
    for (;;) {
      const lt = text.indexOf('<', pos);
      if (lt < 0) fail(`element <${name}> not closed (missing </${name}>)`, start);
      if (lt > pos) {
        const raw = text.slice(pos, lt);
        text_ += decode(raw, pos);
        pos = lt;
      }
      if (text.startsWith('</', pos)) {
        const closeAt = pos;
        pos += 2;
        const closing = readName();
        skipSpace();
        if (text[pos] !== '>') fail(`end tag </${closing}> not closed`, closeAt);
        pos++;
        if (closing !== name) fail(`end tag </${closing}> does not match <${name}> opened on line ${el.line}`, closeAt);
        el.text = text_;
        return el;
      }
      if (text.startsWith('<![CDATA[', pos)) {
        const end = text.indexOf(']]>', pos);
        if (end < 0) fail('CDATA section not closed (missing ]]>)');
        text_ += text.slice(pos + 9, end);
        pos = end + 3;
        continue;
      }
      if (text.startsWith('<!--', pos) || text.startsWith('<?', pos)) {
        skipMisc();
        continue;
      }
      NAME.lastIndex = pos + 1;
      if (!NAME.test(text)) fail(`'<' that starts no tag (write &lt; for a literal <)`);
      el.children.push(parseElement());
    }
  };

  if (text.charCodeAt(0) === 0xfeff) pos = 1; // byte-order mark
  for (;;) {
    skipSpace();
    if (!skipMisc()) break;
  }
  if (pos >= text.length) fail('no root element (empty document)');
  if (text[pos] !== '<') fail(`text '${text.slice(pos, pos + 20).trim()}' before the root element`);
  const root = parseElement();
  for (;;) {
    skipSpace();
    if (!skipMisc()) break;
  }
  if (pos < text.length) fail(`content after the root element </${root.name}>`);
  return root;
}

/** The first child named `name`, or undefined. */
export function child(el: XmlElement, name: string): XmlElement | undefined {
  return el.children.find((c) => c.name === name);
}

/** Every child named `name`. */
export function children(el: XmlElement, name: string): XmlElement[] {
  return el.children.filter((c) => c.name === name);
}

/** Trimmed text of the first child named `name`, or undefined when there is no such child. */
export function childText(el: XmlElement, name: string): string | undefined {
  const c = child(el, name);
  return c === undefined ? undefined : c.text.trim();
}
