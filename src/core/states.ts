/** Task and run states (SPEC section 4). @module */

/** States a task moves through. */
export type TaskState =
  | "queued"
  | "running"
  | "retry_pending"
  | "completed"
  | "failed"
  | "cancelled"
  | "skipped";

/** States of one run of a workflow. `interrupted` is derived: a running run whose owner is gone. */
export type RunState =
  | "pending"
  | "queued"
  | "running"
  | "completed"
  | "failed"
  | "cancelled"
  | "interrupted";

/** Every task state, in lifecycle order. */
export const TASK_STATES: readonly TaskState[] = [
  "queued",
  "running",
  "retry_pending",
  "completed",
  "failed",
  "cancelled",
  "skipped",
];

/** Every run state, in lifecycle order. */
export const RUN_STATES: readonly RunState[] = [
  "pending",
  "queued",
  "running",
  "completed",
  "failed",
  "cancelled",
  "interrupted",
];

const TERMINAL_TASK: ReadonlySet<TaskState> = new Set([
  "completed",
  "failed",
  "cancelled",
  "skipped",
]);
const TERMINAL_RUN: ReadonlySet<RunState> = new Set(["completed", "failed", "cancelled"]);

/** True once a task will not change state again. */
export function isTerminalTask(state: TaskState): boolean {
  return TERMINAL_TASK.has(state);
}

/** True once a run will not change state again. */
export function isTerminalRun(state: RunState): boolean {
  return TERMINAL_RUN.has(state);
}
