/**
 * Workflow files -> validated {@link Workflow}s. Parsing keeps node positions so every
 * problem, structural or semantic, is reported at once with file:line:column and a path.
 *
 * @module
 */

import { dirname, resolve } from "node:path";
import { type Document, isPair, isScalar, isSeq, LineCounter, parseDocument, visit } from "yaml";
import { formatPath, GleitzeitError, type Issue, WorkflowValidationError } from "../core/errors.ts";
import { inexactMessage, isInexactInteger, quoteHint } from "../core/exact_numbers.ts";
import type { TaskSpec, Workflow } from "../core/workflow.ts";
import { durationMs } from "../core/duration.ts";
import { priorityValue, retryPolicy } from "./normalize.ts";
import { Positions } from "./positions.ts";
import { schemaIssues } from "./schema_issues.ts";
import { checkSemantics, type ProtocolCatalog, type ResolvedTask } from "./semantics.ts";
import { workflowJsonSchema, workflowSchema } from "./workflow_schema.ts";

export type { ProtocolCatalog } from "./semantics.ts";
export { workflowJsonSchema };

/** Options of {@link parseWorkflow}. */
export interface ParseOptions {
  /** Directory relative paths in params resolve against (stored as `Workflow.baseDir`). */
  baseDir?: string;
}

type FileData = ReturnType<typeof workflowSchema.parse>;
type TaskData = FileData["tasks"][number];

const byPosition = (a: Issue, b: Issue) =>
  (a.line ?? Infinity) - (b.line ?? Infinity) || (a.column ?? 0) - (b.column ?? 0);

/**
 * Where a YAML error is best shown: an unclosed quote where it opens (the parser reports it
 * at the end of the text, past the last line), anything else where the parser says.
 */
function errorOffset(e: { code: string; message: string; pos: [number, number] }, text: string) {
  const quote = e.code === "MISSING_CHAR" ? /closing (["'])quote/.exec(e.message)?.[1] : undefined;
  if (quote === undefined) return e.pos[0];
  let at = text.lastIndexOf(quote, e.pos[0] - 1);
  // (inside double quotes, \" does not close them; inside single quotes, '' does not)
  while (at > 0 && quote === '"' && text[at - 1] === "\\") at = text.lastIndexOf(quote, at - 2);
  while (at > 0 && quote === "'" && text[at - 1] === "'") at = text.lastIndexOf(quote, at - 2);
  return at >= 0 ? at : e.pos[0];
}

/**
 * A flow map or sequence that the parser found unclosed (`{a: 1` and a new line): where it
 * opens. The parser reports it on the line after it, where it found out; the `{` or `[` that
 * lacks its end is the mistake (the innermost such one before the error).
 */
function unclosedFlow(
  doc: Document,
  e: { message: string; pos: [number, number] },
  text: string,
): { offset: number; opener: string } | undefined {
  const closer = /end with an? ([}\]])\s*$/.exec(e.message)?.[1];
  if (closer === undefined) return undefined;
  let found: number | undefined;
  visit(doc, {
    Collection(_key, node) {
      const range = node.range;
      // (one opened on the error's own line: the parser's place is as good)
      if (!node.flow || !range || text.lastIndexOf("\n", e.pos[0] - 1) < range[0]) return;
      const token = node.srcToken;
      const closed = token?.type === "flow-collection" &&
        token.end.some((t) => t.type === "flow-map-end" || t.type === "flow-seq-end");
      if (!closed && (found === undefined || range[0] > found)) found = range[0];
    },
  });
  return found === undefined ? undefined : { offset: found, opener: closer === "}" ? "{" : "[" };
}

/**
 * Parses and validates a workflow given as YAML or JSON text. `file` names it in messages.
 * Throws {@link WorkflowValidationError} listing every problem, sorted by position.
 */
export function parseWorkflow(
  text: string,
  file: string,
  catalog: ProtocolCatalog,
  options: ParseOptions = {},
): Workflow {
  const lines = new LineCounter();
  // merge: YAML's `<<: *anchor`, with anchors kept under top-level `x-` keys (see below)
  // (source tokens: whether a flow collection has its closing bracket, for syntax errors)
  const doc = parseDocument(text, {
    lineCounter: lines,
    prettyErrors: false,
    merge: true,
    keepSourceTokens: true,
  });
  const pos = new Positions(doc, lines, text);
  // a .json file is judged as JSON first (YAML's words for a missing comma would mislead)
  if (/\.json$/i.test(file)) strictJson(text, file, pos);
  if (doc.errors.length > 0) {
    // The parser's first error only: one slip (an unquoted `: ` in a value, a missing `}`)
    // makes it stumble on the lines after it, and those follow-on errors only bury the cause.
    const e = doc.errors[0]!;
    const unclosed = unclosedFlow(doc, e, text);
    const more = doc.errors.length - 1;
    throw new WorkflowValidationError(file, [{
      path: "",
      message: unclosed === undefined
        ? e.message
        : `${e.message} (this ${unclosed.opener} is not closed before line ${
          pos.ofOffset(e.pos[0]).line
        })`,
      ...pos.ofOffset(unclosed?.offset ?? errorOffset(e, text)),
      hint: "YAML syntax: check indentation, quotes and `key: value` colons around this line" +
        (more > 0
          ? ` (${more} later error${more === 1 ? " follows" : "s follow"} from it, not shown)`
          : ""),
    }]);
  }
  const data: unknown = withoutExtensions(doc.toJS({ maxAliasCount: 1000 }));
  if (data === null || data === undefined) {
    throw new WorkflowValidationError(file, [
      {
        path: "",
        message: "the file is empty",
        line: 1,
        column: 1,
        hint: "a workflow needs `name:` and `tasks:`",
      },
    ]);
  }
  const parsed = workflowSchema.safeParse(data);
  const issues = parsed.success ? [] : schemaIssues(parsed.error.issues, data, pos);
  const semantic = checkSemantics(data, catalog, pos);
  issues.push(...semantic.issues, ...inexactIntegers(doc, pos));
  if (issues.length > 0 || !parsed.success) {
    throw new WorkflowValidationError(file, issues.sort(byPosition));
  }
  return build(parsed.data, semantic.tasks, options, (path) => pos.sourceOf(path));
}

/**
 * Integers written beyond ±2^53, anywhere in the file (but `x-` keys): every value becomes a JSON number
 * (a double), which would round them with no word said (see core/exact_numbers.ts).
 */
function inexactIntegers(doc: Document, pos: Positions): Issue[] {
  const issues: Issue[] = [];
  visit(doc, {
    Scalar(_key, node, ancestors) {
      if (!isInexactInteger(node.value, node.source)) return;
      const path: (string | number)[] = [];
      const chain = [...ancestors, node];
      for (let i = 0; i < chain.length - 1; i++) {
        const at = chain[i], next = chain[i + 1];
        if (isPair(at)) {
          if (next !== at.value) return; // a key: not a value passed on
          path.push(isScalar(at.key) ? String(at.key.value) : String(at.key));
        } else if (isSeq(at)) path.push(at.items.indexOf(next as never));
      }
      // (top-level `x-` keys hold anchors only: never passed on)
      if (typeof path[0] === "string" && path[0].startsWith("x-")) return;
      issues.push({
        path: formatPath(path),
        message: inexactMessage(node.source, node.value as number),
        ...pos.ofOffset(node.range?.[0] ?? 0),
        hint: quoteHint(node.source),
      });
    },
  });
  return issues;
}

function build(
  data: FileData,
  resolved: ResolvedTask[],
  options: ParseOptions,
  sourceOf: (path: (string | number)[]) => string | undefined,
): Workflow {
  const workflow: Workflow = {
    name: data.name,
    params: data.params ?? {},
    onFailure: data.on_failure ?? "fail_fast",
    tasks: data.tasks.map((t, i) => task(t, resolved[i]!)),
  };
  if (data.description !== undefined) workflow.description = data.description;
  if (data.version !== undefined) {
    // `version: 1.0` is a number to YAML; keep what was written
    workflow.version = typeof data.version === "string"
      ? data.version
      : sourceOf(["version"]) ?? String(data.version);
  }
  if (data.timeout !== undefined) workflow.timeoutMs = durationMs(data.timeout);
  if (data.max_parallel !== undefined) workflow.maxParallel = data.max_parallel;
  if (data.sandbox !== undefined) workflow.sandbox = data.sandbox;
  if (options.baseDir !== undefined) workflow.baseDir = options.baseDir;
  return workflow;
}

function task(t: TaskData, r: ResolvedTask): TaskSpec {
  const spec: TaskSpec = {
    id: r.id,
    name: r.name,
    protocol: r.protocol,
    method: t.method,
    params: t.params ?? t.parameters ?? {},
    dependencies: r.dependencies,
    priority: priorityValue(t.priority),
    retry: retryPolicy(t.retry),
    continueOnFailure: t.continue_on_failure ?? false,
  };
  if (t.timeout !== undefined) spec.timeoutMs = durationMs(t.timeout);
  if (t.sandbox !== undefined) spec.sandbox = t.sandbox;
  return spec;
}

/**
 * Reads and validates a workflow file; sets `sourcePath` (absolute) and `baseDir` (its
 * directory). A file that cannot be read is a WORKFLOW_FILE_ERROR.
 */
export async function loadWorkflowFile(path: string, catalog: ProtocolCatalog): Promise<Workflow> {
  const absolute = resolve(path);
  let text: string;
  try {
    text = await Deno.readTextFile(absolute);
  } catch (e) {
    const missing = e instanceof Deno.errors.NotFound;
    const isDir = e instanceof Deno.errors.IsADirectory ||
      (e instanceof Error && /directory/i.test(e.message));
    throw new GleitzeitError(
      "WORKFLOW_FILE_ERROR",
      missing
        ? `workflow file not found: ${path}`
        : isDir
        ? `${path} is a directory, not a workflow file`
        : `cannot read workflow file ${path}: ${(e as Error).message}`,
      {
        cause: e,
        details: { path: absolute },
        hint: missing
          ? `check the path (resolved to ${absolute})`
          : isDir
          ? "give the path of a .yaml or .json file, not a directory"
          : "check that the file exists and is readable",
      },
    );
  }
  const workflow = parseWorkflow(text, path, catalog, { baseDir: dirname(absolute) });
  workflow.sourcePath = absolute;
  return workflow;
}

/** One line per issue: `file:line:column: path: message (hint)`. */
export function formatIssues(err: WorkflowValidationError): string[] {
  return err.issues.map((i) => {
    const where = i.line !== undefined ? `${err.file}:${i.line}:${i.column ?? 1}` : err.file;
    const path = i.path === "" ? "" : `${i.path}: `;
    const hint = i.hint === undefined ? "" : ` (${i.hint})`;
    return `${where}: ${path}${i.message}${hint}`;
  });
}

/** A `.json` file must be JSON, not just YAML that looks like it (no trailing commas, comments). */
function strictJson(text: string, file: string, pos: Positions): void {
  try {
    JSON.parse(text);
  } catch (e) {
    const message = ((e as Error).message.split("\n")[0] ?? "").replace(/, (\.\.\.)?".*$/, "");
    const at = /position (\d+)/.exec(message);
    // V8 does not always say where; a trailing comma is the usual culprit
    const offset = at ? Number(at[1]) : /,\s*[\]}]/.exec(text)?.index;
    const where = offset !== undefined ? pos.ofOffset(offset) : { line: 1, column: 1 };
    throw new WorkflowValidationError(file, [{
      path: "",
      message: `not valid JSON: ${message.replace(/ in JSON at position \d+.*$/, "")}`,
      ...where,
      hint: "JSON allows no trailing commas or comments; or name the file .yaml",
    }]);
  }
}

/**
 * Top-level keys starting with `x-` are the file's own (as in Compose files): a place for
 * anchors that tasks merge in with `<<: *name`. They are not part of the workflow.
 */
function withoutExtensions(data: unknown): unknown {
  if (data === null || typeof data !== "object" || Array.isArray(data)) return data;
  return Object.fromEntries(Object.entries(data).filter(([key]) => !key.startsWith("x-")));
}
