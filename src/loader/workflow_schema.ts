/**
 * The shape of a workflow file as a zod schema: the single source of the structural
 * rules (keys, types, enums) and of the JSON Schema that `gleitzeit workflow schema`
 * prints. Semantic rules (ids, dependencies, methods, references) live in semantics.ts.
 *
 * @module
 */

import { DURATION_PATTERN } from "../core/duration.ts";
import { isGrantProblem, parseNetworkGrant } from "../core/network_grant.ts";
import { isReservedSandboxPath } from "../core/sandbox_paths.ts";
import { z } from "zod";
import { closest } from "./suggest.ts";

const DURATION_ERROR =
  'must be a duration such as "30s", "5m", "1h", "500ms" or a number of seconds';

const duration = (what: string) =>
  z.union([
    z.number().positive({ error: "must be more than 0 seconds" }),
    z.string().regex(DURATION_PATTERN, { error: DURATION_ERROR }),
  ], { error: `must be a number of seconds or a duration such as "30s", "5m", "1h", "500ms"` })
    .meta({ description: `${what}: seconds, or a duration such as "30s", "5m", "1h", "500ms"` });

const delay = (what: string) =>
  z.union([
    z.number().nonnegative({ error: "must not be negative" }),
    z.string().regex(DURATION_PATTERN, { error: DURATION_ERROR }),
  ], { error: `must be a number of seconds (>= 0) or a duration such as "500ms", "2s"` })
    .meta({ description: `${what}: seconds, or a duration such as "500ms", "2s"` });

const priority = z.union([
  z.enum(["urgent", "high", "normal", "low"]),
  z.int(),
], { error: "must be urgent, high, normal, low or an integer" })
  .meta({
    description:
      "urgent (100), high (75), normal (50), low (25), or an integer; larger starts sooner",
  });

const retryObject = z.strictObject({
  max_attempts: z.int().min(1).meta({
    description: "All attempts, the first included (required in this form)",
  }).optional(),
  backoff: z.enum(["fixed", "linear", "exponential"]).optional()
    .meta({ description: "Delay growth between attempts (default exponential)" }),
  base_delay: delay("First delay (default 1 s)").optional(),
  max_delay: duration("Largest delay (default 60 s)").optional(),
  jitter: z.boolean().optional().meta({
    description: "Randomise delays within the cap (default true)",
  }),
});

// `max_attempts` is required in the object form: without it a task runs once, so the rest
// of the object (how to wait between attempts) would silently mean nothing. (A refinement,
// not a required key: it stays quiet when an unknown key is that key misspelt, which is
// reported with a suggestion; another misspelt key is reported beside it.)
const retryObjectWithAttempts = retryObject.superRefine((value, ctx) => {
  const misspelt = ctx.issues.some((issue) =>
    issue.code === "unrecognized_keys" &&
    issue.keys.some((key) => closest(key, Object.keys(retryObject.shape)) === "max_attempts")
  );
  if (value.max_attempts === undefined && !misspelt) {
    ctx.addIssue({
      code: "custom",
      path: ["max_attempts"],
      message: "missing: the number of attempts, the first included (e.g. 3); without it " +
        "the task runs once and the other retry settings do nothing",
    });
  }
});

const retry = z.union([z.int().min(1), retryObjectWithAttempts], {
  error: "must be a number of attempts or {max_attempts, backoff, base_delay, max_delay, jitter}",
}).meta({ description: "Retry policy, or a bare integer: the number of attempts" });

/** `host:port`: a host name or 127.x.x.x address (see core/network_grant.ts). */
export const HOST_PORT_PATTERN = /^[A-Za-z0-9._-]+:\d{1,5}$/;

const hostPort = z.string().superRefine((entry, ctx) => {
  const parsed = parseNetworkGrant(entry);
  if (isGrantProblem(parsed)) {
    ctx.addIssue({ code: "custom", message: `${parsed.problem} (${parsed.hint})` });
  }
}).meta({ pattern: HOST_PORT_PATTERN.source });

const sandboxMode = z.enum(["bwrap", "basic", "none"]);

/** A declared path; one that can never be granted is an error now, not at run time. */
const sandboxPath = (key: "read" | "write") =>
  z.string().min(1).superRefine((path, ctx) => {
    if (path.startsWith("/") && isReservedSandboxPath(path)) {
      ctx.addIssue({
        code: "custom",
        message: `${path} cannot be granted: it would cover the sandbox's own root, /gleitzeit, ` +
          `/proc, /dev or /sys (declare the directories the task needs, e.g. ${key}: [data/])`,
      });
    }
  });

const sandboxObject = z.strictObject({
  mode: sandboxMode.optional().meta({ description: "bwrap (isolated), basic (limits only), none" }),
  network: z.union([
    z.boolean(),
    z.array(hostPort),
  ], { error: 'must be true, false or a list of "host:port"' })
    .optional().meta({
      description: 'Network access: true, false, or allowed "host:port" entries',
    }),
  read: z.array(sandboxPath("read")).optional().meta({ description: "Extra readable paths" }),
  write: z.array(sandboxPath("write")).optional().meta({ description: "Writable paths" }),
  memory_mb: z.int().positive().optional().meta({ description: "Memory limit in MiB" }),
  cpu_seconds: z.number().positive().optional().meta({ description: "CPU time limit in seconds" }),
  timeout: duration("Wall-clock limit inside the sandbox").optional(),
  max_processes: z.int().positive().optional().meta({ description: "Process limit" }),
  file_size_mb: z.int().positive().optional().meta({ description: "Largest file written, MiB" }),
  open_files: z.int().positive().optional().meta({ description: "Open file descriptors" }),
});

const sandbox = z.union([sandboxMode, sandboxObject], {
  error:
    'must be "bwrap", "basic", "none" or {mode, network, read, write, memory_mb, cpu_seconds, timeout, max_processes, file_size_mb, open_files}',
}).meta({ description: "Sandbox for Python tasks: a mode, or detailed settings" });

const stringList = z.array(z.string().min(1));

/** One task as written (both dialects). */
export const taskSchema = z.strictObject({
  id: z.string().min(1).optional().meta({
    description: "Unique id; derived from name when absent",
  }),
  name: z.string().min(1).optional().meta({ description: "Human name; defaults to the id" }),
  description: z.string().optional().meta({ description: "Informational" }),
  protocol: z.string().min(1).optional()
    .meta({ description: "e.g. python/v1; inferred from the method when absent" }),
  method: z.string().min(1).meta({ description: "e.g. python/execute, llm/chat, echo" }),
  params: z.record(z.string(), z.unknown()).optional()
    .meta({ description: "Method parameters; strings may contain ${task.path} references" }),
  parameters: z.record(z.string(), z.unknown()).optional().meta({ description: "Alias of params" }),
  dependencies: stringList.optional().meta({ description: "Ids or names of tasks to wait for" }),
  depends_on: stringList.optional().meta({ description: "Alias of dependencies" }),
  priority: priority.optional(),
  timeout: duration("Timeout of one attempt").optional(),
  retry: retry.optional(),
  continue_on_failure: z.boolean().optional()
    .meta({ description: "A failure of this task does not fail the run" }),
  sandbox: sandbox.optional(),
  metadata: z.unknown().optional().meta({ description: "Informational, ignored" }),
});

/** A whole workflow file. */
export const workflowSchema = z.strictObject({
  $schema: z.string().optional().meta({ description: "JSON Schema of this file, for editors" }),
  name: z.string().min(1).meta({ description: "Name of the workflow" }),
  description: z.string().optional(),
  version: z.union([z.string(), z.number()]).optional().meta({ description: "Informational" }),
  params: z.record(
    z.string().regex(/^[A-Za-z0-9_-]+$/, { error: "must use only letters, digits, _ and -" }),
    z.unknown(),
  ).optional().meta({ description: "Workflow inputs with their defaults, used as ${params.name}" }),
  timeout: duration("Timeout of the whole run").optional(),
  max_parallel: z.int().positive().optional()
    .meta({ description: "Tasks running at once within one run" }),
  on_failure: z.enum(["fail_fast", "continue"]).optional()
    .meta({
      description: "fail_fast (default): stop starting tasks; continue: run independent branches",
    }),
  sandbox: sandbox.optional(),
  wait_for_completion: z.boolean().optional().meta({
    description: "Informational (older dialect)",
  }),
  metadata: z.unknown().optional().meta({ description: "Informational, ignored" }),
  tasks: z.array(taskSchema).min(1, { error: "a workflow needs at least one task" })
    .meta({ description: "The tasks, in file order" }),
}).meta({
  title: "Gleitzeit workflow",
  description: "A Gleitzeit workflow file (YAML or JSON)",
});

/** Keys a task may have, for "did you mean". */
export const TASK_KEYS: readonly string[] = Object.keys(taskSchema.shape);
/** Keys a workflow may have, for "did you mean". */
export const WORKFLOW_KEYS: readonly string[] = Object.keys(workflowSchema.shape);
/** Keys of a retry object. */
export const RETRY_KEYS: readonly string[] = Object.keys(retryObject.shape);
/** Keys of a sandbox object. */
export const SANDBOX_KEYS: readonly string[] = Object.keys(sandboxObject.shape);

/** The JSON Schema of the file format, for `gleitzeit workflow schema` and editors. */
export function workflowJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(workflowSchema, {
    io: "input",
    override: (ctx) => {
      // the refinement above, as JSON Schema says it
      if (ctx.zodSchema === retryObjectWithAttempts) ctx.jsonSchema.required = ["max_attempts"];
    },
  }) as Record<string, unknown>;
  // top-level `x-...` keys are the file's own (anchors to merge in; see load_workflow.ts)
  return { ...schema, patternProperties: { "^x-": {} } };
}
