/**
 * The engine: creates runs, executes them (fresh or resumed) within a global concurrency
 * limit, and reports every transition as an event.
 *
 * @module
 */

import { type Clock, systemClock } from "../core/clock.ts";
import { GleitzeitError } from "../core/errors.ts";
import { newId } from "../core/ids.ts";
import { isTerminalRun } from "../core/states.ts";
import type { Workflow } from "../core/workflow.ts";
import { applyFinish, applyStart } from "../persistence/store_rules.ts";
import type { RunRecord, Store, TaskFinish, TaskRecord } from "../persistence/store.ts";
import type { EngineEvent, EventListener } from "./events.ts";
import { Limiter } from "./limiter.ts";
import { HEARTBEAT_MS, lastSignOfLife, ownerAlive } from "./liveness.ts";
import { type Dispatcher, RunExecution, type RunOutcome } from "./run_execution.ts";

export type { Dispatcher, RunOutcome } from "./run_execution.ts";

/** Options of {@link Engine}. */
export interface EngineOptions {
  dispatcher: Dispatcher;
  store: Store;
  clock?: Clock;
  /** Tasks running at once across all runs of this engine. Default 16. */
  maxConcurrency?: number;
  /** Identity of this process as a run owner. Default `host:pid:nonce`. */
  owner?: string;
  /** Interval of run heartbeats. Default 2000 ms. */
  heartbeatMs?: number;
  /**
   * This engine's lease: others may take a run it owns over once its heartbeat is older than
   * this (stored with the run, see RunRecord.leaseMs). Also how long it waits for an owner that
   * declared none. Default 3 heartbeats.
   */
  staleAfterMs?: number;
  /** Random source for retry jitter. */
  random?: () => number;
  onEvent?: EventListener;
}

/** Options for creating a run. */
export interface CreateRunOptions {
  /** Inputs overriding the workflow's `params` defaults. */
  params?: Record<string, unknown>;
  runId?: string;
  /** `queued` for runs that something else will execute (`--detach`). */
  state?: "pending" | "queued";
}

/** Options for executing a run. */
export interface ExecuteOptions {
  /** Aborting it cancels the run gracefully. */
  signal?: AbortSignal;
  /**
   * Continue the run where its previous executor stopped (a worker taking over): tasks that
   * failed or were skipped for good stay so, and the run timeout counts from its start. By
   * default (resume) those run again with a fresh budget.
   */
  continueRun?: boolean;
  /**
   * An owner the caller knows to be gone (a worker whose lease key has expired): a run it
   * owns is taken over at once, not after its lease.
   */
  ownerGone?: string;
  /**
   * Taking over from another owner: what attempts of the run its previous owner was answered
   * but had not recorded (a worker's coordinator that died). Called once the run is this
   * engine's; an attempt still `running` in the store with that number is recorded completed
   * with the result instead of being run again.
   */
  recover?: (previousOwner: string) => Promise<RecoveredAnswer[]>;
}

/** A successful answer to one attempt, found where its previous owner would have read it. */
export interface RecoveredAnswer {
  taskId: string;
  attempt: number;
  /** False for an attempt that began and was not answered: only its start is recorded. */
  answered?: boolean;
  result?: unknown;
  /** When it was given (ms since epoch), where known. */
  at?: number;
  /** When a worker said it began it (ms since epoch), where known. */
  began?: number;
  /** The worker that executed it, where known. */
  executor?: string;
}

/** A string that identifies this process. */
export function defaultOwner(): string {
  let host = "localhost";
  try {
    host = Deno.hostname();
  } catch {
    // hostname needs --allow-sys; the pid and nonce still make the owner unique
  }
  return `${host}:${Deno.pid}:${crypto.randomUUID().slice(0, 8)}`;
}

/** Runs workflows. */
export class Engine {
  readonly store: Store;
  readonly #dispatcher: Dispatcher;
  readonly #clock: Clock;
  readonly #limiter: Limiter;
  readonly #owner: string;
  readonly #heartbeatMs: number;
  readonly #staleAfterMs: number;
  readonly #random: () => number;
  readonly #listeners: EventListener[] = [];

  constructor(options: EngineOptions) {
    this.store = options.store;
    this.#dispatcher = options.dispatcher;
    this.#clock = options.clock ?? systemClock;
    this.#limiter = new Limiter(Math.max(1, options.maxConcurrency ?? 16));
    this.#owner = options.owner ?? defaultOwner();
    this.#heartbeatMs = options.heartbeatMs ?? HEARTBEAT_MS;
    this.#staleAfterMs = options.staleAfterMs ?? 3 * this.#heartbeatMs;
    this.#random = options.random ?? Math.random;
    if (options.onEvent) this.#listeners.push(options.onEvent);
  }

  /** This engine's owner identity. */
  get owner(): string {
    return this.#owner;
  }

  /** Adds an event listener. */
  on(listener: EventListener): void {
    this.#listeners.push(listener);
  }

  #emit = (event: EngineEvent): void => {
    for (const l of this.#listeners) l(event);
  };

  /** Records a new run with all its tasks queued (one commit) and returns it. */
  async createRun(workflow: Workflow, options: CreateRunOptions = {}): Promise<RunRecord> {
    return (await this.#createRun(workflow, options)).run;
  }

  async #createRun(
    workflow: Workflow,
    options: CreateRunOptions,
    owned = false,
  ): Promise<{ run: RunRecord; tasks: TaskRecord[] }> {
    const params = mergeParams(workflow, options.params ?? {});
    const now = this.#clock.now();
    const run: RunRecord = {
      id: options.runId ?? newId("run", now),
      workflowName: workflow.name,
      workflow,
      params,
      state: options.state ?? "pending",
      createdAt: now,
    };
    if (owned) {
      run.owner = this.#owner;
      run.heartbeatAt = now;
      run.leaseMs = this.#staleAfterMs;
    }
    const tasks: TaskRecord[] = workflow.tasks.map((t) => ({
      id: newId("task", now),
      runId: run.id,
      taskId: t.id,
      name: t.name,
      protocol: t.protocol,
      method: t.method,
      state: "queued",
      priority: t.priority,
      attempts: 0,
      createdAt: now,
    }));
    await this.store.createRun(run, tasks);
    return { run, tasks: tasks.map((t) => ({ ...t })) };
  }

  /** Creates a run and executes it to the end. */
  async run(
    workflow: Workflow,
    options: CreateRunOptions & ExecuteOptions = {},
  ): Promise<RunOutcome> {
    // created already owned by this engine: no separate claim
    const { run, tasks } = await this.#createRun(workflow, options, true);
    return await this.#execute(run, tasks, options);
  }

  /**
   * Executes a stored run: a new one, or one that was interrupted, cancelled or failed
   * (resume). Completed tasks keep their results and are not executed again.
   */
  async execute(runId: string, options: ExecuteOptions = {}): Promise<RunOutcome> {
    const run = await this.store.getRun(runId);
    if (!run) {
      throw new GleitzeitError("RUN_NOT_FOUND", `no run ${runId}`, {
        hint: "list runs with `gleitzeit workflow list`",
      });
    }
    return await this.#execute(run, undefined, options);
  }

  async #execute(
    run: RunRecord,
    known: TaskRecord[] | undefined,
    options: ExecuteOptions,
  ): Promise<RunOutcome> {
    const runId = run.id;
    if (run.state === "completed") {
      throw new GleitzeitError("USAGE_ERROR", `run ${runId} already completed`, {
        hint: `see its results with \`gleitzeit workflow status ${runId}\``,
      });
    }
    // when the run became this engine's: a pause from then on may have cost it the run
    const claimedAt = this.#clock.now();
    if (known === undefined) await this.#claim(run, options.ownerGone);
    const tasks = known ?? await this.store.listTasks({ runId });
    // (a coordinator that stopped cleanly cleared its ownership: it is the one gone)
    const previous = run.owner ?? options.ownerGone;
    // the previous owner's last sign of life, from what it recorded itself (before the answers
    // other workers gave it, which #recover records, come in: those are not its)
    const lastSign = lastSignOfLife(run, tasks);
    if (options.recover && previous !== undefined && previous !== this.#owner) {
      await this.#recover(runId, tasks, await options.recover(previous));
    }
    const resumed = run.startedAt !== undefined || isTerminalRun(run.state);
    const execution = new RunExecution(
      {
        store: this.store,
        dispatcher: this.#dispatcher,
        clock: this.#clock,
        limiter: this.#limiter,
        owner: this.#owner,
        random: this.#random,
        heartbeatMs: this.#heartbeatMs,
        emit: this.#emit,
      },
      run,
      tasks,
      lastSign,
    );
    return await execution.execute(
      options.signal,
      resumed,
      options.continueRun === true,
      claimedAt,
    );
  }

  /** Records answers the previous owner got and never recorded (see ExecuteOptions.recover). */
  async #recover(runId: string, tasks: TaskRecord[], answers: RecoveredAnswer[]): Promise<void> {
    const now = this.#clock.now();
    const byId = new Map(tasks.map((t) => [t.taskId, t]));
    const done = new Map<TaskRecord, TaskFinish>();
    for (const a of answers) {
      const task = byId.get(a.taskId);
      // the first answer per attempt counts (an attempt run twice answers twice)
      if (!task || done.has(task)) continue;
      if (
        (task.state === "queued" || task.state === "retry_pending") &&
        task.attempts === a.attempt - 1
      ) {
        // it began, and ended, before its coordinator recorded that it began
        const began = Math.min(now, a.began ?? a.at ?? now);
        await this.store.startAttempt(
          runId,
          a.taskId,
          a.attempt,
          began,
          a.executor ?? this.#owner,
          this.#owner,
        );
        applyStart(task, a.attempt, began);
      }
      if (task.state !== "running" || task.attempts !== a.attempt || a.answered === false) {
        continue;
      }
      done.set(task, {
        runId,
        taskId: a.taskId,
        state: "completed",
        // when it was answered, not now
        at: Math.min(now, Math.max(a.at ?? now, task.startedAt ?? 0)),
        attempt: a.attempt,
        result: a.result,
        ifOwner: this.#owner,
      });
    }
    if (done.size === 0) return;
    await this.store.finishTasks([...done.values()]);
    for (const [task, f] of done) applyFinish(task, f);
  }

  /** Takes ownership of a stored run, or explains who has it. */
  async #claim(run: RunRecord, ownerGone?: string): Promise<void> {
    const now = this.#clock.now();
    // judged by the owner's own lease where it declared one (see RunRecord.leaseMs)
    let staleBefore = now - (run.leaseMs ?? this.#staleAfterMs);
    if (
      run.owner && run.owner !== this.#owner &&
      (run.owner === ownerGone || !ownerAlive(run, now, this.#staleAfterMs))
    ) {
      // the owner's process is gone (same host): take over if nobody else did since we read it
      staleBefore = (run.heartbeatAt ?? 0) + 1;
    }
    if (await this.store.claimRun(run.id, this.#owner, now, staleBefore, this.#staleAfterMs)) {
      return;
    }
    const fresh = await this.store.getRun(run.id);
    const ago = fresh?.heartbeatAt ? Math.round((now - fresh.heartbeatAt) / 1000) : "?";
    throw new GleitzeitError(
      "USAGE_ERROR",
      `run ${run.id} is being executed by ${fresh?.owner} (last heartbeat ${ago}s ago)`,
      { hint: "wait for it to finish, or cancel it with `gleitzeit workflow cancel`" },
    );
  }
}

/** The workflow's declared inputs, overridden by those given; unknown inputs are an error. */
export function mergeParams(
  workflow: Workflow,
  given: Record<string, unknown>,
): Record<string, unknown> {
  const unknown = Object.keys(given).filter((k) => !(k in workflow.params));
  if (unknown.length > 0) {
    const declared = Object.keys(workflow.params);
    throw new GleitzeitError(
      "USAGE_ERROR",
      `unknown input${unknown.length > 1 ? "s" : ""} ${unknown.map((u) => `'${u}'`).join(", ")}`,
      {
        hint: declared.length
          ? `this workflow declares: ${declared.join(", ")}`
          : "this workflow declares no `params:`",
      },
    );
  }
  return { ...workflow.params, ...given };
}
