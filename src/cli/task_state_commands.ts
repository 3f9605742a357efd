/** `task list | status | result | cancel`: tasks in the store @module */

import type { Command } from "@commander-js/extra-typings";
import type { ExitCode } from "../core/errors.ts";
import { GleitzeitError } from "../core/errors.ts";
import { isTerminalTask } from "../core/states.ts";
import type { AttemptRecord, Store, TaskRecord } from "../persistence/store.ts";
import type { RedisStore } from "../persistence/redis_store.ts";
import { displayState, ownerGone } from "../engine/liveness.ts";
import { interruptSignal } from "./context.ts";
import { pause } from "../engine/task_dependencies.ts";
import { colors, err, formatDuration, out, preview, printJson } from "./output.ts";
import { notRetried, taskDetail } from "./render.ts";
import { taskJson } from "./run_commands.ts";
import {
  anyWorkerLive,
  cancelRun,
  globalsOf,
  interruptedRuns,
  iso,
  type ListOptions,
  listOptions,
  listShownTasks,
  mustRun,
  mustTask,
  noWorkers,
  printTasks,
  shownState,
  shownTasks,
  table,
  withStore,
} from "./stored_state.ts";

/** How often `task result --wait` reads the store (another process does the work). */
const POLL_MS = 250;

/** Why nothing executes task `t`'s run now, or undefined. */
export async function stuck(
  store: Store,
  t: TaskRecord,
): Promise<"interrupted" | "queued" | undefined> {
  const run = await store.getRun(t.runId);
  if (!run) return undefined;
  const state = displayState(run);
  if (state === "interrupted") return "interrupted";
  // queued: on SQLite, for `workflow resume`; on Redis, for a worker (if there is one)
  if (
    state === "queued" && (store.backend !== "redis" || !await anyWorkerLive(store as RedisStore))
  ) {
    return "queued";
  }
  return undefined;
}

/**
 * Task `t` (as the user named it: `id`) once it has ended. Where its run's process is gone
 * and no worker can take it over (SQLite: there are none), it stops with TASK_RESULT_ERROR:
 * nothing would end the task. Otherwise it waits, and says once what would end a run that
 * nothing executes now (`workflow resume`, or a worker).
 */
async function waitForEnd(
  store: Store,
  id: string,
  t: TaskRecord,
  signal: AbortSignal,
): Promise<TaskRecord> {
  let told = false;
  for (;;) {
    const now = await store.getTask(t.id) ?? t;
    if (isTerminalTask(now.state)) return now;
    const why = await stuck(store, now);
    // (gone for good: one only stopped, Ctrl-Z, may go on)
    if (why === "interrupted" && store.backend !== "redis" && await ownerGone(store, now.runId)) {
      throw new GleitzeitError(
        "TASK_RESULT_ERROR",
        `task ${id} has no result: its run ${now.runId} was interrupted (the process running ` +
          "it is gone)",
        { hint: `resume the run: \`gleitzeit workflow resume ${now.runId}\`` },
      );
    }
    if (why && !told) {
      told = true;
      err(colors("stderr").dim(await stuckNotice(store, now.runId, why)));
    }
    await pause(POLL_MS, signal);
  }
}

/** What would end run `runId`, which nothing executes now (`why`: see stuck). */
export async function stuckNotice(
  store: Store,
  runId: string,
  why: "interrupted" | "queued",
): Promise<string> {
  return store.backend !== "redis"
    ? `nothing executes run ${runId} (${why}): start it with \`gleitzeit workflow resume ${runId}\``
    : !await anyWorkerLive(store as RedisStore)
    ? `nothing executes run ${runId} (${why}): ${noWorkers(store as RedisStore, runId)}`
    : `run ${runId}'s coordinator is gone: a worker takes a run queued for workers ` +
      "(run --detach) over once its lease runs out; one started by `gleitzeit run` " +
      `is not: resume it with \`gleitzeit workflow resume ${runId}\``;
}

/** Lines of a failed task's stdout and stderr that `task status` shows (the last ones). */
const OUTPUT_LINES = 20;

/** Registers `task list | status | result | cancel`. */
export function registerTaskCommands(task: Command, setExit: (code: ExitCode) => void): void {
  const tList = listOptions(task.command("list").description("stored tasks"), true);
  tList.action(async () => {
    const opts = tList.opts() as ListOptions;
    await withStore(
      globalsOf(tList),
      async (store) =>
        printTasks(await listShownTasks(store, opts), globalsOf(tList).json === true),
    );
    setExit(0);
  });
  const tStatus = task.command("status").description("a task and its attempts").argument(
    "<task-id>",
  );
  tStatus.action(async (id) => {
    await withStore(globalsOf(tStatus), async (store) => {
      const stored = await mustTask(store, id);
      const gone = await interruptedRuns(store, [stored]);
      const t = shownTasks([stored], gone)[0]!;
      const attempts = await store.listAttempts(t.runId, t.taskId);
      const attemptState = (state: string) => shownState(state, gone.has(t.runId));
      if (globalsOf(tStatus).json) {
        printJson({
          run_id: t.runId,
          ...taskJson(t),
          attempt_history: attempts.map((a) => ({
            attempt: a.attempt,
            state: attemptState(a.state),
            started_at: iso(a.startedAt),
            finished_at: iso(a.finishedAt),
            // the process that executed it (a worker, on Redis)
            executor: a.owner ?? null,
            error: a.error ?? null,
          })),
        });
        return;
      }
      out(`${t.id}  ${t.runId}/${t.taskId}  ${t.method}  ${t.state}`);
      const at = table(["attempt", "state", "started", "duration", "by", "error"]);
      for (const a of attempts) {
        at.push([
          String(a.attempt),
          attemptState(a.state),
          iso(a.startedAt) ?? "-",
          attemptDuration(a),
          a.owner ?? "-",
          a.error ? preview(a.error.message, 50) : "",
        ]);
      }
      if (attempts.length > 0) out(at.toString());
      // The table cuts errors to fit: an earlier attempt's whole message below it (the last
      // one's follows as the task's error)
      for (const a of attempts) {
        const message = a.error?.message;
        if (message === undefined || message === t.error?.message) continue;
        if (preview(message, 50) !== message) out(`attempt ${a.attempt}: ${message}`);
      }
      // A Python task's traceback, whole, and the end of what it printed; else the error whole,
      // or the result in short
      const details = (t.error?.details ?? {}) as Record<string, unknown>;
      const traceback = details.traceback;
      const detail = typeof traceback === "string" && traceback.trim() !== ""
        ? traceback.trimEnd()
        : t.error
        ? `error (${t.error.code}): ${
          t.reason && t.state === "failed" ? `${t.reason}; last error: ` : ""
        }${t.error.message}`
        : taskDetail(t, 100);
      for (const stream of ["output", "stderr"] as const) {
        const text = details[stream];
        if (typeof text !== "string" || text.trim() === "") continue;
        const lines = text.trimEnd().split("\n");
        out(
          `${stream === "output" ? "stdout" : "stderr"}${
            lines.length > OUTPUT_LINES ? ` (last ${OUTPUT_LINES} of ${lines.length} lines)` : ""
          }:`,
        );
        out(lines.slice(-OUTPUT_LINES).map((l) => `  ${l}`).join("\n"));
      }
      if (detail) out(detail);
      if (t.state === "failed" && t.error) {
        const spec = (await store.getRun(t.runId))?.workflow.tasks.find((s) => s.id === t.taskId);
        const why = notRetried(t.error, spec?.retry.maxAttempts ?? 1);
        if (why) out(why);
      }
      if (t.error?.hint) out(`hint: ${t.error.hint}`);
    });
    setExit(0);
  });
  const tResult = task.command("result").description("a task's result as JSON").argument(
    "<task-id>",
  ).option(
    "--wait",
    "wait until the task has ended (Ctrl-C stops the waiting, not the task)",
  );
  tResult.action(async (id, opts) => {
    let code: ExitCode = 0;
    await withStore(globalsOf(tResult), async (store) => {
      let t = await mustTask(store, id);
      if (opts.wait && !isTerminalTask(t.state)) {
        const { signal, dispose } = interruptSignal(true);
        try {
          // (its notice on stderr under --json too: stdout stays the result, and a wait that
          // nothing would end must not be silent, in a CI job least of all)
          t = await waitForEnd(store, id, t, signal);
        } catch (e) {
          if (!signal.aborted) throw e;
          const now = await store.getTask(t.id) ?? t;
          throw new GleitzeitError(
            "INTERRUPTED",
            `stopped waiting for task ${id}, which is ${now.state} (only the waiting stopped)`,
            { hint: `its result later: \`gleitzeit task result ${id}\`` },
          );
        } finally {
          dispose();
        }
      }
      if (t.state !== "completed") {
        // (a task of a run whose process is gone: see interruptedRuns)
        const gone = !isTerminalTask(t.state) &&
          (await interruptedRuns(store, [{ ...t, state: "running" }])).has(t.runId);
        throw new GleitzeitError(
          "TASK_RESULT_ERROR",
          `task ${id} has no result: ${
            gone
              ? `its run ${t.runId} was interrupted (the process running it is gone)`
              : t.state === "failed"
              ? "it failed"
              : t.state === "skipped" || t.state === "cancelled"
              ? `it was ${t.state}`
              : `it is ${t.state}`
          }`,
          {
            hint: t.error
              ? t.error.message
              : gone
              ? `resume the run: \`gleitzeit workflow resume ${t.runId}\``
              : isTerminalTask(t.state)
              ? `see \`gleitzeit task status ${id}\``
              : `wait for it: \`gleitzeit task result ${id} --wait\``,
          },
        );
      }
      printJson(
        globalsOf(tResult).json ? { task_id: t.id, result: t.result ?? null } : t.result ?? null,
      );
    });
    setExit(code);
    code = 0;
  });
  const tCancel = task.command("cancel").description("cancel a task (and the run it belongs to)")
    .argument("<task-id>");
  tCancel.action(async (id) => {
    await withStore(globalsOf(tCancel), async (store) => {
      const t = await mustTask(store, id);
      const message = await cancelRun(store, await mustRun(store, t.runId));
      if (globalsOf(tCancel).json) printJson({ task_id: t.id, run_id: t.runId, message });
      else out(message);
    });
    setExit(0);
  });
}

/**
 * An attempt's duration as shown. One its process left running (interrupted) ended, as far as
 * the store tells, with that process's last sign of life: it ran at least that long, or for
 * an unknown time where that came before its start.
 */
function attemptDuration(a: AttemptRecord): string {
  if (a.finishedAt === undefined) return "-";
  const ms = a.finishedAt - a.startedAt;
  if (a.state !== "interrupted") return formatDuration(ms);
  return ms > 0 ? `≥ ${formatDuration(ms)}` : "-";
}
