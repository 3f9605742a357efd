/** Human rendering of engine events and run summaries. @module */

import Table from "cli-table3";
import { ERROR_CODES, type ErrorData } from "../core/errors.ts";
import type { EngineEvent } from "../engine/events.ts";
import { RETRYABLE_EXCEPTIONS } from "../providers/python/python_outcome.ts";
import type { RunOutcome } from "../engine/engine.ts";
import type { TaskRecord } from "../persistence/store.ts";
import { colors, err, errRaw, formatDuration, out, preview, term, visible } from "./output.ts";

/** Above this many tasks, per-task lines give way to counts. */
const DETAIL_LIMIT = 200;

/**
 * Why a task that failed for good had no further attempt although its `retry` allows
 * `maxAttempts`, or undefined. The engine retries an error only when it is retryable (the
 * error's flag, from its code or the provider); a retryable one that ended the task used up its
 * attempts (or the run stopped), which the attempt count shows.
 */
export function notRetried(error: ErrorData, maxAttempts: number): string | undefined {
  if (maxAttempts <= 1 || error.retryable) return undefined;
  const allows = `not retried (retry allows ${maxAttempts} attempts)`;
  const type = error.details?.exception_type;
  if (error.code === "TASK_EXECUTION_FAILED" && typeof type === "string" && type !== "") {
    if (RETRYABLE_EXCEPTIONS.has(type)) {
      return `${allows}: a ${type} in a sandbox without network would be refused again`;
    }
    return `${allows}: a Python exception (${type}) is the task's own failure; only those ` +
      `that mean "try again later" (${[...RETRYABLE_EXCEPTIONS].join(", ")}) are retried ` +
      "(see Execution in the README)";
  }
  if (ERROR_CODES[error.code]?.retryable) {
    return `${allows}: the provider marked this ${error.code} as not retryable`;
  }
  return `${allows}: ${error.code} is not a retryable error; only timeouts, unavailable or ` +
    "overloaded providers and errors a provider marks retryable are retried (see Execution " +
    "in the README)";
}

/** Renders progress on stderr as events arrive. */
export class ProgressRenderer {
  #total = 0;
  #done = 0;
  #failed = 0;
  #running = 0;
  #detail = true;
  #streamTask?: string;
  #streamed = false;
  #lastStatus = 0;
  readonly #c = colors("stderr");

  /**
   * `quiet`: no progress lines; but with `announce` too, the line that names a new run still
   * comes at its start (`-q`: a run killed before its summary can still be resumed by id).
   * `maxAttempts`: a task's `retry` attempts, to say why a failure was not retried.
   */
  constructor(
    readonly options: {
      streamTokens?: boolean;
      quiet?: boolean;
      announce?: boolean;
      maxAttempts?: (taskId: string) => number | undefined;
    } = {},
  ) {}

  readonly handle = (e: EngineEvent): void => {
    if (this.options.quiet) {
      if (e.type === "run_started" && this.options.announce && !e.resumed) this.#announce(e);
      return;
    }
    const c = this.#c;
    switch (e.type) {
      case "run_started":
        this.#total = e.tasks;
        this.#detail = e.tasks <= DETAIL_LIMIT;
        this.#announce(e);
        break;
      case "task_started":
        this.#running++;
        if (this.#detail && term.stderrTty && !this.options.streamTokens) {
          err(c.dim(`  … ${e.taskId}${e.attempt > 1 ? ` (attempt ${e.attempt})` : ""}`));
        }
        break;
      case "task_progress":
        if (this.options.streamTokens) {
          if (this.#streamTask !== e.taskId) {
            if (this.#streamed) errRaw("\n");
            this.#streamTask = e.taskId;
          }
          this.#streamed = true;
          errRaw(e.chunk);
        }
        break;
      case "task_waiting":
        err(c.dim(e.note ? `    ${e.note}` : `  ⧗ ${e.taskId} waits for ${e.on.join(", ")}`));
        break;
      case "task_completed":
        this.#endStream();
        this.#running--;
        this.#done++;
        if (this.#detail) {
          err(`  ${c.green("✓")} ${e.taskId} ${c.dim(formatDuration(e.durationMs))}`);
        }
        break;
      case "task_failed":
        this.#endStream();
        if (e.abandoned !== undefined) {
          // its retry, announced before, will not happen (not running since then)
          this.#done++;
          this.#failed++;
          err(
            `  ${c.red("✗")} ${e.taskId}: ${e.abandoned} ${
              c.dim(`(last error: ${e.error.message})`)
            }`,
          );
          break;
        }
        this.#running--;
        if (e.retryInMs !== undefined) {
          err(
            `  ${c.yellow("↻")} ${e.taskId} attempt ${e.attempt} failed: ${e.error.message} ${
              c.dim(`(${e.error.code}; retrying in ${formatDuration(e.retryInMs)})`)
            }`,
          );
        } else {
          this.#done++;
          this.#failed++;
          err(
            `  ${c.red("✗")} ${e.taskId}: ${visible(e.error.message)} ${
              c.dim(`(${e.error.code})`)
            }`,
          );
          const why = notRetried(e.error, this.options.maxAttempts?.(e.taskId) ?? 1);
          if (why) err(c.dim(`    ${why}`));
          if (e.error.hint) err(c.dim(`    hint: ${e.error.hint}`));
        }
        break;
      case "task_skipped":
        this.#done++;
        if (this.#detail) err(`  ${c.dim(`- ${e.taskId} skipped: ${e.reason}`)}`);
        break;
      case "task_cancelled":
        this.#running--;
        if (this.#detail) err(`  ${c.yellow("■")} ${e.taskId} cancelled: ${e.reason}`);
        break;
      case "run_finished":
        this.#endStream();
        break;
    }
    if (!this.#detail && term.stderrTty) {
      const now = Date.now();
      if (now - this.#lastStatus > 200 || e.type === "run_finished") {
        this.#lastStatus = now;
        errRaw(
          `\r  ${this.#done}/${this.#total} done · ${this.#running} running · ${this.#failed} failed   ` +
            (e.type === "run_finished" ? "\n" : ""),
        );
      }
    }
  };

  #announce(e: Extract<EngineEvent, { type: "run_started" }>): void {
    const c = this.#c;
    err(
      `${c.cyan("▶")} ${e.resumed ? "resuming" : "run"} ${c.bold(e.runId)}  ${e.workflow}  ${
        c.dim(`(${e.tasks} task${e.tasks === 1 ? "" : "s"})`)
      }`,
    );
  }

  #endStream(): void {
    if (this.#streamed) {
      errRaw("\n");
      this.#streamed = false;
      this.#streamTask = undefined;
    }
  }
}

function statusText(t: TaskRecord): string {
  const c = colors("stdout");
  switch (t.state) {
    case "completed":
      return c.green("completed");
    case "failed":
      return c.red("failed");
    case "skipped":
      return c.dim("skipped");
    case "cancelled":
      return c.yellow("cancelled");
    default:
      return t.state;
  }
}

/** The line of detail shown beside a task: its result, error or skip reason. */
export function taskDetail(t: TaskRecord, width = 60): string {
  if (t.state === "completed") {
    const r = t.result as Record<string, unknown> | null | undefined;
    // Python results are {result, output, ...}; LLM results {response, ...}: show the useful part
    if (r && typeof r === "object" && !Array.isArray(r)) {
      if ("response" in r) return preview(r.response, width);
      if ("result" in r && "execution_time_ms" in r) return preview(r.result, width);
    }
    return preview(t.result, width);
  }
  // a retry abandoned when the run stopped: why first, then the last attempt's error
  if (t.error && t.reason && t.state === "failed") {
    return preview(`${t.reason}; last error: ${t.error.message}`, width);
  }
  if (t.error) return preview(t.error.message, width);
  if (t.reason) return preview(t.reason, width);
  return "";
}

/**
 * Prints the task table and a closing line on stdout. `neverStarted`: a stored run that ended
 * (cancelled, say) before any process executed it: its duration is then the time it waited.
 */
export function printSummary(outcome: RunOutcome, neverStarted = false): void {
  const c = colors("stdout");
  const tasks = outcome.tasks;
  const counts = new Map<string, number>();
  for (const t of tasks) counts.set(t.state, (counts.get(t.state) ?? 0) + 1);
  const shown = tasks.length <= 50 ? tasks : tasks.filter((t) => t.state !== "completed");
  if (shown.length > 0) {
    const table = new Table({
      head: ["task", "status", "attempts", "duration", "result / error"],
      style: { head: term.stdoutTty && !term.noColor ? ["cyan"] : [], border: [] },
      wordWrap: false,
    });
    for (const t of shown.slice(0, 200)) {
      const duration = t.startedAt !== undefined && t.finishedAt !== undefined
        ? formatDuration(t.finishedAt - t.startedAt)
        : "-";
      table.push([t.taskId, statusText(t), String(t.attempts), duration, taskDetail(t)]);
    }
    out(table.toString());
    if (shown.length > 200) out(c.dim(`… and ${shown.length - 200} more`));
  }
  // hints of failed tasks (e.g. `ollama pull MODEL`), also when progress lines were off
  const hints = tasks.filter((t) => t.state === "failed" && t.error?.hint).slice(0, 5);
  for (const t of hints) out(c.dim(`hint (${t.taskId}): ${visible(t.error!.hint!)}`));
  const parts = [...counts.entries()].map(([s, n]) => `${n} ${s}`).join(", ");
  const ended = ["completed", "failed", "cancelled", "interrupted"].includes(outcome.state);
  // a run that completed with failed tasks (continue_on_failure): not the all-good mark
  const mark = outcome.state === "completed"
    ? counts.has("failed") ? c.yellow("⚠") : c.green("✓")
    : ended
    ? c.red("✗")
    : c.cyan("▶");
  // a run still going has no duration yet: how long it has been going so far
  // a continued run: this execution's time, and since the run first started (which is what
  // `workflow status` shows)
  const since = outcome.sinceStartMs !== undefined
    ? ` (this execution; ${formatDuration(outcome.sinceStartMs)} since the run first started)`
    : "";
  const took = neverStarted
    ? `before it started (after ${formatDuration(outcome.durationMs)})`
    : `${ended ? "in" : "for"} ${formatDuration(outcome.durationMs)}`;
  out(`${mark} run ${outcome.runId} ${outcome.state} ${took}${since}: ${parts}`);
  if (outcome.error && outcome.state !== "completed") {
    out(c.dim(`  ${visible(outcome.error.message)}`));
  }
}
