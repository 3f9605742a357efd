/** Human rendering of engine events and run summaries. @module */

import Table from "cli-table3";
import type { EngineEvent } from "../engine/events.ts";
import type { RunOutcome } from "../engine/engine.ts";
import type { TaskRecord } from "../persistence/store.ts";
import { colors, err, errRaw, formatDuration, out, preview, term } from "./output.ts";

/** Above this many tasks, per-task lines give way to counts. */
const DETAIL_LIMIT = 200;

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

  constructor(readonly options: { streamTokens?: boolean; quiet?: boolean } = {}) {}

  readonly handle = (e: EngineEvent): void => {
    if (this.options.quiet) return;
    const c = this.#c;
    switch (e.type) {
      case "run_started":
        this.#total = e.tasks;
        this.#detail = e.tasks <= DETAIL_LIMIT;
        err(
          `${c.cyan("▶")} ${e.resumed ? "resuming" : "run"} ${c.bold(e.runId)}  ${e.workflow}  ${
            c.dim(`(${e.tasks} task${e.tasks === 1 ? "" : "s"})`)
          }`,
        );
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
          err(`  ${c.red("✗")} ${e.taskId}: ${e.error.message} ${c.dim(`(${e.error.code})`)}`);
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

/** Prints the task table and a closing line on stdout. */
export function printSummary(outcome: RunOutcome): void {
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
  for (const t of hints) out(c.dim(`hint (${t.taskId}): ${t.error!.hint}`));
  const parts = [...counts.entries()].map(([s, n]) => `${n} ${s}`).join(", ");
  const ended = ["completed", "failed", "cancelled", "interrupted"].includes(outcome.state);
  const mark = outcome.state === "completed" ? c.green("✓") : ended ? c.red("✗") : c.cyan("▶");
  // a run still going has no duration yet: how long it has been going so far
  // a continued run: this execution's time, and since the run first started (which is what
  // `workflow status` shows)
  const since = outcome.sinceStartMs !== undefined
    ? ` (this execution; ${formatDuration(outcome.sinceStartMs)} since the run first started)`
    : "";
  out(
    `${mark} run ${outcome.runId} ${outcome.state} ${ended ? "in" : "for"} ${
      formatDuration(outcome.durationMs)
    }${since}: ${parts}`,
  );
  if (outcome.error && outcome.state !== "completed") out(c.dim(`  ${outcome.error.message}`));
}
