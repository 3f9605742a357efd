/**
 * Maps a path inside a parsed YAML document (`["tasks", 2, "dependencies", 0]`) to the
 * line and column where it is written, so every issue can point into the file.
 *
 * @module
 */

import { type Document, isMap, isScalar, isSeq, type LineCounter, type Node } from "yaml";

/** A 1-based place in the source text. */
export interface Position {
  line: number;
  column: number;
}

/** Line:column lookups for one parsed document. */
export class Positions {
  readonly #doc: Document;
  readonly #lines: LineCounter;
  readonly #source: string;

  constructor(doc: Document, lines: LineCounter, source: string) {
    this.#doc = doc;
    this.#lines = lines;
    this.#source = source;
  }

  /** The position of a character offset. */
  ofOffset(offset: number): Position {
    const p = this.#lines.linePos(offset);
    return { line: p.line, column: p.col };
  }

  /**
   * Where the value at `path` is written, or where its key is (`key: true`, for unknown
   * keys). A path that does not exist (a missing key) maps to its nearest existing parent.
   */
  of(path: readonly (string | number)[], options: { key?: boolean } = {}): Position {
    const node = this.#find(path, options.key === true);
    const offset = node?.range?.[0];
    return offset === undefined ? { line: 1, column: 1 } : this.ofOffset(offset);
  }

  /**
   * Where `needle` first occurs inside the source of the value at `path` (a `${...}`
   * reference inside a long string); the value's start when it does not occur verbatim
   * (escaped quoted strings).
   */
  ofText(path: readonly (string | number)[], needle: string): Position {
    const node = this.#find(path, false);
    const range = node?.range;
    if (!range) return { line: 1, column: 1 };
    const at = this.#source.slice(range[0], range[1]).indexOf(needle);
    return this.ofOffset(at < 0 ? range[0] : range[0] + at);
  }

  /** The source text of the scalar at `path`, as written. */
  sourceOf(path: readonly (string | number)[]): string | undefined {
    const node = this.#find(path, false);
    return isScalar(node) && typeof node.source === "string" ? node.source : undefined;
  }

  #find(path: readonly (string | number)[], wantKey: boolean): Node | undefined {
    let node: unknown = this.#doc.contents;
    let found = node as Node | undefined;
    for (let i = 0; i < path.length; i++) {
      const seg = path[i]!;
      const last = i === path.length - 1;
      if (isMap(node)) {
        const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
        if (!pair) return found;
        if (last && wantKey) return pair.key as Node;
        // `key:` with nothing after it has an empty value node: point at the key instead
        const v = pair.value;
        if (!v || (isScalar(v) && v.range && v.range[0] === v.range[1])) return pair.key as Node;
        node = v;
      } else if (isSeq(node) && typeof seg === "number") {
        node = node.items[seg];
        if (node === undefined) return found;
      } else {
        return found;
      }
      found = node as Node;
    }
    return found;
  }
}
