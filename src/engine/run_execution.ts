/**
 * Executes one run: a ready queue fed by completions (no polling), attempts with timeouts
 * and retries, failure propagation, cancellation. Every transition is written to the store
 * before anything that depends on it happens.
 *
 * @module
 */

import type { Clock, Timer } from "../core/clock.ts";
import { type ErrorData, GleitzeitError, isWorkerLost, toGleitzeitError } from "../core/errors.ts";
import { hasReference, substitute } from "../core/references.ts";
import { retryDelayMs } from "../core/retry.ts";
import type { RunState, TaskState } from "../core/states.ts";
import type { TaskSpec } from "../core/workflow.ts";
import type { CallContext } from "../providers/provider.ts";
import type { RunRecord, Store, TaskFinish, TaskRecord } from "../persistence/store.ts";
import { applyFinish, applyStart } from "../persistence/store_rules.ts";
import type { EngineEvent } from "./events.ts";
import type { Limiter } from "./limiter.ts";
import { ReadyQueue } from "./ready_queue.ts";
import { displayState, leftAttemptEnd } from "./liveness.ts";
import {
  orphanedDependency,
  pause,
  waitForTasks,
  withDependencyResults,
} from "./task_dependencies.ts";

/** What the engine needs from the provider registry. */
export interface Dispatcher {
  /**
   * True when attempts wait in a queue for an executor (workers): the dispatcher then calls
   * `ctx.onBegin` when one begins, and the attempt is recorded as started, and its timeout
   * counts, from then; meanwhile its task stays queued. Such a dispatcher settles a call
   * whose signal aborts by itself (after calling `onBegin` if it finds the attempt began).
   */
  readonly queues?: boolean;
  call(
    protocol: string,
    method: string,
    params: Record<string, unknown>,
    ctx: CallContext,
  ): Promise<unknown>;
}

/** Shared services of the engine, handed to each run. */
export interface RunServices {
  store: Store;
  dispatcher: Dispatcher;
  clock: Clock;
  limiter: Limiter;
  owner: string;
  random: () => number;
  heartbeatMs: number;
  emit: (event: EngineEvent) => void;
}

/** How a run ended. */
export interface RunOutcome {
  runId: string;
  state: RunState;
  error?: ErrorData;
  /** This execution's duration. */
  durationMs: number;
  /**
   * A run continued (resumed, taken over) that first started earlier: the time since then
   * (what `workflow status` shows as its duration).
   */
  sinceStartMs?: number;
  tasks: TaskRecord[];
  /** Another process took the run over (or cancelled it) while this one was silent. */
  lost?: boolean;
}

interface Node {
  spec: TaskSpec;
  /** What the store holds for this task, kept in step with every write. */
  record: TaskRecord;
  priority: number;
  order: number;
  state: TaskState;
  attempts: number;
  /**
   * Attempts that do not count against the retry budget: those made before this execution
   * (resume keeps counting from here) and those whose worker was lost.
   */
  attemptBase: number;
  /** Workers that died executing this task in this execution (see MAX_WORKER_LOSSES). */
  lostWorkers: string[];
  /** Its attempt is waiting for a worker to begin it (see Dispatcher.queues). */
  waiting?: boolean;
  result?: unknown;
  hasResult: boolean;
  remaining: number;
  dependents: Node[];
  controller?: AbortController;
  retryTimer?: Timer;
  lastError?: ErrorData;
  /** Its {@link TaskSpec.awaits} once they have ended: their records, or why it fails. */
  awaited?: Map<string, TaskRecord> | GleitzeitError;
  /** Stops the wait for them (the run stops meanwhile). */
  awaiting?: AbortController;
}

type StopKind = "fail_fast" | "cancel" | "timeout" | "fatal" | "lost";

/** Workers lost while executing one task, in one execution, before the task fails. */
export const MAX_WORKER_LOSSES = 3;

const cancelledError = () => new GleitzeitError("TASK_CANCELLED", "cancelled");

/** The state machine of one run. */
export class RunExecution {
  readonly #svc: RunServices;
  readonly #run: RunRecord;
  readonly #nodes = new Map<string, Node>();
  readonly #byName = new Map<string, Node>();
  readonly #ready = new ReadyQueue<Node>();
  readonly #runController = new AbortController();
  readonly #maxParallel: number;
  readonly #records: TaskRecord[];
  readonly #lastSign: number | undefined;
  #running = 0;
  /** Attempts in flight, writes in flight and retry timers: the run ends when this is 0. */
  #outstanding = 0;
  #stop?: { kind: StopKind; error?: GleitzeitError };
  #failedTasks: string[] = [];
  /** Failed tasks marked continue_on_failure (they do not fail the run). */
  #toleratedFailures = 0;
  #finished = false;
  #resolveDone!: () => void;
  readonly #done = new Promise<void>((r) => (this.#resolveDone = r));
  #timers: Timer[] = [];
  #heartbeat?: Timer;
  /** When this execution last knew the run was its own: a heartbeat written, a check passed. */
  #ownedAt = 0;
  #ownership?: Promise<boolean>;
  /** Set once another process has the run (or it was cancelled) while this one was silent. */
  #lost?: GleitzeitError;
  readonly #pump = () => this.#pumpReady();

  /**
   * lastSign: when the run's previous owner last showed a sign of life (see lastSignOfLife),
   * taken before anything else was recorded for it: where an attempt it left running ended.
   */
  constructor(svc: RunServices, run: RunRecord, tasks: TaskRecord[], lastSign?: number) {
    // Once the run is lost, what this execution still does (winding down) is not the run's:
    // no task events for it (they would show outcomes the store never got), only the end.
    this.#svc = {
      ...svc,
      emit: (e) => {
        if (!this.#lost || e.type === "run_finished") svc.emit(e);
      },
    };
    this.#run = run;
    this.#maxParallel = run.workflow.maxParallel ?? Number.POSITIVE_INFINITY;
    this.#records = tasks;
    this.#lastSign = lastSign;
    const records = new Map(tasks.map((t) => [t.taskId, t]));
    run.workflow.tasks.forEach((spec, order) => {
      const rec = records.get(spec.id);
      if (!rec) {
        throw new GleitzeitError("PERSISTENCE_ERROR", `run ${run.id} has no task ${spec.id}`);
      }
      const completed = rec.state === "completed";
      const node: Node = {
        spec,
        record: rec,
        priority: spec.priority,
        order,
        state: completed ? "completed" : "queued",
        attempts: rec.attempts,
        attemptBase: rec.attempts,
        lostWorkers: [],
        hasResult: completed,
        remaining: 0,
        dependents: [],
      };
      if (completed) node.result = rec.result;
      this.#nodes.set(spec.id, node);
      if (!this.#byName.has(spec.name)) this.#byName.set(spec.name, node);
    });
    for (const node of this.#nodes.values()) {
      for (const depId of new Set(node.spec.dependencies)) {
        const dep = this.#nodes.get(depId);
        if (!dep) continue;
        dep.dependents.push(node);
        if (dep.state !== "completed") node.remaining++;
      }
    }
  }

  /**
   * Runs to the end. Tasks left unfinished by an earlier execution (running, failed, skipped,
   * cancelled) are first put back to `queued` in one commit; completed ones keep their results.
   */
  async execute(
    signal: AbortSignal | undefined,
    resumed: boolean,
    continueRun = false,
    claimedAt?: number,
  ): Promise<RunOutcome> {
    const { store, clock, emit, owner } = this.#svc;
    const started = clock.now();
    // Claimed long ago (this process was stopped since, say): still this process's run?
    this.#ownedAt = claimedAt ?? started;
    if (!await this.#stillOwned(false)) return await this.#finishRun(started);
    const stale: TaskFinish[] = [];
    // Continuing (a worker taking over a run whose coordinator died): what ended for good
    // stays as it ended; only what was in flight runs again.
    const settled = (state: string) =>
      state === "completed" || state === "queued" ||
      (continueRun && (state === "failed" || state === "skipped"));
    for (const rec of this.#records) {
      if (!settled(rec.state)) {
        const f: TaskFinish = {
          runId: rec.runId,
          taskId: rec.taskId,
          state: "queued",
          at: started,
          ifOwner: owner,
        };
        if (rec.state === "running") {
          f.attempt = rec.attempts;
          f.attemptState = "interrupted"; // not cancelled: its process died with it
          const who = this.#run.owner ? `process ${this.#run.owner}` : "the process running it";
          f.error = {
            code: "LEASE_EXPIRED",
            message: `${who} stopped before this attempt ended (found when the run was ${
              continueRun ? "taken over" : "resumed"
            })`,
            retryable: true,
            details: { owner: this.#run.owner ?? null },
          };
          // an attempt its owner left running ended, as far as anyone knows, with the owner's
          // last sign of life (not now, when it is found)
          f.at = leftAttemptEnd(this.#lastSign, rec.startedAt, started);
        }
        stale.push(f);
      }
    }
    try {
      if (stale.length > 0) {
        await store.finishTasks(stale);
        for (const f of stale) applyFinish(this.#nodes.get(f.taskId)!.record, f);
      }
      await store.updateRun(this.#run.id, {
        state: "running",
        startedAt: this.#run.startedAt ?? started,
        // (of an end before: a failed or cancelled run resumed)
        finishedAt: undefined,
        error: undefined,
        heartbeatAt: started,
        owner,
      }, owner);
    } catch (e) {
      if (this.#lostBy(e)) return await this.#finishRun(started);
      throw e;
    }
    this.#ownedAt = started;
    emit({
      type: "run_started",
      runId: this.#run.id,
      workflow: this.#run.workflowName,
      tasks: this.#nodes.size,
      resumed,
      at: started,
    });

    if (continueRun) this.#carryOver();
    const onAbort = () => this.#stopRun("cancel");
    if (signal?.aborted) onAbort();
    signal?.addEventListener("abort", onAbort, { once: true });
    const timeoutMs = this.#run.workflow.timeoutMs;
    if (timeoutMs !== undefined) {
      // continuing: the run's own clock, started by its first coordinator
      const left = continueRun && this.#run.startedAt !== undefined
        ? Math.max(0, this.#run.startedAt + timeoutMs - started)
        : timeoutMs;
      this.#timers.push(clock.setTimer(left, () => {
        this.#stopRun(
          "timeout",
          new GleitzeitError("WORKFLOW_TIMEOUT", `run timed out after ${timeoutMs / 1000}s`),
        );
      }));
    }
    this.#scheduleHeartbeat();

    for (const node of this.#nodes.values()) {
      if (node.state === "queued" && node.remaining === 0) this.#makeReady(node);
    }
    this.#pumpReady();
    this.#checkDone();
    await this.#done;
    signal?.removeEventListener("abort", onAbort);
    for (const t of this.#timers) t.cancel();
    this.#heartbeat?.cancel();
    return await this.#finishRun(started);
  }

  #scheduleHeartbeat(): void {
    const { clock, store, heartbeatMs } = this.#svc;
    const beat = async () => {
      if (this.#finished || this.#lost) return;
      if (this.#silent()) {
        await this.#stillOwned(); // late (this process was stopped, say): ask first
      } else {
        const at = clock.now();
        store.updateRun(this.#run.id, { heartbeatAt: at }, this.#svc.owner).then(
          () => (this.#ownedAt = Math.max(this.#ownedAt, at)),
          (e) => void this.#lostBy(e),
        );
      }
      if (!this.#finished && !this.#lost) this.#heartbeat = clock.setTimer(heartbeatMs, beat);
    };
    this.#heartbeat = clock.setTimer(heartbeatMs, beat);
  }

  /** No sign of life given for two heartbeats: others may have counted the run as abandoned. */
  #silent(): boolean {
    return this.#svc.clock.now() - this.#ownedAt > 2 * this.#svc.heartbeatMs;
  }

  /**
   * Whether the run is still this execution's to write. After a silence (this process was
   * stopped, e.g. with Ctrl-Z, or its store was out of reach), another process may have
   * resumed or cancelled the run meanwhile: the stored run says, before anything more is
   * started or written. A run lost so stops here, writing nothing more.
   */
  #stillOwned(running = true): Promise<boolean> {
    if (this.#lost) return Promise.resolve(false);
    if (!this.#silent()) return Promise.resolve(true);
    this.#ownership ??= this.#checkOwnership(running).finally(() => (this.#ownership = undefined));
    return this.#ownership;
  }

  /** `running`: the run must also still be `running` (false: before this execution began it). */
  async #checkOwnership(running: boolean): Promise<boolean> {
    const { store, clock, owner } = this.#svc;
    const at = clock.now();
    let run: RunRecord | undefined;
    try {
      run = await store.getRun(this.#run.id);
    } catch {
      return true; // the store is out of reach: the write that follows fails and says so
    }
    if (run?.owner === owner && (run.state === "running" || !running)) {
      // owned again only once others can see it (a failed write leaves the heartbeat stale)
      await store.updateRun(this.#run.id, { heartbeatAt: at }, owner).then(
        () => (this.#ownedAt = Math.max(this.#ownedAt, at)),
        (e) => void this.#lostBy(e),
      );
      return !this.#lost;
    }
    const id = this.#run.id;
    const why = run === undefined
      ? "it is gone from the store"
      : run.state === "cancelled"
      ? "it was cancelled"
      : run.owner !== owner
      ? `process ${run.owner ?? "?"} took it over`
      : `it is ${run.state} there`;
    this.#lost = new GleitzeitError(
      "WORKFLOW_FAILED",
      `run ${id} is no longer this process's: ${why} while this process gave no sign of life ` +
        `(stopped?); from then on it started and wrote nothing`,
      { hint: `see \`gleitzeit workflow status ${id}\`` },
    );
    this.#stopRun("lost", this.#lost);
    return false;
  }

  /**
   * A write the store refused because the run is no longer this execution's (LEASE_EXPIRED:
   * another process took it over in the meantime, or a cancel took it away): the run is lost
   * here, as in {@link #checkOwnership}. False for any other error.
   */
  #lostBy(e: unknown): boolean {
    if (!(e instanceof GleitzeitError) || e.code !== "LEASE_EXPIRED") return false;
    if (!this.#lost) {
      const id = this.#run.id;
      const now = (e.details as { owner?: string | null } | undefined)?.owner;
      this.#lost = new GleitzeitError(
        "WORKFLOW_FAILED",
        `run ${id} is no longer this process's: ${
          now ? `process ${now} took it over` : "it was cancelled or taken from it"
        } (the store refused this process's write); from then on it started and wrote nothing`,
        { hint: `see \`gleitzeit workflow status ${id}\`` },
      );
      this.#stopRun("lost", this.#lost);
    }
    return true;
  }

  #pumpReady(): void {
    const { limiter } = this.#svc;
    while (!this.#stop && this.#ready.size > 0 && this.#running < this.#maxParallel) {
      if (!limiter.tryAcquire()) {
        limiter.onRelease(this.#pump);
        return;
      }
      const node = this.#ready.pop()!;
      this.#running++;
      this.#outstanding++;
      void this.#attempt(node);
    }
  }

  #lookup = (root: string) => {
    if (root === "params") return { found: true as const, value: this.#run.params };
    const node = this.#nodes.get(root) ?? this.#byName.get(root);
    if (!node || !node.hasResult) return { found: false as const };
    return { found: true as const, value: node.result };
  };

  async #attempt(node: Node): Promise<void> {
    const { clock, dispatcher, emit } = this.#svc;
    const runId = this.#run.id;
    const taskId = node.spec.id;
    const attempt = ++node.attempts;
    node.state = "running";
    // Attempts that wait for a free worker are recorded once one begins them (see
    // Dispatcher.queues); the others before they are made.
    const queued = dispatcher.queues === true;
    let startedAt = clock.now();
    if (!queued && !await this.#recordStart(node, attempt, startedAt)) {
      this.#releaseSlot();
      this.#unstarted(node);
      return;
    }
    let result: unknown;
    let error: GleitzeitError | undefined;
    let timer: Timer | undefined;
    let ended = false;
    let begun: Promise<boolean> | undefined;
    const timeoutMs = node.spec.timeoutMs;
    // An attempt with a timeout (or a queued one, which a failed start must stop) gets its
    // own signal; the others share the run's, which only cancellation aborts (one
    // AbortController per run instead of one per task).
    const controller = timeoutMs !== undefined || queued ? new AbortController() : undefined;
    node.controller = controller;
    // what is left of the timeout: a wait for a provider's free place does not count (see
    // CallContext.onWaiting), so the timer stops for it and goes on after
    let left = timeoutMs ?? 0;
    let timerFrom = 0;
    const startTimer = () => {
      if (timeoutMs === undefined || ended || timer) return;
      timerFrom = clock.now();
      timer = clock.setTimer(left, () =>
        controller!.abort(
          new GleitzeitError(
            "TASK_TIMEOUT",
            `task '${taskId}' timed out after ${timeoutMs / 1000}s (attempt ${attempt})`,
            { details: { timeoutMs, attempt } },
          ),
        ));
    };
    const begin = (executor?: string): Promise<boolean> => {
      if (begun) return begun;
      node.waiting = false;
      startedAt = clock.now();
      startTimer(); // from now, not from when the start is written
      begun = this.#recordStart(node, attempt, startedAt, executor).then((ok) => {
        if (!ok) controller!.abort(cancelledError()); // not this execution's, or no store
        return ok;
      });
      return begun;
    };
    node.waiting = queued;
    if (!queued) startTimer();
    try {
      if (node.awaited instanceof GleitzeitError) throw node.awaited;
      const own = node.awaited
        ? withDependencyResults(node.spec.params, node.awaited)
        : node.spec.params;
      const params = hasReference(own)
        ? substitute(own, this.#lookup) as Record<string, unknown>
        : own;
      if (this.#stop && this.#stop.kind !== "fail_fast") throw cancelledError();
      const signal = controller?.signal ?? this.#runController.signal;
      const ctx: CallContext = {
        signal,
        runId,
        taskId,
        attempt,
        onProgress: (chunk) => emit({ type: "task_progress", runId, taskId, chunk }),
      };
      if (queued) ctx.onBegin = begin;
      // (queued: its worker says when it waits there; the timer runs from its begin)
      if (timeoutMs !== undefined) {
        ctx.onWaiting = (waiting) => {
          if (ended) return;
          if (waiting && timer) {
            timer.cancel();
            timer = undefined;
            left = Math.max(0, left - (clock.now() - timerFrom));
          } else if (!waiting) startTimer();
        };
      }
      if (timeoutMs !== undefined) ctx.timeoutMs = timeoutMs;
      if (this.#run.workflow.baseDir !== undefined) ctx.baseDir = this.#run.workflow.baseDir;
      if (this.#run.workflow.sandbox !== undefined || node.spec.sandbox !== undefined) {
        ctx.sandbox = { workflow: this.#run.workflow.sandbox, task: node.spec.sandbox };
      }
      const call = dispatcher.call(node.spec.protocol, node.spec.method, params, ctx);
      // (a queueing dispatcher settles an aborted call itself, once it knows whether the
      // attempt began: see Dispatcher.queues)
      result = await (queued ? call : raceAbort(call, signal));
    } catch (e) {
      error = toGleitzeitError(e, "TASK_EXECUTION_FAILED");
    } finally {
      ended = true;
      node.waiting = false;
      timer?.cancel();
      node.controller = undefined;
      this.#releaseSlot();
    }
    if (queued) {
      if (!begun && error && (isWorkerLost(error) || this.#stop)) {
        // lost with a worker, or the run stopping, before it began: nothing ran; it is sent
        // again as it was, or ends as a task that did not start
        node.attempts--;
        this.#requeue(node);
        this.#outstanding--;
        this.#pumpReady();
        this.#checkDone();
        return;
      }
      // ended without beginning (it could not be sent, or Redis lost it): on record, as an
      // attempt that ended as it began
      begin();
      if (!await begun) {
        this.#unstarted(node);
        return;
      }
    }
    const at = clock.now();
    if (!error) {
      await this.#write(node, { state: "completed", attempt, result, at }, () => {
        node.state = "completed";
        node.result = result;
        node.hasResult = true;
        emit({ type: "task_completed", runId, taskId, attempt, durationMs: at - startedAt, at });
        this.#release(node);
      });
    } else {
      await this.#handleError(node, attempt, error, at);
    }
    this.#outstanding--;
    this.#pumpReady();
    this.#checkDone();
  }

  /**
   * Records an attempt's start (and says so), as executed by `executor` (a worker) or this
   * process; false when it must not start after all.
   */
  async #recordStart(
    node: Node,
    attempt: number,
    at: number,
    executor?: string,
  ): Promise<boolean> {
    const { store, emit, owner } = this.#svc;
    try {
      // another process has the run now: this task is not this execution's to start
      if (!await this.#stillOwned()) return false;
      await store.startAttempt(this.#run.id, node.spec.id, attempt, at, executor ?? owner, owner);
      applyStart(node.record, attempt, at);
    } catch (e) {
      if (!this.#lostBy(e)) this.#fatal(toGleitzeitError(e, "PERSISTENCE_ERROR"));
      return false;
    }
    emit({ type: "task_started", runId: this.#run.id, taskId: node.spec.id, attempt, at });
    return true;
  }

  /**
   * A task that is to start again (its worker was lost): back in line, unless the run is
   * stopping: then it is what a task that had not started is (see #stopRun).
   */
  #requeue(node: Node): void {
    node.state = "queued";
    const reason = this.#notStartedReason();
    if (!this.#stop) this.#ready.push(node);
    else if (reason !== undefined) this.#endNotStarted(node, reason);
  }

  /**
   * Why tasks that have not started end, when the run stops (see #stopRun): skipped when it
   * timed out or failed fast, cancelled when it was cancelled (either way a resume runs them);
   * none when the run was lost or cannot be written.
   */
  #notStartedReason(): string | undefined {
    const kind = this.#stop?.kind;
    if (kind === "timeout") return "not started: run timed out";
    if (kind === "cancel") return "not started: run cancelled";
    if (kind === "fail_fast") return `not started: ${this.#failFastCause()}`;
    return undefined;
  }

  /** Why a fail_fast run stopped: `run stopped after 'a' failed (fail_fast)`. */
  #failFastCause(): string {
    const first = this.#failedTasks[0];
    return `run stopped after ${first ? `'${first}' failed` : "a failure"} (fail_fast)`;
  }

  #endNotStarted(node: Node, reason: string): void {
    if (this.#stop?.kind === "cancel") this.#end(node, "cancelled", reason);
    else this.#end(node, "skipped", reason);
  }

  /** An attempt that was not started after all (never recorded): the task is as before. */
  /**
   * Into the ready queue. One that awaits stored tasks of other runs (see
   * {@link TaskSpec.awaits}) waits for them first, queued and holding no slot of the engine's
   * limit (others' runs, this engine's too, may be what it waits for).
   */
  #makeReady(node: Node): void {
    if (!node.spec.awaits?.length || node.awaited !== undefined) {
      this.#ready.push(node);
      return;
    }
    this.#outstanding++;
    void this.#awaitTasks(node).then((awaited) => {
      this.#outstanding--;
      if (awaited !== undefined) {
        node.awaited = awaited;
        if (!this.#stop && node.state === "queued") this.#ready.push(node);
      }
      this.#pumpReady();
      this.#checkDone();
    });
  }

  /**
   * Waits until the stored tasks `node` awaits (see {@link TaskSpec.awaits}) have ended:
   * their records when all completed, the error its attempt fails with when one did not (or,
   * on SQLite, where the process of one's run is gone: nothing else can end it), undefined
   * when the run stops meanwhile.
   */
  async #awaitTasks(node: Node): Promise<Map<string, TaskRecord> | GleitzeitError | undefined> {
    const { store, emit } = this.#svc;
    const runId = this.#run.id;
    const taskId = node.spec.id;
    const awaiting = node.awaiting = new AbortController();
    const signal = awaiting.signal;
    const told = new Set<string>(); // runs said to be executed by nothing
    let said = false; // what it waits for
    const waiting = (pending: TaskRecord[], note?: string) =>
      emit({
        type: "task_waiting",
        runId,
        taskId,
        on: pending.map((t) => `${t.id} (${t.state})`),
        ...(note ? { note } : {}),
      });
    try {
      for (;;) {
        try {
          return await waitForTasks(store, node.spec.awaits!, signal, (pending) => {
            if (said) return;
            said = true;
            waiting(pending);
          }, async (pending) => {
            const own = pending.find((t) => t.runId === runId);
            if (own) {
              throw new GleitzeitError(
                "TASK_DEPENDENCY_FAILED",
                `dependency ${own.id} is a task of this very run (${runId}/${own.taskId}): ` +
                  "it would wait for ever",
                { hint: "a task of the same run is a dependency: name it in `dependencies`" },
              );
            }
            const redis = store.backend === "redis";
            for (const t of new Map(pending.map((t) => [t.runId, t])).values()) {
              const run = await store.getRun(t.runId);
              const state = run && displayState(run);
              if (redis) {
                // A worker takes over a run queued for workers; one that `gleitzeit run`
                // started is not (it waits for a resume): said once, not failed.
                if (state === "interrupted" && !told.has(t.runId)) {
                  told.add(t.runId);
                  waiting(
                    pending,
                    `run ${t.runId} is interrupted: a worker takes it over if it was ` +
                      "queued for workers (run --detach); else resume it with " +
                      `\`gleitzeit workflow resume ${t.runId}\``,
                  );
                }
                continue;
              }
              const orphaned = await orphanedDependency(store, t, state, "this one");
              if (orphaned) throw orphaned;
              if ((state === "queued" || state === "interrupted") && !told.has(t.runId)) {
                told.add(t.runId);
                waiting(
                  pending,
                  `nothing executes run ${t.runId} (${state}): start it with ` +
                    `\`gleitzeit workflow resume ${t.runId}\``,
                );
              }
            }
          });
        } catch (e) {
          if (signal.aborted || this.#stop) return undefined;
          const error = toGleitzeitError(e, "TASK_DEPENDENCY_FAILED");
          if (!error.retryable) return error; // (failed, not there, a reference that names none)
          // the store failing for a moment (Redis restarting, say): looked at again, as a
          // wait of hours must not fail for one read
          await pause(1000, signal).catch(() => {});
        }
      }
    } finally {
      node.awaiting = undefined;
    }
  }

  #unstarted(node: Node): void {
    node.attempts--;
    node.state = "queued";
    this.#outstanding--;
    this.#checkDone();
  }

  #releaseSlot(): void {
    this.#running--;
    this.#svc.limiter.release();
  }

  async #handleError(
    node: Node,
    attempt: number,
    error: GleitzeitError,
    at: number,
  ): Promise<void> {
    const { emit, clock, random } = this.#svc;
    const runId = this.#run.id;
    const taskId = node.spec.id;
    const stopKind = this.#stop?.kind;
    if (
      stopKind !== undefined && stopKind !== "lost" &&
      (error.code === "TASK_CANCELLED" || error.code === "WORKFLOW_TIMEOUT" ||
        error.code === "WORKFLOW_CANCELLED")
    ) {
      // (fail_fast: an attempt withdrawn as a worker began it)
      const reason = stopKind === "timeout"
        ? "run timed out"
        : stopKind === "fail_fast"
        ? this.#failFastCause()
        : "run cancelled";
      await this.#write(
        node,
        { state: "cancelled", attempt, at, reason, error: error.toData() },
        () => {
          node.state = "cancelled";
          emit({ type: "task_cancelled", runId, taskId, reason, at });
        },
      );
      return;
    }
    if (isWorkerLost(error)) {
      // Not the task's failure: its worker died, or was stopped, while executing it. The
      // attempt ends interrupted and another starts at once, outside the task's retry budget;
      // but a task that keeps killing its workers (ending the process, say) is not sent to
      // one more. A worker stopped on purpose (SIGTERM: a restart) does not count.
      if (error.details.stopped !== true) node.lostWorkers.push(String(error.details.worker));
      // it ended, as far as anyone knows, with its worker's last sign of life
      const seen = error.details.last_seen;
      if (typeof seen === "number") at = Math.min(at, Math.max(seen, node.record.startedAt ?? at));
      if (node.lostWorkers.length < MAX_WORKER_LOSSES) {
        node.attemptBase++;
        const lost = error.toData();
        node.lastError = lost;
        await this.#write(
          node,
          { state: "queued", attempt, at, error: lost, attemptState: "interrupted" },
          () => {
            if (!this.#stop) {
              emit({ type: "task_failed", runId, taskId, attempt, error: lost, retryInMs: 0, at });
            }
            if (!this.#lost) this.#requeue(node);
          },
        );
        return;
      }
      error = new GleitzeitError(
        "LEASE_EXPIRED",
        `${error.message}; ${MAX_WORKER_LOSSES} workers died while executing it ` +
          `(${node.lostWorkers.join(", ")}), so it is not sent to another`,
        {
          retryable: false,
          details: { ...error.details, lost_workers: [...node.lostWorkers] },
          hint: "see those workers' logs: a task that ends the process executing it (memory?) " +
            "ends every worker it is sent to",
        },
      );
    }
    const data = error.toData();
    node.lastError = data;
    const used = attempt - node.attemptBase;
    if (error.retryable && used < node.spec.retry.maxAttempts && !this.#stop) {
      const delay = retryDelayMs(node.spec.retry, used, random);
      await this.#write(node, { state: "retry_pending", attempt, at, error: data }, () => {
        node.state = "retry_pending";
        emit({ type: "task_failed", runId, taskId, attempt, error: data, retryInMs: delay, at });
        if (this.#lost) return; // (found lost while writing this: no retry here)
        this.#outstanding++;
        node.retryTimer = clock.setTimer(delay, () => {
          node.retryTimer = undefined;
          this.#outstanding--;
          if (this.#stop) {
            void this.#abandonRetry(node);
          } else {
            node.state = "queued";
            this.#ready.push(node);
            this.#pumpReady();
          }
          this.#checkDone();
        });
      });
      return;
    }
    // retryable, with attempts left, but the run is stopping (fail_fast: another task failed
    // meanwhile): said, as a retry abandoned while it waited is
    const abandoned = error.retryable && used < node.spec.retry.maxAttempts && this.#stop
      ? `retry abandoned: ${
        this.#stop.kind === "fail_fast"
          ? this.#failFastCause()
          : this.#stop.kind === "timeout"
          ? "run timed out"
          : "run stopped"
      }`
      : undefined;
    await this.#write(
      node,
      { state: "failed", attempt, at, error: data, ...(abandoned ? { reason: abandoned } : {}) },
      () => {
        node.state = "failed";
        emit({
          type: "task_failed",
          runId,
          taskId,
          attempt,
          error: data,
          ...(abandoned ? { abandoned } : {}),
          at,
        });
        this.#onFailedForGood(node);
      },
    );
  }

  /**
   * Continuing a run: tasks that failed or were skipped for good keep that outcome, and have
   * the effects they had on the rest (dependents skipped or released, fail_fast stopping).
   */
  #carryOver(): void {
    const failed: Node[] = [];
    for (const node of this.#nodes.values()) {
      const state = node.record.state;
      if (state === "failed") {
        node.state = "failed";
        if (node.record.error) node.lastError = node.record.error;
        failed.push(node);
      } else if (state === "skipped") {
        node.state = "skipped";
        this.#skipDependents(node, node.record.reason ?? "a dependency was skipped");
      }
    }
    for (const node of failed) this.#onFailedForGood(node);
  }

  /** A retry that will not happen because the run is stopping. */
  async #abandonRetry(node: Node): Promise<void> {
    this.#outstanding++;
    const at = this.#svc.clock.now();
    const kind = this.#stop?.kind;
    if (kind === "fail_fast") {
      const reason = `retry abandoned: ${this.#failFastCause()}`;
      await this.#write(node, { state: "failed", at, reason }, () => {
        node.state = "failed";
        this.#failedTasks.push(node.spec.id);
        this.#svc.emit({
          type: "task_failed",
          runId: this.#run.id,
          taskId: node.spec.id,
          attempt: node.attempts,
          error: node.lastError ??
            { code: "TASK_EXECUTION_FAILED", message: reason, retryable: false },
          abandoned: reason,
          at,
        });
      });
    } else {
      const reason = kind === "timeout" ? "run timed out" : "run cancelled";
      await this.#write(node, { state: "cancelled", at, reason }, () => {
        node.state = "cancelled";
        this.#svc.emit({
          type: "task_cancelled",
          runId: this.#run.id,
          taskId: node.spec.id,
          reason,
          at,
        });
      });
    }
    this.#outstanding--;
    this.#checkDone();
  }

  #onFailedForGood(node: Node): void {
    if (node.spec.continueOnFailure) {
      this.#toleratedFailures++;
      this.#release(node);
      return;
    }
    this.#failedTasks.push(node.spec.id);
    this.#skipDependents(node, `dependency '${node.spec.id}' failed`);
    if (this.#run.workflow.onFailure === "fail_fast") this.#stopRun("fail_fast");
  }

  /** A dependency finished in a way that lets its dependents go on. */
  #release(node: Node): void {
    for (const dep of node.dependents) {
      dep.remaining--;
      if (dep.remaining === 0 && dep.state === "queued" && !this.#stop) this.#makeReady(dep);
    }
  }

  #skipDependents(node: Node, reason: string): void {
    const stack = [...node.dependents];
    while (stack.length > 0) {
      const dep = stack.pop()!;
      if (dep.state !== "queued") continue;
      this.#skip(dep, reason);
      stack.push(...dep.dependents);
    }
  }

  #skip(node: Node, reason: string): void {
    this.#end(node, "skipped", reason);
  }

  /** Ends a task that will not run (in this execution): skipped or cancelled, with why. */
  #end(node: Node, state: "skipped" | "cancelled", reason: string): void {
    node.state = state;
    this.#outstanding++;
    const at = this.#svc.clock.now();
    void this.#write(node, { state, at, reason }, () => {
      const { id: runId } = this.#run;
      const taskId = node.spec.id;
      this.#svc.emit(
        state === "skipped"
          ? { type: "task_skipped", runId, taskId, reason, at }
          : { type: "task_cancelled", runId, taskId, reason, at },
      );
    }).finally(() => {
      this.#outstanding--;
      this.#checkDone();
    });
  }

  #stopRun(kind: StopKind, error?: GleitzeitError): void {
    if (this.#stop && this.#stop.kind !== "fail_fast") return;
    if (this.#stop?.kind === "fail_fast" && kind === "fail_fast") return;
    this.#stop = error ? { kind, error } : { kind };
    this.#ready.drain();
    for (const node of this.#nodes.values()) node.awaiting?.abort();
    const reason = this.#notStartedReason();
    if (reason !== undefined) {
      for (const node of this.#nodes.values()) {
        if (node.state === "queued") this.#endNotStarted(node, reason);
      }
    }
    if (kind !== "fail_fast") {
      // (lost: the run's new owner may still take the answers of attempts executing
      // elsewhere, so they are left alone, not cancelled; see Dispatcher.queues)
      const reason = kind === "timeout"
        ? (error ?? new GleitzeitError("WORKFLOW_TIMEOUT", "run timed out"))
        : kind === "lost"
        ? new GleitzeitError("LEASE_EXPIRED", "the run is no longer this process's")
        : cancelledError();
      this.#runController.abort(reason);
      for (const node of this.#nodes.values()) {
        node.controller?.abort(reason);
      }
    } else {
      // attempts still waiting for a worker have not started: they do not now
      for (const node of this.#nodes.values()) {
        if (node.waiting) node.controller?.abort(cancelledError());
      }
    }
    for (const node of this.#nodes.values()) {
      if (node.retryTimer) {
        node.retryTimer.cancel();
        node.retryTimer = undefined;
        this.#outstanding--;
        void this.#abandonRetry(node);
      }
    }
    this.#checkDone();
  }

  #fatal(error: GleitzeitError): void {
    this.#stopRun("fatal", error);
  }

  /**
   * Writes a finish, then applies its effects. Stores commit the writes issued in one tick
   * together, so finishes that arrive together (and the claims they free) share a commit.
   */
  async #write(
    node: Node,
    f: Omit<TaskFinish, "runId" | "taskId">,
    then: () => void,
  ): Promise<void> {
    const finish: TaskFinish = {
      runId: this.#run.id,
      taskId: node.spec.id,
      ...f,
      ifOwner: this.#svc.owner,
    };
    try {
      // (not this execution's run any more: the engine goes on, the store is left alone)
      if (await this.#stillOwned()) await this.#svc.store.finishTasks([finish]);
    } catch (e) {
      if (!this.#lostBy(e)) {
        this.#fatal(toGleitzeitError(e, "PERSISTENCE_ERROR"));
        return;
      }
    }
    applyFinish(node.record, finish);
    then();
  }

  #checkDone(): void {
    if (this.#finished || this.#outstanding > 0 || this.#running > 0) return;
    if (this.#ready.size > 0 && !this.#stop) return;
    this.#finished = true;
    this.#resolveDone();
  }

  async #finishRun(started: number): Promise<RunOutcome> {
    const { store, clock, emit } = this.#svc;
    const at = clock.now();
    let state: RunState;
    let error: GleitzeitError | undefined;
    const stop = this.#stop;
    if (this.#lost) {
      state = "interrupted";
      error = this.#lost;
    } else if (stop?.kind === "fatal") {
      state = "failed";
      error = stop.error;
    } else if (stop?.kind === "cancel") {
      state = "cancelled";
      error = new GleitzeitError("WORKFLOW_CANCELLED", "run cancelled", {
        hint: `continue it with \`gleitzeit workflow resume ${this.#run.id}\``,
      });
    } else if (stop?.kind === "timeout") {
      state = "failed";
      error = stop.error;
    } else if (this.#failedTasks.length > 0) {
      state = "failed";
      const n = this.#failedTasks.length;
      error = new GleitzeitError(
        "WORKFLOW_FAILED",
        `${n} task${n === 1 ? "" : "s"} failed: ${this.#failedTasks.slice(0, 5).join(", ")}${
          n > 5 ? ", ..." : ""
        }${
          this.#toleratedFailures > 0
            ? ` (and ${this.#toleratedFailures} marked continue_on_failure)`
            : ""
        }`,
        { details: { failed: this.#failedTasks } },
      );
    } else {
      state = "completed";
    }
    // error always set: undefined clears one an earlier execution left (a cancel, a failure)
    const patch = { state, finishedAt: at, error: error?.toData() };
    if (!this.#lost && await this.#stillOwned()) {
      const write = store.updateRun(this.#run.id, patch, this.#svc.owner);
      await (stop?.kind !== "fatal" ? write : write.catch(() => {})).catch((e) => {
        if (!this.#lostBy(e)) throw e;
      });
    }
    if (this.#lost) {
      // another process's run now: nothing of this one's end is stored
      state = "interrupted";
      error = this.#lost;
    }
    const durationMs = at - started;
    const outcome: RunOutcome = { runId: this.#run.id, state, durationMs, tasks: [] };
    const first = this.#run.startedAt;
    if (first !== undefined && first < started) outcome.sinceStartMs = at - first;
    if (error) outcome.error = error.toData();
    emit({
      type: "run_finished",
      runId: this.#run.id,
      state,
      durationMs,
      at,
      ...(error ? { error: error.toData() } : {}),
    });
    // the records mirror every write, so the outcome needs no read of the whole run; but a
    // lost run's are what this process did not write: the store's say how the run stands
    outcome.tasks = [...this.#nodes.values()].map((n) => n.record);
    if (this.#lost) {
      outcome.lost = true;
      outcome.tasks = await store.listTasks({ runId: this.#run.id }).catch(() => outcome.tasks);
    }
    return outcome;
  }
}

/** Rejects with the signal's reason as soon as it aborts, even if `p` never settles. */
function raceAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}
