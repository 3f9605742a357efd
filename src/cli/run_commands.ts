/** `gleitzeit run`, `workflow submit` and `task submit`: start runs and wait for them. @module */

import { enqueueRun, listWorkers } from "../distributed/work_queue.ts";
import type { RedisStore } from "../persistence/redis_store.ts";
import { createApp, openConfiguredStore } from "../app.ts";
import {
  checkDependencyReferences,
  dependencies,
  orphanedDependency,
  waitForTasks,
  withDependencyResults,
} from "../engine/task_dependencies.ts";
import type { ProviderRegistry } from "../providers/registry.ts";
import { type ResolvedConfig, type SandboxMode, sandboxStrength } from "../config/config.ts";
import { ERROR_CODES, type ExitCode, GleitzeitError } from "../core/errors.ts";
import { refersToAny } from "../core/references.ts";
import { retryPolicy } from "../loader/normalize.ts";
import { PRIORITY_WORDS, type Workflow } from "../core/workflow.ts";
import type { RunOutcome } from "../engine/engine.ts";
import { loadWorkflowFile } from "../loader/load_workflow.ts";
import type { TaskRecord } from "../persistence/store.ts";
import {
  configFromFlags,
  type GlobalOptions,
  interruptSignal,
  parseInputs,
  parseSeconds,
  resumeCommand,
  setupRegistry,
} from "./context.ts";
import { colors, err, out, printJson, visible } from "./output.ts";
import { printSummary, ProgressRenderer } from "./render.ts";
import { missingFiles } from "./workflow_commands.ts";
import { noWorkers } from "./stored_state.ts";
import { stuck, stuckNotice } from "./task_state_commands.ts";
import { closest } from "../loader/suggest.ts";

/** Options of the commands that start a run. */
export interface SubmitOptions {
  params?: string;
  param?: string[];
  wait?: boolean;
  detach?: boolean;
  outputFile?: string;
  /** `task submit`: with --detach, stdout ends with the task's id too (after the run's). */
  printTaskId?: boolean;
}

/** JSON form of a task, as printed by `--json` and written by `--output-file`. */
export function taskJson(t: TaskRecord): Record<string, unknown> {
  return {
    id: t.taskId,
    task_id: t.id,
    name: t.name,
    method: t.method,
    protocol: t.protocol,
    state: t.state,
    attempts: t.attempts,
    started_at: t.startedAt === undefined ? null : new Date(t.startedAt).toISOString(),
    finished_at: t.finishedAt === undefined ? null : new Date(t.finishedAt).toISOString(),
    duration_ms: t.startedAt !== undefined && t.finishedAt !== undefined
      ? t.finishedAt - t.startedAt
      : null,
    result: t.result === undefined ? null : t.result,
    error: t.error ?? null,
    reason: t.reason ?? null,
  };
}

/** JSON form of a finished run. */
export function outcomeJson(outcome: RunOutcome, workflow: string): Record<string, unknown> {
  const results: Record<string, unknown> = {};
  for (const t of outcome.tasks) if (t.state === "completed") results[t.taskId] = t.result ?? null;
  return {
    run_id: outcome.runId,
    workflow,
    state: outcome.state,
    duration_ms: outcome.durationMs,
    // a continued run: since it first started (as `workflow status` counts)
    ...(outcome.sinceStartMs !== undefined ? { since_start_ms: outcome.sinceStartMs } : {}),
    error: outcome.error ?? null,
    tasks: outcome.tasks.map(taskJson),
    results,
  };
}

/**
 * The exit code of a finished run: 0 completed, 130 cancelled, 3 when a task failed because a
 * provider or backend was unavailable (so scripts can tell "fix the setup" from "fix the work"),
 * otherwise the run error's code (1 for failed tasks).
 */
export function exitCodeOf(outcome: RunOutcome): ExitCode {
  if (outcome.state === "completed") return 0;
  if (outcome.state === "cancelled") return 130;
  const unavailable = outcome.tasks.some((t) =>
    t.state === "failed" && t.error !== undefined && ERROR_CODES[t.error.code]?.exit === 3
  );
  if (unavailable) return 3;
  return outcome.error ? ERROR_CODES[outcome.error.code]?.exit ?? 1 : 1;
}

/**
 * The line on stderr that says why a run ended other than completed, where no progress lines
 * said it (`-q`, `--json`: their report is on stdout): its state, the first task that failed
 * (or the run's own error) and where to look.
 */
export function failureLine(outcome: RunOutcome): string {
  const failed = outcome.tasks.filter((t) => t.state === "failed");
  // the one the exit code says (3: a provider unavailable, "fix the setup") first
  const setup = failed.find((t) => t.error && ERROR_CODES[t.error.code]?.exit === 3);
  const first = setup ?? failed[0];
  const why = first
    ? `: task ${first.taskId} failed${
      first.error ? `: ${first.error.message.split("\n")[0]}` : ""
    }${failed.length > 1 ? ` (and ${failed.length - 1} more)` : ""}`
    : outcome.error
    ? `: ${outcome.error.message.split("\n")[0]}`
    : "";
  const hint = first?.error?.hint ?? outcome.error?.hint;
  // (a task's own words: their control characters written out, see visible)
  return visible(
    `error: run ${outcome.runId} ${outcome.state}${why}; see \`gleitzeit workflow status ` +
      `${outcome.runId}\``,
  ) + (hint ? `\nhint: ${visible(hint.split("\n")[0]!)}` : "");
}

/** Runs (or, with --detach, records) a workflow and reports it. */
export async function submitWorkflow(
  workflow: Workflow,
  config: ResolvedConfig,
  globals: GlobalOptions,
  opts: SubmitOptions,
  registry: ProviderRegistry,
  streamTokens = false,
): Promise<ExitCode> {
  const inputs = parseInputs(opts.params, opts.param ?? []);
  if (opts.outputFile) await checkWritable(opts.outputFile);
  const json = globals.json === true;
  const quiet = globals.quiet === true; // -q, before or after the command
  const renderer = new ProgressRenderer({
    quiet: json || quiet,
    // -q: the run's id all the same, at its start (on stderr; --json's stdout stays the report;
    // --json alone says nothing there unless something fails)
    announce: !json || quiet,
    streamTokens,
    maxAttempts: (id) => workflow.tasks.find((t) => t.id === id)?.retry.maxAttempts,
  });
  const app = await createApp(config, { onEvent: renderer.handle, registry });
  try {
    if (opts.detach) {
      if (app.store.backend === "memory") {
        throw new GleitzeitError(
          "USAGE_ERROR",
          "--detach with the memory backend: the run would be gone when this command ends",
          { hint: "use --backend sqlite (the default) or redis, or run it without --detach" },
        );
      }
      const run = await app.engine.createRun(workflow, { params: inputs, state: "queued" });
      // On Redis, `gleitzeit worker` processes take it from the queue of runs.
      const queued = app.store.backend === "redis";
      if (queued) await enqueueRun(app.store as RedisStore, run.id);
      // A one-task run (`task submit`): its task's id too.
      const only = workflow.tasks.length === 1
        ? await app.store.getRunTask(run.id, workflow.tasks[0]!.id)
        : undefined;
      const detached = {
        run_id: run.id,
        state: run.state,
        workflow: workflow.name,
        ...(only ? { task_id: only.id } : {}),
      };
      // the report there is of the run as recorded: no results yet
      if (opts.outputFile) {
        await Deno.writeTextFile(opts.outputFile, JSON.stringify(detached, null, 2) + "\n");
      }
      if (queued && (await listWorkers(app.store as RedisStore)).length === 0) {
        err(colors("stderr").yellow(`warning: ${noWorkers(app.store as RedisStore, run.id)}`));
      }
      if (json) {
        printJson(detached);
      } else {
        out(run.id);
        err(
          colors("stderr").dim(
            queued
              ? `queued for \`gleitzeit worker\`; follow it with \`gleitzeit workflow status ${run.id}\``
              : `recorded; run it with \`${resumeCommand(run.id, globals)}\` (workers need the ` +
                "Redis backend)",
          ),
        );
        // (`run --detach` prints the run id alone: scripts take it as `RUN=$(...)`)
        if (only && opts.printTaskId) out(`task id: ${only.id}`);
      }
      return 0;
    }
    for (
      const warning of [
        ...await missingFiles(workflow, registry),
        ...sandboxWarnings(
          workflow,
          config.sandbox,
          config.sources.sandbox,
          config.configPath,
          config.minSandbox,
        ),
      ]
    ) {
      err(colors("stderr").yellow(`warning: ${warning}`));
    }
    const { signal, dispose } = interruptSignal(json);
    let outcome: RunOutcome;
    try {
      outcome = await app.engine.run(workflow, { params: inputs, signal });
    } finally {
      dispose();
    }
    const report = outcomeJson(outcome, workflow.name);
    // `task submit`: its task's id at the top, as with --detach
    if (opts.printTaskId && outcome.tasks.length === 1) report.task_id = outcome.tasks[0]!.id;
    if (opts.outputFile) {
      await Deno.writeTextFile(opts.outputFile, JSON.stringify(report, null, 2) + "\n");
    }
    if (json) printJson(report);
    else {
      printSummary(outcome);
      if (outcome.tasks.length === 1 && outcome.tasks[0]) {
        // last on stdout, for scripts: `gleitzeit task submit ... | tail -1`
        out(`task id: ${outcome.tasks[0].id}`);
      }
      if (outcome.state === "cancelled") {
        err(
          colors("stderr").dim(
            config.backend === "memory"
              ? "the memory backend keeps nothing: this run cannot be resumed"
              : `resume with: ${resumeCommand(outcome.runId, globals)}`,
          ),
        );
      }
    }
    const code = exitCodeOf(outcome);
    if (code !== 0 && (json || quiet)) err(failureLine(outcome));
    return code;
  } finally {
    await app.close();
  }
}

/** `gleitzeit run FILE` / `gleitzeit workflow submit FILE`. */
export async function runFileCommand(
  file: string,
  opts: SubmitOptions,
  globals: GlobalOptions,
): Promise<ExitCode> {
  const config = await configFromFlags(globals);
  const registry = await setupRegistry(config);
  let workflow: Workflow;
  try {
    workflow = await loadWorkflowFile(file, registry);
  } catch (e) {
    await registry.close();
    throw e;
  }
  return await submitWorkflow(workflow, config, globals, opts, registry);
}

/** Options of `task submit`. */
export interface TaskSubmitOptions extends SubmitOptions {
  code?: string;
  prompt?: string;
  model?: string;
  messages?: string;
  system?: string;
  protocol?: string;
  priority?: string;
  timeout?: string;
  retries?: string;
  dependsOn?: string;
}

/** `gleitzeit task submit METHOD`: a one-task workflow. */
export async function taskSubmitCommand(
  method: string,
  opts: TaskSubmitOptions,
  globals: GlobalOptions,
): Promise<ExitCode> {
  const config = await configFromFlags(globals);
  const registry = await setupRegistry(config);
  try {
    return await submitTask(method, opts, globals, config, registry);
  } catch (e) {
    await registry.close();
    throw e;
  }
}

async function submitTask(
  method: string,
  opts: TaskSubmitOptions,
  globals: GlobalOptions,
  config: ResolvedConfig,
  registry: ProviderRegistry,
): Promise<ExitCode> {
  let protocol = opts.protocol;
  if (!protocol) {
    const inferred = registry.inferProtocol(method);
    if ("error" in inferred) {
      const protocols = registry.protocols();
      const known = protocols.flatMap((p) => p.methods.map((m) => m.name));
      const guess = closest(method, known);
      // `echo/error` for method `error` of protocol echo/v1: the protocol's name and the method
      const slash = method.lastIndexOf("/");
      const within = slash > 0
        ? protocols.filter((p) =>
          p.protocol.startsWith(`${method.slice(0, slash)}/`) &&
          p.methods.some((m) => m.name === method.slice(slash + 1))
        )
        : [];
      throw new GleitzeitError("USAGE_ERROR", inferred.error, {
        hint: within.length > 0
          ? `method '${method.slice(slash + 1)}' of ${
            within.map((p) => p.protocol).join(" or ")
          }: ` +
            `task submit ${method.slice(slash + 1)} --protocol ${within[0]!.protocol}`
          : guess !== undefined
          ? `did you mean ${guess}? (methods: gleitzeit provider list)`
          : "give the protocol with --protocol, e.g. --protocol echo/v1",
      });
    }
    protocol = inferred.protocol;
  }
  const params = parseInputs(opts.params, []);
  if (opts.code !== undefined) params.code = opts.code;
  if (opts.model !== undefined) params.model = opts.model;
  if (opts.prompt !== undefined) {
    // chat takes messages: --prompt is the user's one message
    if (method === "llm/chat" && opts.messages === undefined) {
      params.messages = [{ role: "user", content: opts.prompt }];
    } else params.prompt = opts.prompt;
  }
  if (opts.system !== undefined) params.system = opts.system;
  if (opts.messages !== undefined) {
    try {
      params.messages = JSON.parse(opts.messages);
    } catch (e) {
      throw new GleitzeitError(
        "USAGE_ERROR",
        `--messages is not valid JSON: ${(e as Error).message}`,
        {
          hint: `example: --messages '[{"role":"user","content":"ping"}]'`,
        },
      );
    }
  }
  let taskParams = params;
  let awaits: string[] | undefined;
  if (opts.dependsOn !== undefined) {
    const ids = opts.dependsOn.split(",").map((s) => s.trim()).filter(Boolean);
    if (opts.detach) {
      // Recorded now; the task waits for them wherever its run is executed (a worker,
      // `workflow resume`: see TaskSpec.awaits). What can be told now is told now.
      const store = await openConfiguredStore(config);
      try {
        checkDependencyReferences(params, await dependencies(store, ids));
      } finally {
        await store.close();
      }
      awaits = ids;
    } else {
      const deps = await waitForDependencies(
        config,
        ids,
        globals.json === true || globals.quiet === true,
      );
      taskParams = withDependencyResults(params, deps);
    }
  } else if (refersToAny(params)) {
    throw new GleitzeitError("USAGE_ERROR", "a single task can only refer to --depends-on tasks", {
      hint: "add --depends-on TASK_ID, or use a workflow file",
    });
  }
  // (with --detach, the references to the dependencies are still there)
  const issues = registry.validateParams(protocol, method, taskParams, {
    allowReferences: awaits !== undefined,
  });
  if (issues.length > 0) {
    const first = issues[0]!;
    throw new GleitzeitError(
      "INVALID_PARAMS",
      `invalid params for ${method}: ${["params", ...first.path].join(".")} ${first.message}`,
      { hint: paramsHint(registry, protocol, method) },
    );
  }
  let priority = 50;
  if (opts.priority !== undefined) {
    priority = opts.priority in PRIORITY_WORDS
      ? PRIORITY_WORDS[opts.priority as keyof typeof PRIORITY_WORDS]
      : Number(opts.priority);
    if (!Number.isInteger(priority)) {
      throw new GleitzeitError("USAGE_ERROR", `--priority '${opts.priority}' is not valid`, {
        hint: "urgent, high, normal, low or an integer",
      });
    }
  }
  // The workflow file's default policy (exponential from 1 s, jittered); --retries counts the
  // attempts after the first (`retry: N` in a file counts them all).
  const retry = retryPolicy(opts.retries === undefined ? 1 : Number(opts.retries) + 1);
  const workflow: Workflow = {
    name: `task ${method}`,
    params: {},
    onFailure: "fail_fast",
    baseDir: Deno.cwd(),
    tasks: [{
      id: "task",
      name: method,
      protocol,
      method,
      params: taskParams,
      dependencies: [],
      priority,
      retry,
      continueOnFailure: false,
      ...(opts.timeout !== undefined ? { timeoutMs: parseSeconds(opts.timeout) * 1000 } : {}),
      ...(awaits ? { awaits } : {}),
    }],
  };
  const stream = protocol === "llm/v1" && Deno.stderr.isTerminal() && !globals.json;
  // --params are the task's parameters here, not workflow inputs
  const { params: _taskParams, ...submit } = opts;
  return await submitWorkflow(
    workflow,
    config,
    globals,
    { ...submit, printTaskId: true },
    registry,
    stream,
  );
}

/** Waits (Ctrl-C aborts) until the `--depends-on` tasks completed; returns their records. */
async function waitForDependencies(
  config: ResolvedConfig,
  ids: string[],
  quiet: boolean,
): Promise<Map<string, TaskRecord>> {
  const store = await openConfiguredStore(config);
  const { signal, dispose } = interruptSignal(true);
  try {
    const told = new Set<string>(); // runs said to be executed by nothing
    return await waitForTasks(store, ids, signal, (pending) => {
      if (quiet) return;
      const c = colors("stderr");
      err(c.dim(`waiting for ${pending.map((t) => `${t.id} (${t.state})`).join(", ")}`));
    }, async (pending) => {
      // A run that nothing executes would keep this waiting for ever. Where nothing can take
      // it over (SQLite), a dependency of an interrupted run fails this, as `task result
      // --wait` does; otherwise it is said once per run (a worker, or a resume, may end it).
      // (one look per run, not per task: a run's tasks share its answer)
      for (const t of new Map(pending.map((t) => [t.runId, t])).values()) {
        const why = await stuck(store, t);
        const orphaned = await orphanedDependency(store, t, why, "submit this task again");
        if (orphaned) throw orphaned;
        // (under --json too, on stderr: a wait that nothing would end must not be silent)
        if (why && !told.has(t.runId)) {
          told.add(t.runId);
          err(colors("stderr").dim(`  ${await stuckNotice(store, t.runId, why)}`));
        }
      }
    });
  } finally {
    dispose();
    await store.close();
  }
}

export function modeOf(declared: unknown): string | undefined {
  if (typeof declared === "string") return declared;
  if (declared !== null && typeof declared === "object") {
    const mode = (declared as { mode?: unknown }).mode;
    return typeof mode === "string" ? mode : undefined;
  }
  return undefined;
}

/**
 * What a sandbox weaker than bubblewrap means here: as root, also that tasks run as root (only
 * bubblewrap runs them as another user).
 */
export function weakerIsolation(): string {
  return "weaker isolation than bubblewrap" +
    (runsAsRoot() ? ", and as root (only bubblewrap runs tasks as another user)" : "");
}

let root: boolean | undefined;

/**
 * Whether this process runs as root: the owner of a file it makes (Deno.uid() is not among
 * the CLI's permissions). Asked once; false where no file can be made.
 */
function runsAsRoot(): boolean {
  if (root === undefined) {
    root = false;
    try {
      const probe = Deno.makeTempFileSync({ prefix: "gleitzeit-uid-" });
      try {
        root = Deno.statSync(probe).uid === 0;
      } finally {
        Deno.removeSync(probe);
      }
    } catch {
      // (no temp dir to write: said as not root)
    }
  }
  return root;
}

/** Who chose the configured sandbox mode, in words. */
export function configSource(configuredBy?: string, configPath?: string): string {
  return configuredBy === "flag"
    ? "--sandbox"
    : configuredBy === "env"
    ? "the environment"
    : configPath !== undefined
    ? `python.sandbox in ${configPath}`
    : "the configuration";
}

/** Python tasks that will run with less isolation than bubblewrap, and who chose that. */
export function sandboxWarnings(
  workflow: Workflow,
  configured: string,
  configuredBy?: string,
  configPath?: string,
  minSandbox: SandboxMode = "none",
): string[] {
  const python = workflow.tasks.filter((t) => t.protocol === "python/v1");
  if (python.length === 0) return [];
  const out: string[] = [];
  const wfMode = modeOf(workflow.sandbox);
  const base = wfMode ?? configured;
  // (not those the least allowed refuses: they fail with SANDBOX_UNAVAILABLE, never run so)
  const weaker = python.filter((t) => {
    const mode = (modeOf(t.sandbox) ?? base) as SandboxMode;
    return mode !== "bwrap" && sandboxStrength(mode) >= sandboxStrength(minSandbox);
  });
  if (weaker.length === 0) return out;
  const source = wfMode !== undefined ? "the workflow" : configSource(configuredBy, configPath);
  // one line per mode and who chose it
  const groups = new Map<string, { mode: string; by: string; ids: string[] }>();
  for (const t of weaker) {
    const own = modeOf(t.sandbox);
    const mode = own ?? base;
    const by = own !== undefined ? "the task" : source;
    const group = groups.get(`${mode} ${by}`) ?? { mode, by, ids: [] };
    group.ids.push(t.id);
    groups.set(`${mode} ${by}`, group);
  }
  for (const { mode, by, ids } of groups.values()) {
    const which = ids.length === python.length
      ? "Python tasks run"
      : `Python task${ids.length > 1 ? "s" : ""} ${ids.join(", ")} run${ids.length > 1 ? "" : "s"}`;
    out.push(`${which} with sandbox '${mode}' (chosen by ${by}): ${weakerIsolation()}`);
  }
  return out;
}

/** Fails before the run, not after it, when the report could not be written. */
async function checkWritable(path: string): Promise<void> {
  try {
    const f = await Deno.open(path, { write: true, create: true });
    f.close();
  } catch (e) {
    throw new GleitzeitError(
      "USAGE_ERROR",
      `cannot write --output-file ${path}: ${
        e instanceof Deno.errors.NotFound ? "no such directory" : (e as Error).message
      }`,
      { hint: "give a path in an existing, writable directory" },
    );
  }
}

/** `llm/generate takes: model (required), prompt (required), system, ...`. */
function paramsHint(registry: ProviderRegistry, protocol: string, method: string): string {
  const schema = registry.method(protocol, method)?.params;
  const names = Object.keys(schema?.properties ?? {});
  if (names.length === 0) return "pass the parameters as --params JSON";
  const required = new Set((schema?.required as string[] | undefined) ?? []);
  return `${method} takes: ${
    names.map((n) => (required.has(n) ? `${n} (required)` : n)).join(", ")
  }`;
}
