/**
 * `${task.path}` and `${params.name}` references inside task parameters (SPEC section 3).
 * Parsing is shared by the loader (validation, implied dependencies) and the engine
 * (substitution at run time).
 *
 * @module
 */

import { GleitzeitError } from "./errors.ts";

/** One `${...}` occurrence. */
export interface Reference {
  /** The text between `${` and `}`. */
  expr: string;
  /** `params` for workflow inputs, otherwise a task id or name. */
  root: string;
  /** Keys and indexes after the root. */
  path: (string | number)[];
}

/**
 * A reference, or `$${` (group 1 undefined): the escape that writes a literal `${` (for shell
 * or template text in a parameter). One pattern for both, so one pass tells them apart.
 */
export const REFERENCE_OR_ESCAPE = /\$\$\{|\$\{([^}]*)\}/g;
const WHOLE = /^\$\{([^}]*)\}$/;

/**
 * Splits `a.b[0].c` (also `a["b c"]`) into ["a","b",0,"c"]. Task ids may contain `-`.
 * Throws a message string on bad syntax.
 */
export function parseReference(expr: string): Reference {
  const s = expr.trim();
  const parts: (string | number)[] = [];
  let i = 0;
  const ident = /^[A-Za-z0-9_\-]+/;
  const first = ident.exec(s);
  if (!first) throw new Error(`'\${${expr}}' is not a valid reference (expected \${task.path})`);
  parts.push(first[0]);
  i = first[0].length;
  while (i < s.length) {
    const ch = s[i];
    if (ch === ".") {
      const m = ident.exec(s.slice(i + 1));
      if (!m) throw new Error(`'\${${expr}}': expected a key after '.' at position ${i + 1}`);
      parts.push(m[0]);
      i += 1 + m[0].length;
    } else if (ch === "[") {
      const close = s.indexOf("]", i);
      if (close < 0) throw new Error(`'\${${expr}}': missing ']'`);
      const inner = s.slice(i + 1, close).trim();
      if (/^\d+$/.test(inner)) parts.push(Number(inner));
      else if (/^(['"]).*\1$/.test(inner)) parts.push(inner.slice(1, -1));
      else throw new Error(`'\${${expr}}': '[${inner}]' must be an index or a quoted key`);
      i = close + 1;
    } else {
      throw new Error(`'\${${expr}}': unexpected '${ch}' at position ${i}`);
    }
  }
  return { expr, root: String(parts[0]), path: parts.slice(1) };
}

/** Every reference in a string. */
export function referencesIn(text: string): Reference[] {
  const out: Reference[] = [];
  for (const m of text.matchAll(REFERENCE_OR_ESCAPE)) {
    if (m[1] !== undefined) out.push(parseReference(m[1]));
  }
  return out;
}

/** Walks any JSON value, calling `fn` for each string with its path. */
export function walkStrings(
  value: unknown,
  fn: (s: string, path: (string | number)[]) => void,
  path: (string | number)[] = [],
): void {
  if (typeof value === "string") fn(value, path);
  else if (Array.isArray(value)) value.forEach((v, i) => walkStrings(v, fn, [...path, i]));
  else if (value !== null && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) walkStrings(v, fn, [...path, k]);
  }
}

/** Fast check used to skip substitution for parameters without references. */
export function hasReference(value: unknown): boolean {
  if (typeof value === "string") return value.includes("${");
  if (Array.isArray(value)) return value.some(hasReference);
  if (value !== null && typeof value === "object") return Object.values(value).some(hasReference);
  return false;
}

/** Whether `value` holds a reference (`${...}`), not only escapes (`$${`). */
export function refersToAny(value: unknown): boolean {
  if (typeof value === "string") {
    return value.includes("${") &&
      [...value.matchAll(REFERENCE_OR_ESCAPE)].some((m) => m[1] !== undefined);
  }
  if (Array.isArray(value)) return value.some(refersToAny);
  if (value !== null && typeof value === "object") return Object.values(value).some(refersToAny);
  return false;
}

/** Looks up the value a reference points at. */
export type ReferenceLookup = (root: string) => { found: true; value: unknown } | { found: false };

function describePath(path: (string | number)[]): string {
  return path.map((p) => (typeof p === "number" ? `[${p}]` : `.${p}`)).join("");
}

function walk(ref: Reference, root: unknown): unknown {
  let cur = root;
  const seen: (string | number)[] = [];
  for (const key of ref.path) {
    let next: unknown = undefined;
    let ok = false;
    if (Array.isArray(cur)) {
      const idx = typeof key === "number" ? key : /^\d+$/.test(key) ? Number(key) : NaN;
      if (Number.isInteger(idx) && idx >= 0 && idx < cur.length) {
        next = cur[idx];
        ok = true;
      }
      if (!ok) {
        throw new GleitzeitError(
          "TASK_PARAMETER_ERROR",
          `reference \${${ref.expr}}: no index ${key} at '${ref.root}${
            describePath(seen)
          }' (a list of ${cur.length})`,
          { details: { reference: ref.expr, available: `0..${cur.length - 1}` } },
        );
      }
    } else if (cur !== null && typeof cur === "object") {
      if (Object.hasOwn(cur, String(key))) {
        next = (cur as Record<string, unknown>)[String(key)];
        ok = true;
      } else {
        const keys = Object.keys(cur);
        throw new GleitzeitError(
          "TASK_PARAMETER_ERROR",
          `reference \${${ref.expr}}: no key '${key}' at '${ref.root}${describePath(seen)}'; ` +
            `available keys: ${keys.length ? keys.join(", ") : "(none)"}`,
          { details: { reference: ref.expr, available: keys } },
        );
      }
    } else {
      throw new GleitzeitError(
        "TASK_PARAMETER_ERROR",
        `reference \${${ref.expr}}: '${ref.root}${describePath(seen)}' is ${
          cur === null ? "null" : typeof cur
        }, not an object or list`,
        { details: { reference: ref.expr } },
      );
    }
    seen.push(key);
    cur = next;
  }
  return cur;
}

function resolveOne(ref: Reference, lookup: ReferenceLookup): unknown {
  const root = lookup(ref.root);
  if (!root.found) {
    throw new GleitzeitError(
      "TASK_PARAMETER_ERROR",
      `reference \${${ref.expr}}: '${ref.root}' has no result`,
      { details: { reference: ref.expr } },
    );
  }
  return walk(ref, root.value);
}

function substituteString(text: string, lookup: ReferenceLookup): unknown {
  const whole = WHOLE.exec(text);
  if (whole) return resolveOne(parseReference(whole[1]!), lookup);
  return text.replace(REFERENCE_OR_ESCAPE, (_m, expr: string | undefined) => {
    if (expr === undefined) return "${"; // $${ writes ${
    const v = resolveOne(parseReference(expr), lookup);
    if (typeof v === "string") return v;
    if (v === undefined) return "null";
    return JSON.stringify(v);
  });
}

/**
 * Replaces every reference in `value`. A string that is exactly one reference takes the
 * referenced value with its type; embedded references insert strings as-is, others as JSON.
 * Throws TASK_PARAMETER_ERROR naming the reference and the available keys.
 */
export function substitute(value: unknown, lookup: ReferenceLookup): unknown {
  if (typeof value === "string") {
    return value.includes("${") ? substituteString(value, lookup) : value;
  }
  if (Array.isArray(value)) return value.map((v) => substitute(v, lookup));
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = substitute(v, lookup);
    return out;
  }
  return value;
}
