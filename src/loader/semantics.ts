/**
 * The checks that need more than the file's shape: task ids and names, dependencies,
 * `${...}` references and the dependencies they imply, cycles, protocols and methods,
 * and params against each method's JSON Schema. Works on the raw data so it can report
 * alongside structural problems; a field of the wrong type is skipped here (the schema
 * already reported it).
 *
 * @module
 */

import { formatPath, type Issue } from "../core/errors.ts";
import { findCycle } from "../core/graph.ts";
import type { SchemaIssue } from "../core/json_schema.ts";
import { parseReference, REFERENCE_OR_ESCAPE, walkStrings } from "../core/references.ts";
import type { MethodSpec, ProtocolSpec } from "../providers/provider.ts";
import { IDENTIFIER, slugify } from "./normalize.ts";
import type { Positions } from "./positions.ts";
import { closest } from "./suggest.ts";

/** What the loader needs to know about protocols; a ProviderRegistry is one. */
export interface ProtocolCatalog {
  protocols(): ProtocolSpec[];
  protocol(protocol: string): ProtocolSpec | undefined;
  method(protocol: string, method: string): MethodSpec | undefined;
  inferProtocol(method: string): { protocol: string } | { error: string };
  validateParams(
    protocol: string,
    method: string,
    params: unknown,
    options?: { allowReferences?: boolean },
  ): SchemaIssue[];
}

type Path = (string | number)[];
type Obj = Record<string, unknown>;

/** What the checks found out about one task. */
export interface ResolvedTask {
  id: string;
  name: string;
  protocol: string;
  /** Declared dependencies (resolved to ids) then implied ones, without repeats. */
  dependencies: string[];
  /** The key the params were under (`params` or `parameters`). */
  paramsKey: "params" | "parameters";
}

interface Edge {
  to: string;
  path: Path;
  /** The reference text when the edge comes from a reference. */
  ref?: string;
}

const isObj = (v: unknown): v is Obj => v !== null && typeof v === "object" && !Array.isArray(v);

/** Runs every semantic check; `issues` is empty when the workflow is valid. */
export function checkSemantics(
  data: unknown,
  catalog: ProtocolCatalog,
  pos: Positions,
): { issues: Issue[]; tasks: ResolvedTask[] } {
  const issues: Issue[] = [];
  const add = (path: Path, message: string, hint?: string, key = false) => {
    const issue: Issue = { path: formatPath(path), message, ...pos.of(path, { key }) };
    if (hint !== undefined) issue.hint = hint;
    issues.push(issue);
  };
  const root = isObj(data) ? data : {};
  const rawTasks = Array.isArray(root.tasks) ? root.tasks : [];
  const inputs = isObj(root.params) ? root.params : undefined;

  // 1. ids and names
  // every task is checked; only those with a unique id join the graph
  const entries: { index: number; raw: Obj; id?: string; name: string }[] = [];
  const firstIndex = new Map<string, number>();
  rawTasks.forEach((raw, index) => {
    if (!isObj(raw)) return;
    const at: Path = ["tasks", index];
    const name = typeof raw.name === "string" && raw.name !== "" ? raw.name : undefined;
    let id: string | undefined;
    let idPath: Path = [...at, "id"];
    if (typeof raw.id === "string" && raw.id !== "") {
      id = raw.id;
      if (!IDENTIFIER.test(id)) {
        add(idPath, `id '${id}' may use only letters, digits, _ and -`, `try '${slugify(id)}'`);
      }
    } else if (raw.id === undefined && name !== undefined) {
      id = slugify(name);
      idPath = [...at, "name"];
      if (id === "") add(idPath, `cannot derive an id from name '${name}'`, "add an `id:`");
    } else if (raw.id === undefined) {
      add(at, "a task needs an id or a name");
    }
    if (id === undefined || id === "") {
      entries.push({ index, raw, name: name ?? "" });
      return;
    }
    if (id === "params") {
      add(idPath, "the id 'params' is reserved for workflow inputs (${params.name})");
    }
    const first = firstIndex.get(id);
    if (first !== undefined) {
      const where = pos.of(["tasks", first]);
      add(
        idPath,
        `duplicate task id '${id}' (first used by tasks[${first}] at line ${where.line})`,
        idPath[idPath.length - 1] === "name"
          ? "give the tasks distinct names or explicit ids"
          : undefined,
      );
      entries.push({ index, raw, name: name ?? id });
      return;
    }
    firstIndex.set(id, index);
    entries.push({ index, raw, id, name: name ?? id });
  });

  const ids = new Set(entries.flatMap((e) => (e.id === undefined ? [] : [e.id])));
  const byName = new Map<string, string[]>();
  for (const e of entries) {
    if (e.id !== undefined && e.name !== e.id) {
      byName.set(e.name, [...(byName.get(e.name) ?? []), e.id]);
    }
  }
  const known = [...ids, ...byName.keys()];
  /** The task id for an id or a name, or why there is none. */
  const resolve = (ref: string): { id: string } | { problem: string; hint?: string } => {
    const owners = byName.get(ref) ?? [];
    if (ids.has(ref) && owners.length > 0) {
      return {
        problem: `'${ref}' is the id of one task and the name of another (${owners.join(", ")})`,
        hint: "rename one of them: a reference cannot tell them apart",
      };
    }
    if (ids.has(ref)) return { id: ref };
    if (owners.length === 1) return { id: owners[0]! };
    if (owners.length > 1) {
      return {
        problem: `'${ref}' is the name of several tasks (${owners.join(", ")})`,
        hint: "use an id",
      };
    }
    const guess = closest(ref, known);
    return {
      problem: `no task '${ref}'`,
      hint: guess !== undefined ? `did you mean '${guess}'?` : `tasks: ${[...ids].join(", ")}`,
    };
  };

  const edges = new Map<string, Edge[]>();
  const resolved: ResolvedTask[] = [];
  for (const { index, raw, id, name } of entries) {
    const at: Path = ["tasks", index];
    const out: Edge[] = [];
    if (id !== undefined) edges.set(id, out);

    // 2. aliases
    const paramsKey = raw.params === undefined && raw.parameters !== undefined
      ? "parameters"
      : "params";
    if (raw.params !== undefined && raw.parameters !== undefined) {
      add(
        [...at, "parameters"],
        "both 'params' and 'parameters' given",
        "they are the same: keep one",
        true,
      );
    }
    const depsKey = raw.dependencies === undefined && raw.depends_on !== undefined
      ? "depends_on"
      : "dependencies";
    if (raw.dependencies !== undefined && raw.depends_on !== undefined) {
      add(
        [...at, "depends_on"],
        "both 'dependencies' and 'depends_on' given",
        "they are the same: keep one",
        true,
      );
    }

    // 3. declared dependencies
    const deps = raw[depsKey];
    if (Array.isArray(deps)) {
      deps.forEach((d, k) => {
        if (typeof d !== "string" || d === "") return;
        const path = [...at, depsKey, k];
        const r = resolve(d);
        if ("id" in r) out.push({ to: r.id, path });
        else add(path, `unknown dependency: ${r.problem}`, r.hint);
      });
    }

    // 4. references in params
    const params = raw[paramsKey];
    if (isObj(params)) {
      walkStrings(params, (text, path) => {
        if (!text.includes("${")) return;
        for (const m of text.matchAll(REFERENCE_OR_ESCAPE)) {
          if (m[1] === undefined) continue; // $${: a literal ${
          const report = (message: string, hint?: string) => {
            const issue: Issue = { path: formatPath(path), message, ...pos.ofText(path, m[0]) };
            if (hint !== undefined) issue.hint = hint;
            issues.push(issue);
          };
          let ref;
          try {
            ref = parseReference(m[1]!);
          } catch (e) {
            // a task's name with spaces (`${Load Data.result}`): its id is what refers to it
            const expr = m[1]!;
            const dot = expr.indexOf(".");
            const named = dot > 0 ? resolve(expr.slice(0, dot).trim()) : undefined;
            report(
              (e as Error).message,
              named !== undefined && "id" in named
                ? `refer to task '${expr.slice(0, dot).trim()}' by its id: \${${named.id}${
                  expr.slice(dot)
                }}`
                : undefined,
            );
            continue;
          }
          if (ref.root === "params") {
            const input = ref.path[0];
            if (input === undefined) {
              report(`reference ${m[0]} must name an input: \${params.name}`);
            } else if (
              (root.params === undefined || inputs) && !Object.hasOwn(inputs ?? {}, String(input))
            ) {
              const guess = closest(String(input), Object.keys(inputs ?? {}));
              report(
                `reference ${m[0]}: no workflow input '${input}'`,
                guess !== undefined
                  ? `did you mean '${guess}'?`
                  : "declare it under `params:` at the top of the file",
              );
            }
            continue;
          }
          const r = resolve(ref.root);
          if ("id" in r) out.push({ to: r.id, path, ref: m[0] });
          else report(`reference ${m[0]}: ${r.problem}`, r.hint);
        }
        const open = text.replace(REFERENCE_OR_ESCAPE, (m) => " ".repeat(m.length)).indexOf("${");
        if (open >= 0) {
          issues.push({
            path: formatPath(path),
            message: "'${' without a closing '}'",
            ...pos.ofText(path, text.slice(open).split("\n")[0]!),
          });
        }
      }, [...at, paramsKey]);
    }

    // 5. protocol, method, params schema
    const protocol = checkMethod(raw, at, catalog, add);
    if (protocol !== undefined && (params === undefined || isObj(params))) {
      const method = raw.method as string;
      const props = catalog.method(protocol, method)?.params.properties ?? {};
      for (
        const si of catalog.validateParams(protocol, method, params ?? {}, {
          allowReferences: true,
        })
      ) {
        const path = [...at, paramsKey, ...si.path];
        const unknownKey = si.message.startsWith("is not a known parameter");
        const key = String(si.path[si.path.length - 1]);
        const guess = unknownKey ? closest(key, Object.keys(props)) : undefined;
        add(
          path,
          si.message,
          guess !== undefined
            ? `did you mean '${guess}'?`
            : unknownKey
            ? PARAM_HINTS[`${method} ${key}`]
            : undefined,
          unknownKey,
        );
      }
    }

    const dependencies = [...new Set(out.map((e) => e.to))];
    resolved.push({ id: id ?? "", name, protocol: protocol ?? "", dependencies, paramsKey });
  }

  checkCycles(edges, (edge, message, hint) => {
    const issue: Issue = {
      path: formatPath(edge.path),
      message,
      ...(edge.ref !== undefined ? pos.ofText(edge.path, edge.ref) : pos.of(edge.path)),
    };
    if (hint !== undefined) issue.hint = hint;
    issues.push(issue);
  });
  return { issues, tasks: resolved };
}

type Add = (path: Path, message: string, hint?: string, key?: boolean) => void;

/** Checks the protocol and method of a task; returns the protocol when both are known. */
function checkMethod(raw: Obj, at: Path, catalog: ProtocolCatalog, add: Add): string | undefined {
  if (typeof raw.method !== "string" || raw.method === "") return undefined;
  const method = raw.method;
  const allMethods = () => catalog.protocols().flatMap((p) => p.methods.map((m) => m.name));
  if (raw.protocol !== undefined) {
    if (typeof raw.protocol !== "string" || raw.protocol === "") return undefined;
    const spec = catalog.protocol(raw.protocol);
    if (!spec) {
      const names = catalog.protocols().map((p) => p.protocol);
      const guess = closest(raw.protocol, names);
      add(
        [...at, "protocol"],
        `unknown protocol '${raw.protocol}'`,
        (guess !== undefined ? `did you mean '${guess}'? ` : "") +
          `known protocols: ${names.join(", ")}`,
      );
      return undefined;
    }
    if (!catalog.method(raw.protocol, method)) {
      const names = spec.methods.map((m) => m.name);
      const guess = closest(method, names);
      add(
        [...at, "method"],
        `protocol '${raw.protocol}' has no method '${method}'`,
        (guess !== undefined ? `did you mean '${guess}'? ` : "") +
          `its methods: ${names.join(", ")}`,
      );
      return undefined;
    }
    return raw.protocol;
  }
  const inferred = catalog.inferProtocol(method);
  if ("protocol" in inferred) return inferred.protocol;
  // `echo/error`: a protocol's name in front of a method it has (methods are unqualified)
  const bare = method.includes("/") ? method.slice(method.lastIndexOf("/") + 1) : undefined;
  const guess = bare !== undefined && allMethods().includes(bare)
    ? bare
    : closest(method, allMethods());
  const prefix = method.includes("/") ? method.slice(0, method.indexOf("/")) : undefined;
  const external = prefix !== undefined &&
    !catalog.protocols().some((p) => p.protocol.startsWith(`${prefix}/`));
  add(
    [...at, "method"],
    inferred.error,
    guess !== undefined
      ? `did you mean '${guess}'?`
      : `known methods: ${
        [...new Set(allMethods())].join(", ")
      }; or name the protocol with \`protocol:\`` +
        (external
          ? `; methods of other providers ('${prefix}/...') come from the config file ` +
            "(--config; see examples/providers/)"
          : ""),
  );
  return undefined;
}

/** Hints for parameters that belong to a neighbouring method. */
const PARAM_HINTS: Record<string, string> = {
  "llm/chat prompt": "llm/chat takes `messages: [{role: user, content: ...}]`; for one prompt " +
    "use llm/generate",
  "llm/generate messages": "llm/generate takes `prompt` (and `system`); for messages use llm/chat",
  "python/execute script": "to run a file use python/script {script, args}",
  "python/script code": "for inline code use python/execute {code}",
};

/** Reports every cycle (one issue each): finds one, drops its closing edge, looks again. */
function checkCycles(
  edges: Map<string, Edge[]>,
  report: (edge: Edge, message: string, hint?: string) => void,
): void {
  const nodes = [...edges.keys()];
  const depsOf = (id: string) => (edges.get(id) ?? []).map((e) => e.to);
  for (let n = 0; n <= nodes.length; n++) {
    const cycle = findCycle(nodes, depsOf);
    if (!cycle) return;
    const [from, to] = [cycle[0]!, cycle[1]!];
    const list = edges.get(from)!;
    const edge = list.find((e) => e.to === to)!;
    const text = cycle.join(" -> ");
    report(
      edge,
      from === to ? `task '${from}' depends on itself (${text})` : `dependency cycle: ${text}`,
      edge.ref !== undefined
        ? `the reference ${edge.ref} makes '${from}' wait for '${to}'`
        : `remove '${to}' from the dependencies of '${from}' (or the dependency that closes ` +
          "the loop elsewhere): tasks run only after what they depend on",
    );
    edges.set(from, list.filter((e) => e.to !== to));
  }
}
