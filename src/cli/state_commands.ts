/**
 * Commands over stored state: `workflow list|status|resume|cancel`, `task list|status|result|
 * cancel`, `backend ...`, `system status|config`.
 *
 * @module
 */

import type { Command } from "@commander-js/extra-typings";
import Table from "cli-table3";
import { createApp, openConfiguredStore } from "../app.ts";
import type { ResolvedConfig } from "../config/config.ts";
import { type ExitCode, GleitzeitError } from "../core/errors.ts";
import { RUN_STATES, type RunState, TASK_STATES, type TaskState } from "../core/states.ts";
import { displayState, localOwnerPid, ownerAlive } from "../engine/liveness.ts";
import type { RunRecord, Store, TaskFilter, TaskRecord } from "../persistence/store.ts";
import { configFromFlags, type GlobalOptions, interruptSignal } from "./context.ts";
import { colors, formatDuration, out, preview, printJson, term } from "./output.ts";
import { printSummary, ProgressRenderer, taskDetail } from "./render.ts";
import { exitCodeOf, outcomeJson, taskJson } from "./run_commands.ts";

/** Config fields as the file names them, with their environment variable, flag and unit scale. */
const CONFIG_KEYS: [string, string, string?, string?, number?][] = [
  ["backend", "persistence.backend", "GLEITZEIT_PERSISTENCE_BACKEND", "--backend"],
  ["sqlitePath", "persistence.sqlite_path", "GLEITZEIT_SQLITE_PATH", "--sqlite-path"],
  ["redisUrl", "persistence.redis_url", "GLEITZEIT_REDIS_URL", "--redis-url"],
  ["redisPrefix", "persistence.redis_prefix"],
  ["ollamaUrl", "ollama.url", "GLEITZEIT_OLLAMA_URL", "--ollama-url"],
  ["ollamaMaxConcurrent", "ollama.max_concurrent"],
  [
    "maxConcurrentTasks",
    "engine.max_concurrent_tasks",
    "GLEITZEIT_MAX_CONCURRENT_TASKS",
    "--max-concurrent",
  ],
  ["healthIntervalMs", "engine.health_interval", undefined, undefined, 1000],
  ["python", "python.executable", "GLEITZEIT_PYTHON", "--python"],
  ["sandbox", "python.sandbox", undefined, "--sandbox"],
  ["logLevel", "log_level", "GLEITZEIT_LOG_LEVEL"],
];

function table(head: string[]): Table.Table {
  return new Table({
    head,
    style: { head: term.stdoutTty && !term.noColor ? ["cyan"] : [], border: [] },
  });
}

function iso(ms: number | undefined): string | null {
  return ms === undefined ? null : new Date(ms).toISOString();
}

/** JSON form of a run (without its tasks). */
export function runJson(run: RunRecord, now = Date.now()): Record<string, unknown> {
  return {
    run_id: run.id,
    workflow: run.workflowName,
    state: displayState(run, now),
    stored_state: run.state,
    params: run.params,
    created_at: iso(run.createdAt),
    started_at: iso(run.startedAt),
    finished_at: iso(run.finishedAt),
    duration_ms: run.startedAt !== undefined && run.finishedAt !== undefined
      ? run.finishedAt - run.startedAt
      : null,
    owner: run.owner ?? null,
    heartbeat_at: iso(run.heartbeatAt),
    error: run.error ?? null,
    tasks: run.workflow.tasks.length,
  };
}

async function withStore<T>(
  globals: GlobalOptions,
  fn: (store: Store, config: ResolvedConfig) => Promise<T>,
): Promise<T> {
  const config = await configFromFlags(globals);
  const store = await openConfiguredStore(config);
  try {
    return await fn(store, config);
  } finally {
    await store.close();
  }
}

async function mustRun(store: Store, id: string): Promise<RunRecord> {
  const run = await store.getRun(id);
  if (!run) {
    throw new GleitzeitError("RUN_NOT_FOUND", `no run ${id} in the ${store.backend} backend`, {
      hint: "list runs with `gleitzeit workflow list` (and check --backend)",
    });
  }
  return run;
}

async function mustTask(store: Store, id: string): Promise<TaskRecord> {
  let task = await store.getTask(id);
  if (!task && id.includes("/")) {
    const [runId, taskId] = [id.slice(0, id.indexOf("/")), id.slice(id.indexOf("/") + 1)];
    task = await store.getRunTask(runId, taskId);
  }
  if (!task) {
    throw new GleitzeitError("TASK_NOT_FOUND", `no task ${id} in the ${store.backend} backend`, {
      hint: "task ids look like task_...; or use RUN_ID/TASK_ID; list with `gleitzeit task list`",
    });
  }
  return task;
}

function checkState(value: string | undefined, allowed: readonly string[], what: string): void {
  if (value !== undefined && !allowed.includes(value)) {
    throw new GleitzeitError("USAGE_ERROR", `unknown ${what} state '${value}'`, {
      hint: `one of ${allowed.join(", ")}`,
    });
  }
}

interface ListOptions {
  status?: string;
  workflowId?: string;
  workflowName?: string;
  nameFilter?: string;
  limit?: string;
}

function limitOf(opts: ListOptions, def: number): number {
  if (opts.limit === undefined) return def;
  const n = Number(opts.limit);
  if (!Number.isInteger(n) || n <= 0) {
    throw new GleitzeitError(
      "USAGE_ERROR",
      `--limit must be a positive integer, got '${opts.limit}'`,
      {
        hint: "e.g. --limit 20",
      },
    );
  }
  return n;
}

async function listRuns(store: Store, opts: ListOptions): Promise<RunRecord[]> {
  checkState(opts.status, RUN_STATES, "run");
  const now = Date.now();
  const limit = limitOf(opts, 20);
  const storedState = opts.status === "interrupted" ? "running" : opts.status;
  const runs = await store.listRuns({
    ...(storedState ? { state: storedState as RunState } : {}),
    ...(opts.workflowName ? { workflowName: opts.workflowName } : {}),
    ...(opts.nameFilter ? { nameFilter: opts.nameFilter } : {}),
    ...(opts.status ? {} : { limit }),
  });
  return runs.filter((r) => !opts.status || displayState(r, now) === opts.status).slice(0, limit);
}

function printRuns(runs: RunRecord[], json: boolean): void {
  const now = Date.now();
  if (json) return printJson(runs.map((r) => runJson(r, now)));
  if (runs.length === 0) return out("no runs");
  const t = table(["run", "workflow", "state", "tasks", "created", "duration"]);
  for (const r of runs) {
    t.push([
      r.id,
      preview(r.workflowName, 40),
      displayState(r, now),
      String(r.workflow.tasks.length),
      new Date(r.createdAt).toISOString().replace("T", " ").slice(0, 19),
      r.startedAt !== undefined && r.finishedAt !== undefined
        ? formatDuration(r.finishedAt - r.startedAt)
        : "-",
    ]);
  }
  out(t.toString());
}

async function listTasks(store: Store, opts: ListOptions): Promise<TaskRecord[]> {
  checkState(opts.status, TASK_STATES, "task");
  const filter: TaskFilter = { limit: limitOf(opts, 50) };
  if (opts.status) filter.state = opts.status as TaskState;
  if (opts.workflowId) filter.runId = opts.workflowId;
  if (opts.workflowName) filter.workflowName = opts.workflowName;
  if (opts.nameFilter) filter.nameFilter = opts.nameFilter;
  return await store.listTasks(filter);
}

function printTasks(tasks: TaskRecord[], json: boolean): void {
  if (json) return printJson(tasks.map((t) => ({ run_id: t.runId, ...taskJson(t) })));
  if (tasks.length === 0) return out("no tasks");
  const t = table(["task id", "run", "task", "method", "state", "attempts", "result / error"]);
  for (const task of tasks) {
    t.push([
      task.id,
      task.runId,
      task.taskId,
      task.method,
      task.state,
      String(task.attempts),
      taskDetail(task, 40),
    ]);
  }
  out(t.toString());
}

async function printRunStatus(store: Store, run: RunRecord, json: boolean): Promise<void> {
  const tasks = await store.listTasks({ runId: run.id });
  if (json) return printJson({ ...runJson(run), tasks: tasks.map(taskJson) });
  const c = colors("stdout");
  const state = displayState(run);
  out(`${c.bold(run.id)}  ${run.workflowName}  ${state}`);
  if (run.error) out(c.dim(`  ${run.error.message}`));
  printSummary({
    runId: run.id,
    state,
    durationMs: (run.finishedAt ?? Date.now()) - (run.startedAt ?? run.createdAt),
    tasks,
    ...(run.error ? { error: run.error } : {}),
  });
  if (state === "interrupted" || state === "cancelled" || state === "queued") {
    out(c.dim(`continue it with: gleitzeit workflow resume ${run.id}`));
  } else if (state === "failed") {
    out(c.dim(`run the failed and skipped tasks again with: gleitzeit workflow resume ${run.id}`));
  }
}

/** Cancels a run: signals its live owner on this host, or marks it cancelled in the store. */
async function cancelRun(store: Store, run: RunRecord): Promise<string> {
  const now = Date.now();
  if (run.state === "completed" || run.state === "failed" || run.state === "cancelled") {
    throw new GleitzeitError("USAGE_ERROR", `run ${run.id} already ${run.state}`, {
      hint: run.state === "completed"
        ? "nothing to cancel"
        : `nothing is running; \`gleitzeit workflow resume ${run.id}\` would start it again`,
    });
  }
  if (run.state === "running" && ownerAlive(run, now)) {
    const pid = localOwnerPid(run.owner);
    if (pid === undefined) {
      throw new GleitzeitError(
        "USAGE_ERROR",
        `run ${run.id} is running on another machine (${run.owner})`,
        {
          hint: "stop it there with Ctrl-C; it stays resumable",
        },
      );
    }
    Deno.kill(pid, "SIGTERM");
    return `asked process ${pid} to cancel run ${run.id}`;
  }
  const tasks = await store.listTasks({ runId: run.id });
  await store.finishTasks(
    tasks.filter((t) => t.state !== "completed" && t.state !== "failed" && t.state !== "skipped")
      .map((t) => ({
        runId: run.id,
        taskId: t.taskId,
        state: "cancelled" as const,
        at: now,
        reason: "cancelled by user",
        ...(t.state === "running" ? { attempt: t.attempts } : {}),
      })),
  );
  await store.updateRun(run.id, {
    state: "cancelled",
    finishedAt: now,
    error: { code: "WORKFLOW_CANCELLED", message: "cancelled by user", retryable: false },
  });
  return `cancelled run ${run.id}`;
}

/** Registers the state commands on the program and its `workflow` and `task` groups. */
export function registerStateCommands(
  program: Command,
  workflow: Command,
  task: Command,
  setExit: (code: ExitCode) => void,
): void {
  const g = (cmd: Command<unknown[], Record<string, unknown>>) =>
    cmd.optsWithGlobals() as GlobalOptions;
  const listOpts = <C extends Command<unknown[], Record<string, unknown>>>(
    cmd: C,
    tasks: boolean,
  ) => {
    cmd.option("--status <state>", "only this state")
      .option("--workflow-name <name>", "only runs of this workflow")
      .option("--name-filter <text>", tasks ? "task name contains" : "workflow name contains")
      .option("--limit <n>", "at most this many");
    if (tasks) cmd.option("--workflow-id <run>", "only tasks of this run");
    return cmd;
  };

  // workflow list | status | resume | cancel
  const wList = listOpts(workflow.command("list").description("stored runs, newest first"), false);
  wList.action(async () => {
    const opts = wList.opts() as ListOptions;
    await withStore(
      g(wList),
      async (store) => printRuns(await listRuns(store, opts), g(wList).json === true),
    );
    setExit(0);
  });
  const wStatus = workflow.command("status").description("a run and its tasks").argument(
    "<run-id>",
  );
  wStatus.action(async (id) => {
    await withStore(g(wStatus), async (store) => {
      await printRunStatus(store, await mustRun(store, id), g(wStatus).json === true);
    });
    setExit(0);
  });
  const wResume = workflow.command("resume").description(
    "continue an interrupted, cancelled, failed or queued run",
  )
    .argument("<run-id>").option("-q, --quiet", "no progress lines");
  wResume.action(async (id, opts) => {
    const globals = g(wResume);
    const config = await configFromFlags(globals);
    const json = globals.json === true;
    const renderer = new ProgressRenderer({ quiet: json || opts.quiet === true });
    const app = await createApp(config, { onEvent: renderer.handle });
    try {
      await mustRun(app.store, id);
      const { signal, dispose } = interruptSignal(json);
      try {
        const outcome = await app.engine.execute(id, { signal });
        const run = await app.store.getRun(id);
        if (json) printJson(outcomeJson(outcome, run?.workflowName ?? ""));
        else printSummary(outcome);
        setExit(exitCodeOf(outcome));
      } finally {
        dispose();
      }
    } finally {
      await app.close();
    }
  });
  const wCancel = workflow.command("cancel").description("cancel a run").argument("<run-id>");
  wCancel.action(async (id) => {
    await withStore(g(wCancel), async (store) => {
      const message = await cancelRun(store, await mustRun(store, id));
      if (g(wCancel).json) printJson({ run_id: id, message });
      else out(message);
    });
    setExit(0);
  });

  // task list | status | result | cancel
  const tList = listOpts(task.command("list").description("stored tasks"), true);
  tList.action(async () => {
    const opts = tList.opts() as ListOptions;
    await withStore(
      g(tList),
      async (store) => printTasks(await listTasks(store, opts), g(tList).json === true),
    );
    setExit(0);
  });
  const tStatus = task.command("status").description("a task and its attempts").argument(
    "<task-id>",
  );
  tStatus.action(async (id) => {
    await withStore(g(tStatus), async (store) => {
      const t = await mustTask(store, id);
      const attempts = await store.listAttempts(t.runId, t.taskId);
      if (g(tStatus).json) {
        printJson({
          run_id: t.runId,
          ...taskJson(t),
          attempt_history: attempts.map((a) => ({
            attempt: a.attempt,
            state: a.state,
            started_at: iso(a.startedAt),
            finished_at: iso(a.finishedAt),
            error: a.error ?? null,
          })),
        });
        return;
      }
      out(`${t.id}  ${t.runId}/${t.taskId}  ${t.method}  ${t.state}`);
      const at = table(["attempt", "state", "started", "duration", "error"]);
      for (const a of attempts) {
        at.push([
          String(a.attempt),
          a.state,
          iso(a.startedAt) ?? "-",
          a.finishedAt !== undefined ? formatDuration(a.finishedAt - a.startedAt) : "-",
          a.error ? preview(a.error.message, 50) : "",
        ]);
      }
      if (attempts.length > 0) out(at.toString());
      const detail = taskDetail(t, 100);
      if (detail) out(detail);
    });
    setExit(0);
  });
  const tResult = task.command("result").description("a task's result as JSON").argument(
    "<task-id>",
  );
  tResult.action(async (id) => {
    let code: ExitCode = 0;
    await withStore(g(tResult), async (store) => {
      const t = await mustTask(store, id);
      if (t.state !== "completed") {
        throw new GleitzeitError(
          "TASK_RESULT_ERROR",
          `task ${id} has no result: it is ${t.state}`,
          {
            hint: t.error ? t.error.message : `see \`gleitzeit task status ${id}\``,
          },
        );
      }
      printJson(g(tResult).json ? { task_id: t.id, result: t.result ?? null } : t.result ?? null);
    });
    setExit(code);
    code = 0;
  });
  const tCancel = task.command("cancel").description("cancel a task (and the run it belongs to)")
    .argument("<task-id>");
  tCancel.action(async (id) => {
    await withStore(g(tCancel), async (store) => {
      const t = await mustTask(store, id);
      const message = await cancelRun(store, await mustRun(store, t.runId));
      if (g(tCancel).json) printJson({ task_id: t.id, run_id: t.runId, message });
      else out(message);
    });
    setExit(0);
  });

  // backend ...
  const backend = program.command("backend").description("inspect the persistence backend");
  const bStats = backend.command("get-stats").description("counts of runs and tasks by state");
  bStats.action(async () => {
    await withStore(g(bStats), async (store) => {
      const stats = await store.stats();
      if (g(bStats).json) return printJson(stats);
      out(`backend: ${stats.backend}`);
      out(
        `runs: ${stats.totalRuns}  ${
          Object.entries(stats.runs).map(([k, v]) => `${k}=${v}`).join(" ")
        }`,
      );
      out(
        `tasks: ${stats.totalTasks}  ${
          Object.entries(stats.tasks).map(([k, v]) => `${k}=${v}`).join(" ")
        }`,
      );
    });
    setExit(0);
  });
  const bTasks = listOpts(backend.command("list-tasks").description("stored tasks"), true);
  bTasks.action(async () => {
    await withStore(
      g(bTasks),
      async (store) =>
        printTasks(await listTasks(store, bTasks.opts() as ListOptions), g(bTasks).json === true),
    );
    setExit(0);
  });
  const bRuns = listOpts(backend.command("list-workflows").description("stored runs"), false);
  bRuns.action(async () => {
    await withStore(
      g(bRuns),
      async (store) =>
        printRuns(await listRuns(store, bRuns.opts() as ListOptions), g(bRuns).json === true),
    );
    setExit(0);
  });
  const bTask = backend.command("get-task").description("one task as JSON").argument("<task-id>");
  bTask.action(async (id) => {
    await withStore(g(bTask), async (store) => {
      const t = await mustTask(store, id);
      printJson({ run_id: t.runId, ...taskJson(t) });
    });
    setExit(0);
  });
  const bRun = backend.command("get-workflow").description("one run as JSON").argument("<run-id>");
  bRun.action(async (id) => {
    await withStore(g(bRun), async (store) => {
      const run = await mustRun(store, id);
      const tasks = await store.listTasks({ runId: id });
      printJson({ ...runJson(run), tasks: tasks.map(taskJson) });
    });
    setExit(0);
  });
  const bResult = backend.command("get-result").description("one task's result as JSON").argument(
    "<task-id>",
  );
  bResult.action(async (id) => {
    await withStore(g(bResult), async (store) => {
      const t = await mustTask(store, id);
      printJson({
        task_id: t.id,
        state: t.state,
        result: t.result ?? null,
        error: t.error ?? null,
      });
    });
    setExit(0);
  });
  const bByName = backend.command("get-results-by-workflow")
    .description("results of the latest run of a workflow (by name)").argument("<name>")
    .option("--limit <n>", "runs to include (newest first)", "1");
  bByName.action(async (name, opts) => {
    await withStore(g(bByName), async (store) => {
      // the newest finished runs (a queued or running run has no results yet)
      const all = await store.listRuns({ workflowName: name });
      const finished = all.filter((r) => r.state === "completed" || r.state === "failed");
      const runs = (finished.length > 0 ? finished : all).slice(0, limitOf(opts, 1));
      if (runs.length === 0) {
        throw new GleitzeitError("WORKFLOW_NOT_FOUND", `no runs of workflow '${name}'`, {
          hint: "names are exact; see `gleitzeit workflow list`",
        });
      }
      const out = [];
      for (const run of runs) {
        const tasks = await store.listTasks({ runId: run.id });
        const results: Record<string, unknown> = {};
        for (const t of tasks) {
          results[t.taskId] = t.state === "completed" ? t.result ?? null : null;
        }
        out.push({ run_id: run.id, state: displayState(run), results });
      }
      printJson(out);
    });
    setExit(0);
  });

  // system status | config
  const system = program.command("system").description("this installation");
  const sConfig = system.command("config").description(
    "the effective configuration and where each value came from",
  );
  sConfig.action(async () => {
    const config = await configFromFlags(g(sConfig));
    const entries = CONFIG_KEYS.filter(([key]) => key in config.sources).map((
      [key, name, envName, flag, scale],
    ) => {
      const raw = (config as unknown as Record<string, unknown>)[key];
      return {
        key: name,
        value: raw === undefined ? null : scale ? Number(raw) / scale : raw,
        source: config.sources[key],
        env: envName ?? null,
        flag: flag ?? null,
      };
    });
    if (g(sConfig).json) {
      printJson({ config_file: config.configPath ?? null, values: entries });
    } else {
      out(`config file: ${config.configPath ?? "(none found)"}`);
      const t = table(["setting", "value", "source", "environment / flag"]);
      for (const e of entries) {
        t.push([
          e.key,
          String(e.value ?? "-"),
          e.source,
          [e.env, e.flag].filter(Boolean).join(" / "),
        ]);
      }
      out(t.toString());
    }
    setExit(0);
  });
  const sStatus = system.command("status").description("backend, providers and tools");
  sStatus.action(async () => {
    const globals = g(sStatus);
    const config = await configFromFlags(globals);
    const app = await createApp(config);
    try {
      const stats = await app.store.stats();
      const protocols = app.registry.protocols().map((p) => p.protocol);
      const report = {
        version: (await import("./cli.ts")).VERSION,
        backend: config.backend,
        store: stats,
        protocols,
        max_concurrent_tasks: config.maxConcurrentTasks,
        sandbox: config.sandbox,
      };
      if (globals.json) printJson(report);
      else {
        out(`gleitzeit ${report.version}`);
        out(`backend: ${config.backend} (${stats.totalRuns} runs, ${stats.totalTasks} tasks)`);
        out(`protocols: ${protocols.join(", ")}`);
        out(`concurrency: ${config.maxConcurrentTasks} tasks; python sandbox: ${config.sandbox}`);
      }
    } finally {
      await app.close();
    }
    setExit(0);
  });
}
