/** A Store kept in memory: nothing survives the process (backend `memory`, alias `none`). @module */

import { isTerminalRun } from "../core/states.ts";
import {
  applyFinish,
  applyStart,
  attemptStateFor,
  ownerLost,
  runExists,
  runNotFound as notFound,
  taskNotFound,
} from "./store_rules.ts";
import type {
  AttemptRecord,
  RunFilter,
  RunPatch,
  RunRecord,
  Store,
  StoreStats,
  TaskFilter,
  TaskFinish,
  TaskRecord,
} from "./store.ts";

const clone = <T>(
  v: T,
): T => (v === undefined || v === null || typeof v !== "object" ? v : structuredClone(v));

/**
 * A run copied field by field: its workflow definition is shared, not copied, because workflows
 * are never changed once validated (copying a 10,000-task definition per call dominated the
 * cost of in-memory runs).
 */
function copyRun(run: RunRecord): RunRecord {
  const out = { ...run, params: clone(run.params) };
  if (run.error) out.error = clone(run.error);
  return out;
}

/** A task copied: its scalars by spread, its result and error deeply. */
function copyTask(t: TaskRecord): TaskRecord {
  const out = { ...t };
  if ("result" in t) out.result = clone(t.result);
  if (t.error) out.error = clone(t.error);
  return out;
}

/** In-memory Store. Returned records are copies, as from a real backend. */
export class MemoryStore implements Store {
  /** `memory`; or the backend it stands in for, empty (see {@link openStore}'s `readOnly`). */
  readonly backend: string;
  #runs = new Map<string, RunRecord>();
  #runTasks = new Map<string, Map<string, TaskRecord>>();
  #tasksById = new Map<string, TaskRecord>();
  #attempts = new Map<string, AttemptRecord[]>();

  constructor(backend = "memory") {
    this.backend = backend;
  }

  createRun(run: RunRecord, tasks: TaskRecord[]): Promise<void> {
    if (this.#runs.has(run.id)) {
      return Promise.reject(runExists(run.id));
    }
    this.#runs.set(run.id, copyRun(run));
    const map = new Map<string, TaskRecord>();
    for (const t of tasks) {
      const copy = copyTask(t);
      map.set(t.taskId, copy);
      this.#tasksById.set(t.id, copy);
    }
    this.#runTasks.set(run.id, map);
    return Promise.resolve();
  }

  updateRun(runId: string, patch: RunPatch, ifOwner?: string): Promise<void> {
    const run = this.#runs.get(runId);
    if (!run) return Promise.reject(notFound(runId));
    if (ifOwner !== undefined && run.owner !== ifOwner) {
      return Promise.reject(ownerLost(runId, run.owner));
    }
    for (const [k, v] of Object.entries(clone(patch))) {
      // A field patched to undefined is cleared, as a NULL column or a deleted hash field is.
      if (v === undefined && k === "state") continue;
      if (v === undefined) delete (run as unknown as Record<string, unknown>)[k];
      else (run as unknown as Record<string, unknown>)[k] = v;
    }
    return Promise.resolve();
  }

  startAttempt(
    runId: string,
    taskId: string,
    attempt: number,
    at: number,
    owner?: string,
    ifOwner?: string,
  ): Promise<void> {
    const task = this.#runTasks.get(runId)?.get(taskId);
    if (!task) return Promise.reject(taskNotFound(runId, taskId));
    const run = this.#runs.get(runId);
    if (ifOwner !== undefined && run?.owner !== ifOwner) {
      return Promise.reject(ownerLost(runId, run?.owner));
    }
    applyStart(task, attempt, at);
    const key = `${runId}\u0000${taskId}`;
    const rec: AttemptRecord = { runId, taskId, attempt, state: "running", startedAt: at };
    if (owner !== undefined) rec.owner = owner;
    // Starting an attempt number again replaces that attempt (as a primary key would).
    const list = (this.#attempts.get(key) ?? []).filter((a) => a.attempt !== attempt);
    list.push(rec);
    list.sort((a, b) => a.attempt - b.attempt);
    this.#attempts.set(key, list);
    return Promise.resolve();
  }

  finishTasks(finishes: TaskFinish[]): Promise<void> {
    for (const f of finishes) {
      const task = this.#runTasks.get(f.runId)?.get(f.taskId);
      if (!task) return Promise.reject(taskNotFound(f.runId, f.taskId));
      const owner = this.#runs.get(f.runId)?.owner;
      if (f.ifOwner !== undefined && owner !== f.ifOwner) {
        return Promise.reject(ownerLost(f.runId, owner));
      }
    }
    for (const f of finishes) {
      const task = this.#runTasks.get(f.runId)!.get(f.taskId)!;
      applyFinish(task, f, clone);
      if (f.attempt !== undefined) {
        const att = this.#attempts.get(`${f.runId}\u0000${f.taskId}`)?.find((a) =>
          a.attempt === f.attempt
        );
        if (att) {
          att.state = f.attemptState ?? attemptStateFor(f.state);
          att.finishedAt = f.at;
          if (f.error) att.error = clone(f.error);
        }
      }
    }
    return Promise.resolve();
  }

  claimRun(
    runId: string,
    owner: string,
    at: number,
    staleBefore: number,
    leaseMs?: number,
  ): Promise<boolean> {
    const run = this.#runs.get(runId);
    if (!run) return Promise.reject(notFound(runId));
    const free = run.owner === undefined || run.owner === owner ||
      isTerminalRun(run.state) || (run.heartbeatAt ?? 0) < staleBefore;
    if (!free) return Promise.resolve(false);
    run.owner = owner;
    run.heartbeatAt = at;
    if (leaseMs === undefined) delete run.leaseMs;
    else run.leaseMs = leaseMs;
    return Promise.resolve(true);
  }

  getRun(runId: string): Promise<RunRecord | undefined> {
    const run = this.#runs.get(runId);
    return Promise.resolve(run && copyRun(run));
  }

  listRuns(filter: RunFilter = {}): Promise<RunRecord[]> {
    const needle = filter.nameFilter?.toLowerCase();
    const out = [...this.#runs.values()]
      .filter((r) => !filter.state || r.state === filter.state)
      .filter((r) => !filter.workflowName || r.workflowName === filter.workflowName)
      .filter((r) => !needle || r.workflowName.toLowerCase().includes(needle))
      .sort(newestFirst);
    return Promise.resolve(out.slice(0, filter.limit ?? out.length).map(copyRun));
  }

  getTask(id: string): Promise<TaskRecord | undefined> {
    const t = this.#tasksById.get(id);
    return Promise.resolve(t && copyTask(t));
  }

  getRunTask(runId: string, taskId: string): Promise<TaskRecord | undefined> {
    const t = this.#runTasks.get(runId)?.get(taskId);
    return Promise.resolve(t && copyTask(t));
  }

  listTasks(filter: TaskFilter = {}): Promise<TaskRecord[]> {
    const needle = filter.nameFilter?.toLowerCase();
    let tasks: TaskRecord[];
    if (filter.runId) {
      tasks = [...(this.#runTasks.get(filter.runId)?.values() ?? [])];
    } else {
      const runs = [...this.#runs.values()].sort(newestFirst);
      tasks = runs.flatMap((r) => [...this.#runTasks.get(r.id)!.values()]);
    }
    const out = tasks
      .filter((t) => !filter.state || t.state === filter.state)
      .filter((t) =>
        !filter.workflowName || this.#runs.get(t.runId)?.workflowName === filter.workflowName
      )
      .filter((t) => !needle || t.name.toLowerCase().includes(needle));
    return Promise.resolve(out.slice(0, filter.limit ?? out.length).map(copyTask));
  }

  listAttempts(runId: string, taskId: string): Promise<AttemptRecord[]> {
    return Promise.resolve(clone(this.#attempts.get(`${runId}\u0000${taskId}`) ?? []));
  }

  stats(): Promise<StoreStats> {
    const runs: StoreStats["runs"] = {};
    const tasks: StoreStats["tasks"] = {};
    for (const r of this.#runs.values()) runs[r.state] = (runs[r.state] ?? 0) + 1;
    for (const t of this.#tasksById.values()) tasks[t.state] = (tasks[t.state] ?? 0) + 1;
    return Promise.resolve({
      backend: this.backend,
      runs,
      tasks,
      totalRuns: this.#runs.size,
      totalTasks: this.#tasksById.size,
    });
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** Runs newest first; equal times by id, descending (the order SQL and Redis give). */
function newestFirst(a: RunRecord, b: RunRecord): number {
  return b.createdAt - a.createdAt || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
}
