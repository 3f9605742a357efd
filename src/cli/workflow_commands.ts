/** `gleitzeit workflow validate | schema | graph`: work on files without running them. @module */

import { locateImage } from "../providers/ollama/images.ts";
import { type ExitCode, GleitzeitError, WorkflowValidationError } from "../core/errors.ts";
import { topologicalOrder } from "../core/graph.ts";
import type { Workflow } from "../core/workflow.ts";
import { loadWorkflowFile, workflowJsonSchema } from "../loader/load_workflow.ts";
import { configFromFlags, type GlobalOptions, setupRegistry } from "./context.ts";
import type { ProviderRegistry } from "../providers/registry.ts";
import { colors, err, out, printJson } from "./output.ts";
import { errorJson, reportError } from "./errors.ts";
import { declaredPath } from "../providers/python/sandbox_policy.ts";

/**
 * `workflow validate FILE...`: every problem of every file at once (a file that cannot be
 * read does not stop the others); exit 0 when all are valid, else the first failing file's
 * code (2 for an invalid or missing file). `--json`: one file's report as an object, several
 * as `{valid, files: [...]}`.
 */
export async function validateCommand(
  files: string[],
  globals: GlobalOptions,
): Promise<ExitCode> {
  const config = await configFromFlags(globals);
  const registry = await setupRegistry(config);
  try {
    if (files.length === 1 && globals.json) {
      const report = await validateOne(files[0], registry, globals, true);
      printJson(report.json);
      return report.code;
    }
    const reports = [];
    for (const file of files) {
      reports.push(await validateOne(file, registry, globals, files.length === 1));
    }
    const failed = reports.filter((r) => r.code !== 0);
    if (globals.json) {
      printJson({ valid: failed.length === 0, files: reports.map((r) => r.json) });
    } else if (files.length > 1) {
      const c = colors(failed.length ? "stderr" : "stdout");
      (failed.length ? err : out)(
        failed.length
          ? `${c.red("error:")} ${failed.length} of ${files.length} files invalid: ${
            failed.map((r) => r.file).join(", ")
          }`
          : `${c.green("✓")} all ${files.length} files are valid`,
      );
      if (failed.length) err(c.dim("hint: each file's problems are listed above, with its name"));
    }
    return failed[0]?.code ?? 0;
  } finally {
    await registry.close();
  }
}

/**
 * One file of `workflow validate`: its report printed (text), or returned (`json`). When it
 * is the only one (`single`), errors other than an invalid workflow (a file not found, say)
 * are thrown, as any command's are; else they are reported here and counted, and warnings
 * name the file.
 */
async function validateOne(
  file: string,
  registry: ProviderRegistry,
  globals: GlobalOptions,
  single: boolean,
): Promise<{ file: string; code: ExitCode; json: Record<string, unknown> }> {
  try {
    const wf = await loadWorkflowFile(file, registry);
    const warnings = await missingFiles(wf, registry);
    if (!globals.json) {
      for (const w of warnings) {
        err(colors("stderr").yellow(`warning: ${single ? "" : `${file}: `}${w}`));
      }
      const c = colors("stdout");
      out(
        `${c.green("✓")} ${file}: workflow '${wf.name}' is valid (${tasksText(wf.tasks.length)})`,
      );
    }
    return {
      file,
      code: 0,
      json: { valid: true, file, workflow: wf.name, tasks: wf.tasks.length, issues: [], warnings },
    };
  } catch (e) {
    if (e instanceof WorkflowValidationError) {
      if (globals.json) {
        // why the exit is 2, on stderr too (stdout is the report)
        const n = e.issues.length;
        err(
          `${colors("stderr").red("error:")} invalid workflow: ${n} problem${
            n === 1 ? "" : "s"
          } in ${file}`,
        );
      } else reportError(e, globals.debug === true);
      // (the same keys as a valid file's report: warnings are looked for only once it is valid)
      return {
        file,
        code: e.exitCode,
        json: { valid: false, file, issues: e.issues, warnings: [] },
      };
    }
    if (single || !(e instanceof GleitzeitError)) throw e;
    reportError(e, globals.debug === true);
    return {
      file,
      code: e.exitCode,
      json: { valid: false, file, issues: [], warnings: [], error: errorJson(e) },
    };
  }
}

/**
 * Files the workflow names that are not there now: `python/script` scripts and declared
 * sandbox paths (a run would fail those tasks), and protocols nothing in `registry` serves
 * though their family knows them (`mcp/nosuch`). Warnings, not errors: an earlier task or
 * step may still make the files, and a worker's configuration may serve the protocol.
 */
export async function missingFiles(wf: Workflow, registry?: ProviderRegistry): Promise<string[]> {
  const base = wf.baseDir ?? Deno.cwd();
  const found = async (path: string) => {
    try {
      await Deno.stat(declaredPath(path, base));
      return true;
    } catch (e) {
      return !(e instanceof Deno.errors.NotFound); // (not ours to look at: not "missing")
    }
  };
  const literal = (v: unknown): v is string => typeof v === "string" && !v.includes("${");
  const declared = (sandbox: unknown): [string, string][] => {
    if (sandbox === null || typeof sandbox !== "object") return [];
    const s = sandbox as { read?: unknown; write?: unknown };
    return (["read", "write"] as const).flatMap((key) =>
      Array.isArray(s[key]) ? (s[key] as unknown[]).filter(literal).map((p) => [key, p]) : []
    ) as [string, string][];
  };
  const out: string[] = [];
  for (const [key, path] of declared(wf.sandbox)) {
    if (!await found(path)) out.push(`the workflow's sandbox ${key} path ${path} does not exist`);
  }
  for (const t of wf.tasks) {
    // a protocol its family knows that nothing here serves (`mcp/nosuch`): a worker's own
    // configuration may (so it is not an error), but not this one's
    const unserved = registry?.unserved(t.protocol);
    if (unserved) out.push(`task '${t.id}': ${t.protocol}: ${unserved.message} here`);
    if (t.method === "python/script" && literal(t.params.script) && !await found(t.params.script)) {
      out.push(`task '${t.id}': the script ${t.params.script} does not exist`);
    }
    for (const [key, path] of declared(t.sandbox)) {
      if (!await found(path)) {
        out.push(`task '${t.id}': the sandbox ${key} path ${path} does not exist`);
      }
    }
    // images an LLM task reads (llm/vision, generate, chat messages): missing, or outside the
    // workflow's directory, they would fail the task when it runs
    if (t.protocol === "llm/v1") {
      const messages = Array.isArray(t.params.messages) ? t.params.messages : [];
      const lists = [t.params.images, ...messages.map((m) => (m as { images?: unknown })?.images)];
      for (const image of lists.flatMap((l) => Array.isArray(l) ? l.filter(literal) : [])) {
        try {
          await locateImage(image, base);
        } catch (e) {
          if (e instanceof GleitzeitError) out.push(`task '${t.id}': ${e.message}`);
        }
      }
    }
  }
  return out;
}

async function loadWith(file: string, globals: GlobalOptions): Promise<Workflow> {
  const config = await configFromFlags(globals);
  const registry: ProviderRegistry = await setupRegistry(config);
  try {
    return await loadWorkflowFile(file, registry);
  } finally {
    await registry.close();
  }
}

/** `workflow schema`: the JSON Schema of workflow files. */
export function schemaCommand(): ExitCode {
  printJson(workflowJsonSchema());
  return 0;
}

/** Groups tasks into levels: each level depends only on earlier ones. */
export function levels(wf: Workflow): string[][] {
  const deps = new Map(wf.tasks.map((t) => [t.id, t.dependencies]));
  const order = topologicalOrder(wf.tasks.map((t) => t.id), (id) => deps.get(id) ?? []);
  const level = new Map<string, number>();
  for (const id of order) {
    const l = Math.max(-1, ...(deps.get(id) ?? []).map((d) => level.get(d) ?? -1)) + 1;
    level.set(id, l);
  }
  const out: string[][] = [];
  for (const id of order) (out[level.get(id)!] ??= []).push(id);
  return out;
}

/** `workflow graph FILE`: the dependency graph as levels, Mermaid or DOT. */
export async function graphCommand(
  file: string,
  opts: { format?: string },
  globals: GlobalOptions,
): Promise<ExitCode> {
  const wf = await loadWith(file, globals);
  const format = opts.format ?? "text";
  if (globals.json) {
    printJson({
      workflow: wf.name,
      levels: levels(wf),
      tasks: wf.tasks.map((t) => ({ id: t.id, method: t.method, dependencies: t.dependencies })),
    });
  } else if (format === "mermaid") {
    // Nodes by position (t0, t1, ...): an id such as `end` or `a-b` would break the chart;
    // quotes in a label are Mermaid's entity
    const node = new Map(wf.tasks.map((t, i) => [t.id, `t${i}`]));
    const label = (text: string) => text.replaceAll('"', "#quot;");
    out("graph TD");
    for (const t of wf.tasks) {
      out(`  ${node.get(t.id)}["${label(t.name)}<br/>${label(t.method)}"]`);
      for (const d of t.dependencies) out(`  ${node.get(d)} --> ${node.get(t.id)}`);
    }
  } else if (format === "dot") {
    const quoted = (text: string) => text.replaceAll("\\", "\\\\").replaceAll('"', '\\"');
    out("digraph workflow {");
    for (const t of wf.tasks) {
      out(`  "${quoted(t.id)}" [label="${quoted(t.name)}\\n${quoted(t.method)}"];`);
      for (const d of t.dependencies) out(`  "${quoted(d)}" -> "${quoted(t.id)}";`);
    }
    out("}");
  } else {
    const c = colors("stdout");
    out(`${c.bold(wf.name)} (${tasksText(wf.tasks.length)})`);
    levels(wf).forEach((ids, i) => {
      out(`${c.dim(`level ${i}:`)} ${ids.join(", ")}`);
    });
  }
  return 0;
}

function tasksText(n: number): string {
  return `${n} task${n === 1 ? "" : "s"}`;
}
