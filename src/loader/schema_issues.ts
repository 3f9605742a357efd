/**
 * Turns zod's structural issues into the loader's Issues: readable messages, one issue
 * per unknown key with a "did you mean", and the most specific branch of a union.
 *
 * @module
 */

import type { z } from "zod";
import type { Issue } from "../core/errors.ts";
import { formatPath } from "../core/errors.ts";
import type { Positions } from "./positions.ts";
import { closest } from "./suggest.ts";
import { RETRY_KEYS, SANDBOX_KEYS, TASK_KEYS, WORKFLOW_KEYS } from "./workflow_schema.ts";

type Path = (string | number)[];
type ZodIssue = z.core.$ZodIssue;

/** What a value is, in the words of the messages. */
export function describeType(v: unknown): string {
  if (v === null || v === undefined) return "nothing";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a mapping";
  if (typeof v === "number") return Number.isInteger(v) ? "an integer" : "a number";
  if (typeof v === "string") return "a string";
  if (typeof v === "boolean") return "a boolean";
  return typeof v;
}

const EXPECTED: Record<string, string> = {
  string: "a string",
  number: "a number",
  int: "an integer",
  boolean: "true or false",
  object: "a mapping",
  record: "a mapping",
  array: "a list",
};

/** The value at a path of plain data. */
export function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let cur = root;
  for (const seg of path) {
    if (cur === null || typeof cur !== "object") return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[seg];
  }
  return cur;
}

function keysFor(path: Path): readonly string[] {
  const last = path[path.length - 1];
  if (path.length === 0) return WORKFLOW_KEYS;
  if (path.length === 2 && path[0] === "tasks") return TASK_KEYS;
  if (last === "retry") return RETRY_KEYS;
  if (last === "sandbox") return SANDBOX_KEYS;
  return [];
}

// Messages we wrote ourselves start in lower case; zod's defaults start with a capital.
const isOwn = (m: string) => /^[a-z]/.test(m);

function message(issue: ZodIssue, value: unknown): string {
  if (isOwn(issue.message)) return issue.message;
  switch (issue.code) {
    case "invalid_type":
      if (value === undefined) return "is required";
      return `must be ${EXPECTED[issue.expected] ?? issue.expected}, got ${describeType(value)}`;
    case "invalid_value":
      return `must be one of ${issue.values.map((v) => String(v)).join(", ")}` +
        (value === undefined ? "" : `, got ${JSON.stringify(value)}`);
    case "too_small": {
      const m = Number(issue.minimum);
      if (issue.origin === "string") return "must not be empty";
      if (issue.origin === "array") return `must have at least ${m} item${m === 1 ? "" : "s"}`;
      return `must be ${issue.inclusive ? ">=" : ">"} ${m}`;
    }
    case "too_big":
      return `must be ${issue.inclusive ? "<=" : "<"} ${Number(issue.maximum)}`;
    case "invalid_format":
      return "has an invalid format";
    default:
      return issue.message;
  }
}

/**
 * Converts zod issues for `data` (the parsed file) into positioned Issues. `keysAt` names the
 * keys allowed at a path, for "did you mean" (default: the workflow format's).
 */
export function schemaIssues(
  zodIssues: readonly ZodIssue[],
  data: unknown,
  pos: Positions,
  keysAt: (path: Path) => readonly string[] = keysFor,
): Issue[] {
  const out: Issue[] = [];
  /** Paths of the keys unknown keys were taken for (a misspelling's "did you mean"). */
  const misspelt = new Set<string>();
  const visit = (issue: ZodIssue, prefix: Path) => {
    const path = [...prefix, ...(issue.path as Path)];
    const value = valueAt(data, path);
    if (issue.code === "unrecognized_keys") {
      const allowed = keysAt(path);
      for (const key of issue.keys) {
        const keyPath = [...path, key];
        const guess = closest(key, allowed);
        if (guess !== undefined) misspelt.add(formatPath([...path, guess]));
        out.push({
          path: formatPath(keyPath),
          message: `unknown key '${key}'`,
          ...pos.of(keyPath, { key: true }),
          hint: guess !== undefined
            ? `did you mean '${guess}'?`
            : allowed.length > 0
            ? `allowed keys: ${allowed.join(", ")}`
            : undefined,
        });
      }
      return;
    }
    if (issue.code === "invalid_union" && value !== null && typeof value === "object") {
      // an object given for "scalar or object": report the object branch's own problems
      const branches = issue.errors.filter((b) =>
        !b.some((i) =>
          (i.code === "invalid_type" || i.code === "invalid_value") && i.path.length === 0
        )
      );
      if (branches.length === 1) {
        for (const inner of branches[0]!) visit(inner, path);
        return;
      }
    }
    if (issue.code === "invalid_key") {
      const inner = issue.issues[0]?.message ?? "";
      out.push({
        path: formatPath(path),
        message: `key '${String(path[path.length - 1])}' ${
          isOwn(inner) ? inner : "is not allowed"
        }`,
        ...pos.of(path, { key: true }),
      });
      return;
    }
    // a misspelt choice (`backoff: exponentail`, `backend: redsi`), also where a number may
    // stand instead (`priority: hihg`)
    const choices = issue.code === "invalid_value"
      ? issue.values
      : issue.code === "invalid_union"
      ? issue.errors.flat().flatMap((i) =>
        i.code === "invalid_value" && i.path.length === 0 ? i.values : []
      )
      : [];
    const guess = typeof value === "string" && choices.length > 0
      ? closest(value, choices.map(String))
      : undefined;
    // one item where a list goes (`dependencies: a`): YAML's list of one
    const oneItem = issue.code === "invalid_type" && issue.expected === "array" &&
      (typeof value === "string" || typeof value === "number");
    out.push({
      path: formatPath(path),
      message: message(issue, value),
      ...pos.of(path),
      hint: guess !== undefined
        ? `did you mean '${guess}'?`
        : oneItem
        ? `a list of one: [${value}]`
        : undefined,
    });
  };
  for (const issue of zodIssues) visit(issue, []);
  // A key that is missing because it is misspelt (`mehtod:`, did you mean 'method'?) is said
  // once, as the unknown key.
  return out
    .filter((i) => !(i.message === "is required" && misspelt.has(i.path)))
    .map((i) => (i.hint === undefined ? (delete i.hint, i) : i));
}
