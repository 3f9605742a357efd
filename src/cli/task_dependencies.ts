/**
 * `task submit --depends-on ID,...`: a single task that waits for stored tasks (from other runs,
 * possibly still executing in other processes) and may use their results as `${ID.path}`.
 *
 * @module
 */

import { GleitzeitError } from "../core/errors.ts";
import { isTerminalTask } from "../core/states.ts";
import { substitute } from "../core/references.ts";
import type { Store, TaskRecord } from "../persistence/store.ts";

/** How often the store is read while waiting (another process does the work; no events cross). */
const POLL_MS = 250;

/**
 * Waits until every task in `ids` has ended. Resolves with their records when all completed;
 * rejects with TASK_DEPENDENCY_FAILED naming one that did not, TASK_NOT_FOUND for unknown ids,
 * or the signal's reason.
 */
export async function waitForTasks(
  store: Store,
  ids: string[],
  signal: AbortSignal,
  onWaiting?: (pending: TaskRecord[]) => void,
): Promise<Map<string, TaskRecord>> {
  let announced = false;
  for (;;) {
    const records = new Map<string, TaskRecord>();
    for (const id of ids) {
      const t = await store.getTask(id);
      if (!t) {
        throw new GleitzeitError("TASK_NOT_FOUND", `--depends-on: no task ${id}`, {
          hint: "task ids look like task_...; list them with `gleitzeit task list`",
        });
      }
      records.set(id, t);
    }
    const ended = [...records.values()].filter((t) => isTerminalTask(t.state));
    const bad = ended.find((t) => t.state !== "completed");
    if (bad) {
      throw new GleitzeitError(
        "TASK_DEPENDENCY_FAILED",
        `dependency ${bad.id} (${bad.runId}/${bad.taskId}) ${bad.state}${
          bad.error ? `: ${bad.error.message}` : bad.reason ? `: ${bad.reason}` : ""
        }`,
        { hint: `see \`gleitzeit task status ${bad.id}\`` },
      );
    }
    if (ended.length === records.size) return records;
    if (!announced) {
      onWaiting?.([...records.values()].filter((t) => !isTerminalTask(t.state)));
      announced = true;
    }
    await new Promise<void>((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason);
      const timer = setTimeout(() => {
        signal.removeEventListener("abort", onAbort);
        resolve();
      }, POLL_MS);
      const onAbort = () => {
        clearTimeout(timer);
        reject(signal.reason);
      };
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }
}

/** Replaces `${ID.path}` references to the dependencies' results in `params`. */
export function withDependencyResults(
  params: Record<string, unknown>,
  deps: Map<string, TaskRecord>,
): Record<string, unknown> {
  return substitute(params, (root) => {
    const t = deps.get(root);
    return t ? { found: true, value: t.result } : { found: false };
  }) as Record<string, unknown>;
}
