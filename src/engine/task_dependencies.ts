/**
 * `task submit --depends-on ID,...`: a single task that waits for stored tasks (from other runs,
 * possibly still executing in other processes) and may use their results as `${ID.path}`.
 *
 * @module
 */

import { GleitzeitError } from "../core/errors.ts";
import { isTerminalTask } from "../core/states.ts";
import { referencesIn, substitute, walkStrings } from "../core/references.ts";
import type { Store, TaskRecord } from "../persistence/store.ts";
import { ownerGone } from "./liveness.ts";

/** How often the store is read while waiting (another process does the work; no events cross). */
const POLL_MS = 250;

/**
 * Waits until every task in `ids` has ended. Resolves with their records when all completed;
 * rejects with TASK_DEPENDENCY_FAILED naming one that did not, TASK_NOT_FOUND for unknown ids,
 * or the signal's reason (or what `onPending` throws). `onWaiting` is called once, with the
 * tasks not ended yet; `onPending` with those at every look (a run that nothing executes any
 * more would keep this waiting for ever: see its caller).
 */
export async function waitForTasks(
  store: Store,
  ids: string[],
  signal: AbortSignal,
  onWaiting?: (pending: TaskRecord[]) => void | Promise<void>,
  onPending?: (pending: TaskRecord[]) => void | Promise<void>,
): Promise<Map<string, TaskRecord>> {
  let announced = false;
  for (;;) {
    const records = await dependencies(store, ids);
    if ([...records.values()].every((t) => isTerminalTask(t.state))) return records;
    const pending = [...records.values()].filter((t) => !isTerminalTask(t.state));
    if (!announced) {
      await onWaiting?.(pending);
      announced = true;
    }
    await onPending?.(pending);
    await pause(POLL_MS, signal);
  }
}

/**
 * The stored tasks `ids` as they are now: TASK_NOT_FOUND for one there is not,
 * TASK_DEPENDENCY_FAILED for one that ended otherwise than completed.
 */
export async function dependencies(
  store: Store,
  ids: string[],
): Promise<Map<string, TaskRecord>> {
  const records = new Map<string, TaskRecord>();
  for (const id of ids) {
    const t = await findTask(store, id);
    if (!t) {
      throw new GleitzeitError("TASK_NOT_FOUND", `--depends-on: no task ${id}`, {
        hint:
          "task ids look like task_..., or RUN_ID/TASK_ID; list them with `gleitzeit task list`",
      });
    }
    records.set(id, t);
  }
  const bad = [...records.values()].find((t) => isTerminalTask(t.state) && t.state !== "completed");
  if (bad) {
    throw new GleitzeitError(
      "TASK_DEPENDENCY_FAILED",
      `dependency ${bad.id} (${bad.runId}/${bad.taskId}) ${bad.state}${
        bad.error ? `: ${bad.error.message}` : bad.reason ? `: ${bad.reason}` : ""
      }`,
      { hint: `see \`gleitzeit task status ${bad.id}\`` },
    );
  }
  return records;
}

/** Resolves after `ms`; rejects with the signal's reason once it aborts. */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** A stored task by its id (`task_...`) or as `RUN_ID/TASK_ID`. */
export async function findTask(store: Store, id: string): Promise<TaskRecord | undefined> {
  const t = await store.getTask(id);
  const slash = id.indexOf("/");
  if (t || slash < 0) return t;
  return await store.getRunTask(id.slice(0, slash), id.slice(slash + 1));
}

/**
 * The dependency a reference's root names: ID as given to --depends-on, the stored id
 * (`task_...`), or, for one given as RUN_ID/TASK_ID, TASK_ID. USAGE_ERROR for a root that
 * names none of them, or several.
 */
function dependencyNamed(
  deps: Map<string, TaskRecord>,
): (root: string) => TaskRecord {
  const byName = new Map(deps);
  // a TASK_ID that several of them have (RUN_1/val, RUN_2/val): which one, no reference says
  const shared = new Map<string, string[]>();
  for (const [given, t] of deps) {
    if (!byName.has(t.id)) byName.set(t.id, t);
    if (!given.includes("/")) continue;
    const owner = byName.get(t.taskId);
    if (owner === undefined) byName.set(t.taskId, t);
    else if (owner.id !== t.id && !deps.has(t.taskId)) {
      shared.set(t.taskId, [...shared.get(t.taskId) ?? [`${owner.runId}/${owner.taskId}`], given]);
    }
  }
  return (root) => {
    const both = shared.get(root);
    if (both) {
      throw new GleitzeitError(
        "USAGE_ERROR",
        `\${${root}...} is ambiguous: ${root} is the task of several --depends-on tasks (${
          both.join(", ")
        })`,
        {
          hint: `refer to each by its own id: ${
            both.map((b) => `\${${deps.get(b)?.id ?? b}...}`).join(", ")
          }`,
        },
      );
    }
    const t = byName.get(root);
    if (t) return t;
    throw new GleitzeitError(
      "USAGE_ERROR",
      `\${${root}...}: ${root} is not one of the --depends-on tasks (${
        [...deps.keys()].join(", ")
      })`,
      {
        hint: root === "params"
          ? "a single task has no workflow inputs: give the value itself"
          : `add it to --depends-on (a task id task_..., or RUN_ID/${root})`,
      },
    );
  };
}

/**
 * Checks, before any of them has a result, that every reference in `params` names one of
 * the dependencies (see {@link withDependencyResults}); throws USAGE_ERROR if not.
 */
export function checkDependencyReferences(
  params: Record<string, unknown>,
  deps: Map<string, TaskRecord>,
): void {
  const named = dependencyNamed(deps);
  walkStrings(params, (text) => {
    for (const ref of referencesIn(text)) named(ref.root);
  });
}

/**
 * Replaces `${ID.path}` references to the dependencies' results in `params`: ID as given to
 * --depends-on, the stored id (`task_...`), or, for one given as RUN_ID/TASK_ID, TASK_ID.
 */
export function withDependencyResults(
  params: Record<string, unknown>,
  deps: Map<string, TaskRecord>,
): Record<string, unknown> {
  const named = dependencyNamed(deps);
  // The task's params go through the engine's substitution once more (as any task's do): what
  // this pass made literal (`$${` written as `${`, or a result that holds `${`) is escaped
  // again, so that it stays as it is.
  return escapeReferences(substitute(params, (root) => ({
    found: true,
    value: named(root).result,
  }))) as Record<string, unknown>;
}

/** `value` with every `${` in its strings written `$${` (which substitution turns back). */
function escapeReferences(value: unknown): unknown {
  // (a function: in a replacement string, `$$` would stand for one `$`)
  if (typeof value === "string") return value.replaceAll("${", () => "$${");
  if (Array.isArray(value)) return value.map(escapeReferences);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, escapeReferences(v)]));
  }
  return value;
}

/**
 * TASK_DEPENDENCY_FAILED for dependency `t` when nothing can give it a result any more: its
 * run was interrupted and its process is gone for good (one only stopped, Ctrl-Z, may go on),
 * where no worker takes runs over (not Redis); `state` is its run's, as shown (displayState).
 * `then`: what to do once that run is resumed.
 */
export async function orphanedDependency(
  store: Store,
  t: TaskRecord,
  state: string | undefined,
  then: string,
): Promise<GleitzeitError | undefined> {
  if (state !== "interrupted" || store.backend === "redis" || !await ownerGone(store, t.runId)) {
    return undefined;
  }
  return new GleitzeitError(
    "TASK_DEPENDENCY_FAILED",
    `dependency ${t.id} (${t.runId}/${t.taskId}) has no result: its run ${t.runId} was ` +
      "interrupted (the process running it is gone)",
    { hint: `resume that run (\`gleitzeit workflow resume ${t.runId}\`), then ${then}` },
  );
}
