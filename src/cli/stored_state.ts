/**
 * What the commands over stored state share: opening the store, finding runs and tasks,
 * listings, JSON forms, cancelling.
 *
 * @module
 */

import { listWorkers, requestRunCancel } from "../distributed/work_queue.ts";
import type { RedisStore } from "../persistence/redis_store.ts";
import type { Command } from "@commander-js/extra-typings";
import Table from "cli-table3";
import { openConfiguredStore } from "../app.ts";
import type { ResolvedConfig } from "../config/config.ts";
import { GleitzeitError } from "../core/errors.ts";
import { RUN_STATES, type RunState, TASK_STATES, type TaskState } from "../core/states.ts";
import {
  displayState,
  lastSignOfLife,
  leftAttemptEnd,
  localOwnerPid,
  ownerAlive,
} from "../engine/liveness.ts";
import type { RunRecord, Store, TaskFilter, TaskRecord } from "../persistence/store.ts";
import { configFromFlags, type GlobalOptions, resumeCommand } from "./context.ts";
import { colors, formatDuration, out, preview, printJson, term } from "./output.ts";
import { printSummary, taskDetail } from "./render.ts";
import { taskJson } from "./run_commands.ts";
import { findTask } from "../engine/task_dependencies.ts";

/** The options of a command, with the global ones. */
export const globalsOf = (cmd: Command<unknown[], Record<string, unknown>>) =>
  cmd.optsWithGlobals() as GlobalOptions;

/** Adds the listing filters (`--status`, `--workflow-name`, `--name-filter`, `--limit`). */
export function listOptions<C extends Command<unknown[], Record<string, unknown>>>(
  cmd: C,
  tasks: boolean,
): C {
  cmd.option("--status <state>", "only this state")
    .option("--workflow-name <name>", "only runs of this workflow")
    .option("--name-filter <text>", tasks ? "task name contains" : "workflow name contains")
    .option("--limit <n>", "at most this many");
  if (tasks) cmd.option("--workflow-id <run>", "only tasks of this run");
  return cmd;
}

export function table(head: string[]): Table.Table {
  return new Table({
    head,
    style: { head: term.stdoutTty && !term.noColor ? ["cyan"] : [], border: [] },
  });
}

export function iso(ms: number | undefined): string | null {
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
    lease_ms: run.leaseMs ?? null,
    error: run.error ?? null,
    tasks: run.workflow.tasks.length,
  };
}

export async function withStore<T>(
  globals: GlobalOptions,
  fn: (store: Store, config: ResolvedConfig) => Promise<T>,
): Promise<T> {
  const config = await configFromFlags(globals);
  // Listings and status make no database on a machine that has none yet (cancel finds no
  // run there either).
  const store = await openConfiguredStore(config, { readOnly: true });
  try {
    return await fn(store, config);
  } finally {
    await store.close();
  }
}

/** `sqlite backend`, or `redis backend (prefix 'p:')`. */
function where(store: Store): string {
  return store.backend === "redis"
    ? `redis backend (prefix '${(store as RedisStore).prefix}')`
    : `${store.backend} backend`;
}

export async function mustRun(store: Store, id: string): Promise<RunRecord> {
  const run = await store.getRun(id);
  if (!run) {
    throw new GleitzeitError("RUN_NOT_FOUND", `no run ${id} in the ${where(store)}`, {
      hint: store.backend === "redis"
        ? "list runs with `gleitzeit workflow list` (and check --redis-url and --redis-prefix: " +
          "each prefix has runs of its own)"
        : "list runs with `gleitzeit workflow list` (and check --backend)",
    });
  }
  return run;
}

export async function mustTask(store: Store, id: string): Promise<TaskRecord> {
  const task = await findTask(store, id);
  if (!task) {
    throw new GleitzeitError("TASK_NOT_FOUND", `no task ${id} in the ${where(store)}`, {
      hint: "task ids look like task_...; or use RUN_ID/TASK_ID; list with `gleitzeit task list`",
    });
  }
  return task;
}

export function checkState(
  value: string | undefined,
  allowed: readonly string[],
  what: string,
): void {
  if (value !== undefined && !allowed.includes(value)) {
    throw new GleitzeitError("USAGE_ERROR", `unknown ${what} state '${value}'`, {
      hint: `one of ${allowed.join(", ")}`,
    });
  }
}

export interface ListOptions {
  status?: string;
  workflowId?: string;
  workflowName?: string;
  nameFilter?: string;
  limit?: string;
}

export function limitOf(opts: ListOptions, def: number): number {
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

export async function listRuns(store: Store, opts: ListOptions): Promise<RunRecord[]> {
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

export function printRuns(runs: RunRecord[], json: boolean): void {
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

export async function listTasks(store: Store, opts: ListOptions): Promise<TaskRecord[]> {
  checkState(opts.status, TASK_STATES, "task");
  const filter: TaskFilter = { limit: limitOf(opts, 50) };
  if (opts.status) filter.state = opts.status as TaskState;
  if (opts.workflowId) filter.runId = opts.workflowId;
  if (opts.workflowName) filter.workflowName = opts.workflowName;
  if (opts.nameFilter) filter.nameFilter = opts.nameFilter;
  return await store.listTasks(filter);
}

/**
 * `task list`: stored tasks as shown (see {@link shownTasks}); `--status` is of the shown
 * state, `interrupted` too, as for runs.
 */
export async function listShownTasks(store: Store, opts: ListOptions): Promise<TaskRecord[]> {
  const interrupted = opts.status === "interrupted";
  checkState(opts.status, [...TASK_STATES, "interrupted"], "task");
  const tasks = await listTasks(store, interrupted ? { ...opts, status: "running" } : opts);
  // "No tasks" of a run that is not there would hide a wrong id (or backend)
  if (tasks.length === 0 && opts.workflowId) await mustRun(store, opts.workflowId);
  const shown = shownTasks(tasks, await interruptedRuns(store, tasks));
  return opts.status ? shown.filter((t) => t.state === opts.status) : shown;
}

/**
 * The runs of these tasks whose owner is gone (see {@link displayState}): their `running`
 * tasks and attempts are shown as `interrupted`. On Redis, workers execute tasks under leases
 * of their own, so only while no worker is live (none can be executing them).
 */
export async function interruptedRuns(
  store: Store,
  tasks: TaskRecord[],
  now = Date.now(),
  workersLive?: boolean,
): Promise<Set<string>> {
  const gone = new Set<string>();
  if (!tasks.some((t) => t.state === "running")) return gone;
  if (store.backend === "redis" && (workersLive ?? await anyWorkerLive(store as RedisStore))) {
    return gone;
  }
  for (const runId of new Set(tasks.filter((t) => t.state === "running").map((t) => t.runId))) {
    const run = await store.getRun(runId);
    if (run && displayState(run, now) === "interrupted") gone.add(runId);
  }
  return gone;
}

/** A task or attempt state as shown: `interrupted` where its run's owner left it running. */
export function shownState<S extends string>(state: S, interrupted: boolean): S | "interrupted" {
  return interrupted && state === "running" ? "interrupted" : state;
}

/** Tasks as shown (display only: `interrupted` is no stored task state). */
export function shownTasks(tasks: TaskRecord[], interrupted: Set<string>): TaskRecord[] {
  return tasks.map((t) =>
    t.state === "running" && interrupted.has(t.runId)
      ? { ...t, state: "interrupted" as unknown as TaskState }
      : t
  );
}

export function printTasks(tasks: TaskRecord[], json: boolean): void {
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

export async function printRunStatus(
  store: Store,
  run: RunRecord,
  json: boolean,
  globals: GlobalOptions = {},
): Promise<void> {
  const state = displayState(run);
  const tasks = await store.listTasks({ runId: run.id });
  // asked of Redis once, for the tasks shown and the hint below alike
  const workersLive = store.backend === "redis" &&
      (state === "interrupted" || state === "queued" || tasks.some((t) => t.state === "running"))
    ? await anyWorkerLive(store as RedisStore)
    : undefined;
  const shown = shownTasks(tasks, await interruptedRuns(store, tasks, Date.now(), workersLive));
  if (json) return printJson({ ...runJson(run), tasks: shown.map(taskJson) });
  const c = colors("stdout");
  // (the run's error is said once, under the closing line of the summary)
  out(`${c.bold(run.id)}  ${run.workflowName}  ${state}`);
  printSummary({
    runId: run.id,
    state,
    // an interrupted run stopped with its owner's last sign of life
    durationMs: (run.finishedAt ??
      (state === "interrupted" ? lastSignOfLife(run, tasks) : undefined) ??
      Date.now()) - (run.startedAt ?? run.createdAt),
    tasks: shown,
    ...(run.error ? { error: run.error } : {}),
  }, run.startedAt === undefined && run.finishedAt !== undefined);
  if (store.backend === "redis" && (state === "interrupted" || state === "queued")) {
    if (!workersLive) {
      out(c.dim(noWorkers(store as RedisStore, run.id)));
    } else {
      // a run queued for workers (run --detach) is taken over by one on its own
      out(c.dim(
        `a run queued for workers (run --detach) is taken over by one on its own, once its ` +
          `coordinator's lease runs out; to run it in this process instead: gleitzeit workflow ` +
          `resume ${run.id}`,
      ));
    }
  } else if (state === "interrupted" || state === "cancelled" || state === "queued") {
    out(c.dim(`continue it with: ${resumeCommand(run.id, globals)}`));
  } else if (state === "failed") {
    out(c.dim(`run the failed and skipped tasks again with: ${resumeCommand(run.id, globals)}`));
  }
}

/** Whether a worker is live on this store (its URL and prefix). */
export async function anyWorkerLive(store: RedisStore): Promise<boolean> {
  return (await listWorkers(store)).length > 0;
}

/** What to say of a run on Redis that no live worker can take. */
export function noWorkers(store: RedisStore, runId: string): string {
  return `no worker is running on ${store.url} with prefix '${store.prefix}': start one with ` +
    `\`gleitzeit worker\` (same --redis-url and --redis-prefix), or run it in this process ` +
    `with \`gleitzeit workflow resume ${runId}\``;
}

/** Cancels a run: signals its live owner on this host, or marks it cancelled in the store. */
export async function cancelRun(store: Store, run: RunRecord): Promise<string> {
  const now = Date.now();
  // what was asked is so already: safe to repeat (a script's cleanup step, say)
  if (run.state === "cancelled") return `run ${run.id} was already cancelled: nothing to do`;
  // ended on its own: nothing runs, which is what a cancel asks (its record stays as it is)
  if (run.state === "completed") return `run ${run.id} already completed: nothing to cancel`;
  if (run.state === "failed") {
    return `run ${run.id} already failed: nothing to cancel (\`gleitzeit workflow resume ` +
      `${run.id}\` would run its failed tasks again)`;
  }
  // a worker that died: its heartbeat may still look fresh, its lease key is gone (an owner
  // on this host that is gone is not alive: see ownerAlive)
  let ownerGone = false;
  if (run.state === "running" && run.owner && ownerAlive(run, now) && store.backend === "redis") {
    const asked = await requestRunCancel(store as RedisStore, run.id, run.owner, `${Deno.pid}`);
    if (asked === "asked") return `asked worker ${run.owner} to cancel run ${run.id}`;
    ownerGone = asked === "gone";
  }
  if (run.state === "running" && ownerAlive(run, now) && !ownerGone) {
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
  // A dead worker's run: only while it is still that worker's (another one may be taking it
  // over this moment: then it finds the cancel flag, set above, first thing).
  const ifOwner = ownerGone ? run.owner : undefined;
  // an attempt still running here died with its process, at its last sign of life
  const last = lastSignOfLife(run, tasks);
  try {
    await store.finishTasks(
      tasks.filter((t) => t.state !== "completed" && t.state !== "failed" && t.state !== "skipped")
        .map((t) => ({
          runId: run.id,
          taskId: t.taskId,
          state: "cancelled" as const,
          at: t.state === "running" ? leftAttemptEnd(last, t.startedAt, now) : now,
          reason: "cancelled by user",
          // (an attempt still running here died with its process, which is gone)
          ...(t.state === "running"
            ? { attempt: t.attempts, attemptState: "interrupted" as const }
            : {}),
          ...(ifOwner !== undefined ? { ifOwner } : {}),
        })),
    );
    // and taken from its owner: one that only seemed gone (stopped, say) writes nothing more
    await store.updateRun(run.id, {
      state: "cancelled",
      finishedAt: now,
      owner: undefined,
      error: { code: "WORKFLOW_CANCELLED", message: "cancelled by user", retryable: false },
    }, ifOwner);
  } catch (e) {
    if (!(e instanceof GleitzeitError && e.code === "LEASE_EXPIRED" && ifOwner)) throw e;
    const taker = (await store.getRun(run.id))?.owner;
    return `asked worker ${taker ?? "that takes it over"} to cancel run ${run.id}`;
  }
  return `cancelled run ${run.id}`;
}
