/**
 * The Store interface: where runs, tasks, attempts and results live. The engine writes
 * through it before it moves on; the CLI reads through it. Implementations: memory,
 * SQLite (default), Redis. One contract suite (tests/persistence/store_contract.ts)
 * runs against each.
 *
 * Durability budget on the engine's critical path: `startAttempt` (the claim) and
 * `finishTasks` (result + done) per task, nothing more. Writes issued in the same tick (a
 * fan-out's claims, finishes that arrive together and the claims they free) must be committed
 * together, in one transaction; the engine relies on this for group commit.
 *
 * @module
 */

import type { ErrorData } from "../core/errors.ts";
import type { RunState, TaskState } from "../core/states.ts";
import type { Workflow } from "../core/workflow.ts";

/** One execution of a workflow. */
export interface RunRecord {
  id: string;
  workflowName: string;
  /** The validated workflow, as run (params of tasks unresolved). */
  workflow: Workflow;
  /** Effective inputs: defaults overridden by those given at submit. */
  params: Record<string, unknown>;
  state: RunState;
  createdAt: number;
  startedAt?: number;
  finishedAt?: number;
  /** Who executes it: `host:pid:nonce`. */
  owner?: string;
  /** Last sign of life of the owner (ms since epoch). */
  heartbeatAt?: number;
  /**
   * The owner's lease (ms): how long after its last heartbeat it counts as gone, as it
   * promised when it took the run (its heartbeats come well inside it). Others judge it by
   * this, not by their own setting: a worker with a short `--lease` must not take over a run
   * whose owner heartbeats at a slower pace.
   */
  leaseMs?: number;
  error?: ErrorData;
}

/** One task of one run. */
export interface TaskRecord {
  /** Globally unique (`task_...`), for `gleitzeit task status ID`. */
  id: string;
  runId: string;
  /** The id within the workflow. */
  taskId: string;
  name: string;
  protocol: string;
  method: string;
  state: TaskState;
  priority: number;
  /** Attempts started so far. */
  attempts: number;
  createdAt: number;
  startedAt?: number;
  finishedAt?: number;
  /** Present once completed (may be null). */
  result?: unknown;
  error?: ErrorData;
  /** Why the task was skipped or cancelled. */
  reason?: string;
}

/** One try of one task. */
export interface AttemptRecord {
  runId: string;
  taskId: string;
  attempt: number;
  /** `interrupted`: its process died with it running (found so at a resume or takeover). */
  state: "running" | "completed" | "failed" | "cancelled" | "interrupted";
  startedAt: number;
  finishedAt?: number;
  owner?: string;
  error?: ErrorData;
}

/** A task leaving `running` (or never starting): written together in one commit. */
export interface TaskFinish {
  runId: string;
  taskId: string;
  state: "completed" | "failed" | "cancelled" | "skipped" | "retry_pending" | "queued";
  at: number;
  /** The attempt that ended, if one was running. */
  attempt?: number;
  result?: unknown;
  error?: ErrorData;
  reason?: string;
  /** Written only while the run is this owner's (see {@link Store.updateRun}). */
  ifOwner?: string;
  /** The ended attempt's state, where not the one `state` implies (see attemptStateFor). */
  attemptState?: AttemptRecord["state"];
}

/** Changes to a run's own fields. */
export type RunPatch = Partial<
  Pick<
    RunRecord,
    "state" | "startedAt" | "finishedAt" | "owner" | "heartbeatAt" | "leaseMs" | "error"
  >
>;

/** Filters for run listings. */
export interface RunFilter {
  state?: RunState;
  workflowName?: string;
  /** Substring of the workflow name, case-insensitive. */
  nameFilter?: string;
  limit?: number;
}

/** Filters for task listings. */
export interface TaskFilter {
  runId?: string;
  state?: TaskState;
  workflowName?: string;
  /** Substring of the task name, case-insensitive. */
  nameFilter?: string;
  limit?: number;
}

/** Counts for `backend get-stats`. */
export interface StoreStats {
  backend: string;
  runs: Partial<Record<RunState, number>>;
  tasks: Partial<Record<TaskState, number>>;
  totalRuns: number;
  totalTasks: number;
}

/** Persistent state of runs. */
export interface Store {
  /** `sqlite`, `redis` or `memory`. */
  readonly backend: string;
  /** Creates a run and its tasks (all `queued`) in one commit. */
  createRun(run: RunRecord, tasks: TaskRecord[]): Promise<void>;
  /**
   * Changes a run's fields. With `ifOwner`, only while the run is that owner's, checked in the
   * same commit: else nothing is written and it fails with LEASE_EXPIRED (another process took
   * the run over, or a cancel took it from its owner). The same for `startAttempt` and for
   * each finish of `finishTasks` (`TaskFinish.ifOwner`).
   */
  updateRun(runId: string, patch: RunPatch, ifOwner?: string): Promise<void>;
  /**
   * Claims the next attempt of a task: task -> running with attempts = attempt and the attempt
   * recorded as running. One commit.
   */
  startAttempt(
    runId: string,
    taskId: string,
    attempt: number,
    at: number,
    owner?: string,
    ifOwner?: string,
  ): Promise<void>;
  /** Records results and state changes of several tasks in one commit (all or nothing). */
  finishTasks(finishes: TaskFinish[]): Promise<void>;
  /**
   * Takes ownership of a run (to execute or resume it), atomically: succeeds when the run has no
   * owner, is already owned by `owner`, is in a terminal or cancelled state, or its owner's
   * heartbeat is older than `staleBefore` (ms since epoch). On success sets owner, heartbeat
   * and the new owner's lease (see {@link RunRecord.leaseMs}; removed when not given).
   */
  claimRun(
    runId: string,
    owner: string,
    at: number,
    staleBefore: number,
    leaseMs?: number,
  ): Promise<boolean>;
  getRun(runId: string): Promise<RunRecord | undefined>;
  listRuns(filter?: RunFilter): Promise<RunRecord[]>;
  /** A task by its global id, or by run id and task id. */
  getTask(id: string): Promise<TaskRecord | undefined>;
  getRunTask(runId: string, taskId: string): Promise<TaskRecord | undefined>;
  /** Tasks of a run in workflow order, or across runs by filter (newest first). */
  listTasks(filter?: TaskFilter): Promise<TaskRecord[]>;
  listAttempts(runId: string, taskId: string): Promise<AttemptRecord[]>;
  stats(): Promise<StoreStats>;
  close(): Promise<void>;
}
