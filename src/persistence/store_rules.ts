/**
 * Rules every Store implementation shares, so memory, SQLite and Redis behave alike.
 *
 * @module
 */

import { GleitzeitError } from "../core/errors.ts";
import type { AttemptRecord, TaskFinish, TaskRecord } from "./store.ts";

/** The state an attempt ends in when its task leaves `running` as `state`. */
export function attemptStateFor(state: TaskFinish["state"]): AttemptRecord["state"] {
  switch (state) {
    case "completed":
      return "completed";
    case "cancelled":
    case "queued":
      return "cancelled";
    default:
      return "failed";
  }
}

/** False for the states that lead to another attempt (the task is not finished). */
export function finishSetsFinishedAt(state: TaskFinish["state"]): boolean {
  return state !== "retry_pending" && state !== "queued";
}

/** Applies a claim (`startAttempt`) to a task record in place. */
export function applyStart(task: TaskRecord, attempt: number, at: number): void {
  task.state = "running";
  task.attempts = attempt;
  task.startedAt = at;
  delete task.error;
  delete task.finishedAt; // (of an attempt before: a resumed run's failed task, say)
}

/**
 * Applies a finish to a task record in place (values are not copied). `copy` lets a store
 * keep its own copy of results and errors.
 */
export function applyFinish(
  task: TaskRecord,
  f: TaskFinish,
  copy: <T>(v: T) => T = (v) => v,
): void {
  task.state = f.state;
  if (finishSetsFinishedAt(f.state)) task.finishedAt = f.at;
  if ("result" in f) {
    if (f.result === undefined) delete task.result;
    else task.result = copy(f.result);
  }
  if (f.error) task.error = copy(f.error);
  if (f.reason !== undefined) task.reason = f.reason;
}

/**
 * The error for a write made for a run's owner (`ifOwner`) when the run is no longer that
 * owner's: `now` is its owner now.
 */
export function ownerLost(runId: string, now: string | undefined): GleitzeitError {
  return new GleitzeitError(
    "LEASE_EXPIRED",
    `run ${runId} is no longer this process's: ${
      now ? `process ${now} took it over` : "it was taken from it (cancelled?)"
    }`,
    { details: { run_id: runId, owner: now ?? null } },
  );
}

/** The error for an unknown run id. */
export function runNotFound(runId: string): GleitzeitError {
  return new GleitzeitError("RUN_NOT_FOUND", `no run ${runId}`, {
    hint: "list runs with `gleitzeit workflow list`",
  });
}

/** The error for an unknown task of a run. */
export function taskNotFound(runId: string, taskId: string): GleitzeitError {
  return new GleitzeitError("TASK_NOT_FOUND", `no task ${taskId} in run ${runId}`, {
    hint: "list a run's tasks with `gleitzeit workflow status RUN_ID`",
  });
}

/** The error for creating a run whose id is taken. */
export function runExists(runId: string): GleitzeitError {
  return new GleitzeitError("PERSISTENCE_ERROR", `run ${runId} exists`);
}
