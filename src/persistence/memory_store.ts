/** A Store kept in memory: nothing survives the process (backend `memory`, alias `none`). @module */

import { GleitzeitError } from "../core/errors.ts";
import { isTerminalRun } from "../core/states.ts";
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

const clone = <T>(v: T): T => (v === undefined ? v : structuredClone(v));

/** In-memory Store. Returned records are copies, as from a real backend. */
export class MemoryStore implements Store {
  readonly backend = "memory";
  #runs = new Map<string, RunRecord>();
  #runTasks = new Map<string, Map<string, TaskRecord>>();
  #tasksById = new Map<string, TaskRecord>();
  #attempts = new Map<string, AttemptRecord[]>();

  createRun(run: RunRecord, tasks: TaskRecord[]): Promise<void> {
    if (this.#runs.has(run.id)) {
      return Promise.reject(new GleitzeitError("PERSISTENCE_ERROR", `run ${run.id} exists`));
    }
    this.#runs.set(run.id, clone(run));
    const map = new Map<string, TaskRecord>();
    for (const t of tasks) {
      const copy = clone(t);
      map.set(t.taskId, copy);
      this.#tasksById.set(t.id, copy);
    }
    this.#runTasks.set(run.id, map);
    return Promise.resolve();
  }

  updateRun(runId: string, patch: RunPatch): Promise<void> {
    const run = this.#runs.get(runId);
    if (!run) return Promise.reject(notFound(runId));
    Object.assign(run, clone(patch));
    return Promise.resolve();
  }

  startAttempt(
    runId: string,
    taskId: string,
    attempt: number,
    at: number,
    owner?: string,
  ): Promise<void> {
    const task = this.#runTasks.get(runId)?.get(taskId);
    if (!task) return Promise.reject(taskNotFound(runId, taskId));
    task.state = "running";
    task.attempts = attempt;
    task.startedAt = at;
    delete task.error;
    const key = `${runId}\u0000${taskId}`;
    const list = this.#attempts.get(key) ?? [];
    const rec: AttemptRecord = { runId, taskId, attempt, state: "running", startedAt: at };
    if (owner !== undefined) rec.owner = owner;
    list.push(rec);
    this.#attempts.set(key, list);
    return Promise.resolve();
  }

  finishTasks(finishes: TaskFinish[]): Promise<void> {
    for (const f of finishes) {
      const task = this.#runTasks.get(f.runId)?.get(f.taskId);
      if (!task) return Promise.reject(taskNotFound(f.runId, f.taskId));
    }
    for (const f of finishes) {
      const task = this.#runTasks.get(f.runId)!.get(f.taskId)!;
      task.state = f.state;
      if (f.state !== "retry_pending" && f.state !== "queued") task.finishedAt = f.at;
      if ("result" in f) task.result = clone(f.result);
      if (f.error) task.error = clone(f.error);
      if (f.reason !== undefined) task.reason = f.reason;
      if (f.attempt !== undefined) {
        const att = this.#attempts.get(`${f.runId}\u0000${f.taskId}`)?.find((a) =>
          a.attempt === f.attempt
        );
        if (att) {
          att.state = f.state === "completed"
            ? "completed"
            : f.state === "cancelled" || f.state === "queued"
            ? "cancelled"
            : "failed";
          att.finishedAt = f.at;
          if (f.error) att.error = clone(f.error);
        }
      }
    }
    return Promise.resolve();
  }

  claimRun(runId: string, owner: string, at: number, staleBefore: number): Promise<boolean> {
    const run = this.#runs.get(runId);
    if (!run) return Promise.reject(notFound(runId));
    const free = run.owner === undefined || run.owner === owner ||
      isTerminalRun(run.state) || (run.heartbeatAt ?? 0) < staleBefore;
    if (!free) return Promise.resolve(false);
    run.owner = owner;
    run.heartbeatAt = at;
    return Promise.resolve(true);
  }

  getRun(runId: string): Promise<RunRecord | undefined> {
    return Promise.resolve(clone(this.#runs.get(runId)));
  }

  listRuns(filter: RunFilter = {}): Promise<RunRecord[]> {
    const needle = filter.nameFilter?.toLowerCase();
    const out = [...this.#runs.values()]
      .filter((r) => !filter.state || r.state === filter.state)
      .filter((r) => !filter.workflowName || r.workflowName === filter.workflowName)
      .filter((r) => !needle || r.workflowName.toLowerCase().includes(needle))
      .sort((a, b) => b.createdAt - a.createdAt || (a.id < b.id ? 1 : -1));
    return Promise.resolve(clone(out.slice(0, filter.limit ?? out.length)));
  }

  getTask(id: string): Promise<TaskRecord | undefined> {
    return Promise.resolve(clone(this.#tasksById.get(id)));
  }

  getRunTask(runId: string, taskId: string): Promise<TaskRecord | undefined> {
    return Promise.resolve(clone(this.#runTasks.get(runId)?.get(taskId)));
  }

  listTasks(filter: TaskFilter = {}): Promise<TaskRecord[]> {
    const needle = filter.nameFilter?.toLowerCase();
    let tasks: TaskRecord[];
    if (filter.runId) {
      tasks = [...(this.#runTasks.get(filter.runId)?.values() ?? [])];
    } else {
      const runs = [...this.#runs.values()].sort((a, b) => b.createdAt - a.createdAt);
      tasks = runs.flatMap((r) => [...this.#runTasks.get(r.id)!.values()]);
    }
    const out = tasks
      .filter((t) => !filter.state || t.state === filter.state)
      .filter((t) =>
        !filter.workflowName || this.#runs.get(t.runId)?.workflowName === filter.workflowName
      )
      .filter((t) => !needle || t.name.toLowerCase().includes(needle));
    return Promise.resolve(clone(out.slice(0, filter.limit ?? out.length)));
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

function notFound(runId: string): GleitzeitError {
  return new GleitzeitError("RUN_NOT_FOUND", `no run ${runId}`, {
    hint: "list runs with `gleitzeit workflow list`",
  });
}

function taskNotFound(runId: string, taskId: string): GleitzeitError {
  return new GleitzeitError("TASK_NOT_FOUND", `no task ${taskId} in run ${runId}`);
}
