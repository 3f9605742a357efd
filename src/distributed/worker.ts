/**
 * `gleitzeit worker`: takes runs and task attempts from the Redis streams (see work_queue.ts).
 *
 * - Runs: a worker coordinates the runs it takes with the engine (claim, dependencies, retries,
 *   results), sending every task attempt to the tasks stream instead of executing it in place.
 * - Tasks: a worker executes attempts from the tasks stream with its own providers, whichever
 *   run they belong to, and answers on the coordinator's reply stream.
 * - Leases: every `leaseMs / 3` a worker touches the entries it holds and renews its lease key
 *   (TTL `leaseMs`). An entry whose worker's lease key is gone belongs to a worker that died
 *   (each worker is judged by its own lease, so a short one never takes over from a live
 *   worker with a longer one): a run is taken over (resumed: completed tasks keep their
 *   results, the others run again as new attempts) at once when that worker coordinated it,
 *   else once its owner's heartbeat is older than the owner's lease; a task attempt's taker
 *   tells the coordinator, which records the attempt as interrupted and starts another (see
 *   MAX_WORKER_LOSSES). The coordinator records the first outcome per attempt only.
 *
 * @module
 */

import {
  type ErrorData,
  GleitzeitError,
  toGleitzeitError,
  workerLostError,
} from "../core/errors.ts";
import { isTerminalRun } from "../core/states.ts";
import { defaultOwner, Engine, type RecoveredAnswer } from "../engine/engine.ts";
import type { EventListener } from "../engine/events.ts";
import { HEARTBEAT_MS, localOwnerPid, ownerAlive, pidAlive } from "../engine/liveness.ts";
import type { RedisStore } from "../persistence/redis_store.ts";
import type { ProviderRegistry } from "../providers/registry.ts";
import {
  allTaskStreams,
  ensureGroup,
  FailureStreak,
  GROUP,
  parseEntries,
  queueKeys,
  readStreams,
  RemoteDispatcher,
  REPLY_TTL_SECONDS,
  type StreamEntry,
  type TaskJob,
} from "./work_queue.ts";

/** Options of {@link Worker}. */
export interface WorkerOptions {
  store: RedisStore;
  registry: ProviderRegistry;
  /** Task attempts executed at once. */
  concurrency: number;
  /** Runs coordinated at once. Default 16. */
  maxRuns?: number;
  /** An entry idle this long (ms) is taken over. Default 30 000. */
  leaseMs?: number;
  /** Redis failing this long (ms) stops the worker, with {@link Worker.failure}. Default 15 000. */
  giveUpMs?: number;
  /**
   * An attempt of a run coordinated here that no live worker can take (no healthy provider of
   * its protocol) fails after this long (ms). Default 60 000 (see RemoteDispatcherOptions).
   */
  unservedMs?: number;
  /** Identity (consumer name, run owner). Default `host:pid:nonce`. */
  owner?: string;
  onEvent?: EventListener;
  /** One line per thing the worker does (taken, finished, reclaimed). */
  log?: (line: string) => void;
  /**
   * A remark on an attempt it is about to execute, added to its "executing" line (the CLI
   * names a Python sandbox weaker than bubblewrap there).
   */
  remark?: (job: { protocol: string; sandbox?: { workflow?: unknown; task?: unknown } }) =>
    | string
    | undefined;
}

/** What a worker takes tasks of (see ProviderRegistry.protocolHealth, unservable). */
type Health = ReturnType<ProviderRegistry["protocolHealth"]> & {
  unservable: Record<string, ErrorData>;
};

/** An entry taken by #autoclaim, with the worker that held it (none: this one's own). */
interface Claimed {
  entry: StreamEntry;
  holder: string | undefined;
  lastSeen?: number;
}

interface Running {
  entry: StreamEntry;
  /** The stream its entry is in. */
  stream: string;
  controller?: AbortController;
  /** Settles once a task attempt has ended and been answered. */
  done?: Promise<void>;
  dispatchId?: string;
  runId?: string;
}

/** One worker process's loops. */
export class Worker {
  readonly owner: string;
  readonly #store: RedisStore;
  readonly #registry: ProviderRegistry;
  readonly #concurrency: number;
  readonly #maxRuns: number;
  readonly #leaseMs: number;
  readonly #keys;
  readonly #log: (line: string) => void;
  readonly #remark: WorkerOptions["remark"];
  readonly #onEvent?: EventListener;
  #engine?: Engine;
  #dispatcher?: RemoteDispatcher;
  #connections: RedisStore[] = [];
  #tasks = new Map<string, Running>();
  #runs = new Map<string, Running>();
  #stopped = false;
  #stopping?: Promise<void>;
  /** Why the worker stopped by itself (Redis gone), if it did. */
  failure?: GleitzeitError;
  readonly #giveUpMs: number;
  readonly #since = Date.now();
  /** The load last registered, `tasks/runs`. */
  #registered = "";
  #loops: Promise<void>[] = [];
  #waiters = new Set<() => void>();
  readonly #unservedMs: number | undefined;
  /**
   * The protocols this worker takes tasks of (a healthy provider), and those it has only
   * unhealthy providers of: as registered, and as read (see #taskLoop).
   */
  #health: Health = { healthy: [], unhealthy: [], reasons: {}, unservable: {} };

  constructor(options: WorkerOptions) {
    this.#store = options.store;
    this.#registry = options.registry;
    this.#concurrency = Math.max(1, options.concurrency);
    this.#maxRuns = Math.max(1, options.maxRuns ?? 16);
    this.#leaseMs = options.leaseMs ?? 30_000;
    this.#giveUpMs = options.giveUpMs ?? 15_000;
    this.#unservedMs = options.unservedMs;
    this.owner = options.owner ?? defaultOwner();
    this.#keys = queueKeys(options.store.prefix);
    this.#log = options.log ?? (() => {});
    this.#remark = options.remark;
    this.#onEvent = options.onEvent;
  }

  /**
   * Joins the group and starts the loops; resolves once they all stopped. `onReady` is called
   * once the worker has joined and opened its connections, as it starts taking work.
   */
  async start(onReady?: () => void): Promise<void> {
    await ensureGroup(this.#store, this.#keys.runs);
    await ensureGroup(this.#store, this.#keys.legacyTasks);
    // which protocols it takes tasks of is known before it takes any
    await this.#probeProviders();
    this.#health = this.#healthNow();
    await this.#register();
    const [taskReader, runReader, replyReader] = await Promise.all([
      this.#store.sibling(),
      this.#store.sibling(),
      this.#store.sibling(),
    ]);
    this.#connections = [taskReader, runReader, replyReader];
    // their connections' ids, for a stop to end their blocking reads at once (CLIENT UNBLOCK)
    this.#readerIds = await Promise.all(
      this.#connections.map((c) => c.command(["CLIENT", "ID"]).then(String).catch(() => "")),
    );
    this.#dispatcher = new RemoteDispatcher(this.#store, replyReader, this.owner, {
      giveUpMs: this.#giveUpMs,
      ...(this.#unservedMs !== undefined ? { unservedMs: this.#unservedMs } : {}),
      // (which stream each attempt goes to: a part of its protocol only some workers serve)
      routeOf: (protocol, ctx) => this.#registry.routeOf(protocol, ctx),
    });
    // Heartbeats as often as any engine's (every 2 s: `workflow list` calls a run whose owner
    // missed three `interrupted`), and well inside the lease; a run is taken over only once
    // its owner has been silent for the whole lease.
    const heartbeatMs = Math.max(100, Math.min(HEARTBEAT_MS, Math.floor(this.#leaseMs / 4)));
    this.#engine = new Engine({
      dispatcher: this.#dispatcher,
      store: this.#store,
      maxConcurrency: 1_000_000, // the executing workers limit themselves
      owner: this.owner,
      heartbeatMs,
      staleAfterMs: this.#leaseMs,
      onEvent: (e) => {
        // (a task awaiting other runs' tasks: what it waits for, and what would end a wait
        // that nothing ends now, in this worker's log)
        if (e.type === "task_waiting") {
          this.#log(`${e.runId}/${e.taskId} ${e.note ?? `waits for ${e.on.join(", ")}`}`);
        }
        this.#onEvent?.(e);
      },
    });
    onReady?.();
    this.#loops = [
      this.#taskLoop(taskReader),
      this.#runLoop(runReader),
      this.#leaseLoop(),
    ];
    await Promise.all(this.#loops);
    await this.#stopping; // stopped by itself: wait for the clean-up too
  }

  /**
   * Stops taking work and stops what runs here: attempts are aborted and answered as stopped
   * (their coordinators send them again), and runs handed over (no owner), for other workers
   * to take over at once (its lease key is deleted too).
   */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    // the runs it coordinates: left to the others at once, not after its lease
    const coordinating = [...this.#runs.values()].map((r) => r.runId!).filter(Boolean);
    this.#stopped = true;
    clearTimeout(this.#resendTimer);
    this.#wake();
    // First (bounded: a Redis that does not answer must not hold up a stop): with no owner,
    // their engines here write and start nothing more (the store refuses it), and leave the
    // attempts executing elsewhere to the next coordinator; the next worker that looks takes
    // each over (only while still this one's).
    let handing: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.allSettled(
        coordinating.map((id) => this.#store.updateRun(id, { owner: undefined }, this.owner)),
      ),
      new Promise((r) => (handing = setTimeout(r, 500))),
    ]);
    clearTimeout(handing);
    for (const t of this.#tasks.values()) t.controller?.abort(this.#stopReason);
    // the loops' blocking reads return now, not after their second (a reconnected reader has
    // another id: it returns within its second as before)
    await Promise.allSettled(
      this.#readerIds.filter(Boolean).map((id) => this.#store.command(["CLIENT", "UNBLOCK", id])),
    );
    // what they were executing is answered as stopped, for their coordinators to send again
    const answered = Promise.allSettled([...this.#tasks.values()].map((t) => t.done));
    await Promise.allSettled(this.#loops);
    await this.#dispatcher?.close();
    // Deregistering is a courtesy (the key expires after two leases): a Redis that does not
    // answer must not hold up a stop.
    const deregister = (async () => {
      // (first: an entry answered is not taken over as a dead worker's)
      await answered;
      await this.#store.command([
        "DEL",
        this.#keys.worker(this.owner),
        this.#keys.lease(this.owner),
      ])
        .catch(() => {});
      await this.#store.command(["ZREM", this.#keys.workers, this.owner]).catch(() => {});
    })();
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([deregister, new Promise((r) => (timer = setTimeout(r, 1000)))]);
    clearTimeout(timer);
    await Promise.all(this.#connections.map((c) => c.close().catch(() => {})));
  }

  /**
   * New task attempts, never more than the free slots: of the protocols (routes) this worker
   * has a healthy provider of now (their streams), and from the older single stream.
   *
   * XREADGROUP's COUNT applies to each stream it reads, so one read of several streams could
   * hand this worker up to COUNT entries per stream. Instead, a script takes entries stream
   * after stream (starting at another one each time, so a busy stream does not starve the
   * rest) until the free slots are used; when there is nothing, the worker waits with a plain
   * XREAD (which takes nothing) for an entry past what each stream's group has handed out. A
   * change of health ends that wait at once (see #checkHealth).
   */
  async #taskLoop(reader: RedisStore): Promise<void> {
    const streak = new FailureStreak(this.#giveUpMs);
    let turn = 0;
    while (!this.#stopped) {
      const count = this.#freeSlots();
      if (count <= 0 || this.#pausedReads) {
        await this.#sleepUntilWoken(1000);
        continue;
      }
      const names = [
        this.#keys.legacyTasks,
        ...this.#health.healthy.map((p) => this.#keys.tasks(p)),
      ];
      const first = turn++ % names.length;
      const order = [...names.slice(first), ...names.slice(0, first)];
      let entries: StreamEntry[] = [];
      if (count >= order.length) {
        // enough free slots for a blocking read of them all (see #blockingTake)
        try {
          entries = await this.#blockingTake(reader, order, count);
        } catch (e) {
          if (this.#stopped) return;
          const message = (e as Error).message;
          if (message.includes("NOGROUP")) {
            // a stream without its group (not made yet, or Redis lost it): made, and read again
            await Promise.all(order.map((s) => ensureGroup(this.#store, s))).catch(() => {});
            continue;
          }
          if (this.#readFailed(streak, "tasks", message)) return;
          await sleep(1000);
          await this.#refreshReaderId(reader);
          continue;
        }
        streak.succeeded();
        continue;
      }
      try {
        // (the slots are promised to this take only: #reclaim does not give them to its own
        // idle entries meanwhile; they are free again while it waits below)
        this.#reserved += count;
        let took: number, body: unknown;
        try {
          [took, body] = await this.#store.command([
            "EVAL",
            TAKE,
            String(order.length),
            ...order,
            GROUP,
            this.owner,
            String(count),
          ]) as [number, unknown];
          if (took === 1) {
            entries = readStreams(body);
            for (const entry of entries) this.#startTask(entry, false);
          }
        } finally {
          this.#reserved -= count;
        }
        if (took !== 1) {
          const ids = (body as unknown[]).map(String);
          await reader.command(["XREAD", "BLOCK", "1000", "STREAMS", ...order, ...ids]);
        }
      } catch (e) {
        if (this.#stopped) return;
        if (this.#readFailed(streak, "tasks", (e as Error).message)) return;
        await sleep(1000);
        await this.#refreshReaderId(reader);
        continue;
      }
      streak.succeeded();
      if (entries.length > count) {
        // cannot happen (the script counts); said, should it ever
        this.#log(`error: took ${entries.length} task entries for ${count} free slot(s)`);
      }
    }
  }

  /**
   * With at least one free slot per stream: one blocking XREADGROUP of them all, COUNT
   * floor(free / streams) each (so never more than the free slots in all), which Redis hands
   * each new entry to one blocked worker with (idle workers are not all woken for each
   * attempt, as a plain XREAD would). The free slots are held while it blocks; #reclaim ends
   * the wait (and pauses this loop) when it looks for its own idle entries to start.
   */
  async #blockingTake(reader: RedisStore, order: string[], count: number) {
    this.#reserved += count;
    let done!: () => void;
    this.#blocking = new Promise<void>((r) => (done = r));
    try {
      const entries = await this.#readGroup(reader, order, Math.floor(count / order.length));
      for (const entry of entries) this.#startTask(entry, false);
      if (entries.length > count) {
        this.#log(`error: took ${entries.length} task entries for ${count} free slot(s)`);
      }
      return entries;
    } finally {
      this.#reserved -= count;
      this.#blocking = undefined;
      done();
    }
  }

  /** New entries of `streams` for this worker (at most `count` of each), waiting up to 1 s. */
  async #readGroup(reader: RedisStore, streams: string[], count: number): Promise<StreamEntry[]> {
    return readStreams(
      await reader.command([
        "XREADGROUP",
        "GROUP",
        GROUP,
        this.owner,
        "COUNT",
        String(count),
        "BLOCK",
        "1000",
        "STREAMS",
        ...streams,
        ...streams.map(() => ">"),
      ]),
    );
  }

  /** Settles once the task reader's blocking read in progress (if any) has ended. */
  #blocking?: Promise<void>;
  /** While #reclaim looks at its own idle entries: the task reader waits (see #reclaim). */
  #pausedReads = false;

  /** Task slots free now: neither executing nor promised to a read in progress. */
  #freeSlots(): number {
    return this.#concurrency - this.#tasks.size - this.#reserved;
  }

  /** Slots a task read, or a look at its own idle entries, may fill (#taskLoop, #reclaim). */
  #reserved = 0;

  /** New runs, one at a time, while fewer than --max-runs are coordinated here. */
  async #runLoop(reader: RedisStore): Promise<void> {
    // each loop on its own: one stream may fail while another works
    const streak = new FailureStreak(this.#giveUpMs);
    const stream = this.#keys.runs;
    while (!this.#stopped) {
      if (this.#runs.size >= this.#maxRuns) {
        await this.#sleepUntilWoken(1000);
        continue;
      }
      let entries: StreamEntry[];
      try {
        entries = await this.#readGroup(reader, [stream], 1);
      } catch (e) {
        if (this.#stopped) return;
        const message = (e as Error).message;
        if (message.includes("NOGROUP")) {
          // Redis lost its data (restarted without persistence, flushed): join again
          this.#log(`the runs stream lost its consumer group: creating it again`);
          await ensureGroup(this.#store, stream).catch(() => {});
          continue;
        }
        if (this.#readFailed(streak, "runs", message)) return;
        await sleep(1000);
        continue;
      }
      streak.succeeded();
      for (const entry of entries) this.#startRun(entry, false);
    }
  }

  /**
   * A failed read of `what`, logged; true when Redis has failed for long enough that the
   * worker stops (the connection is gone for good: whatever supervises this process restarts
   * it; held work goes to the others).
   */
  #readFailed(streak: FailureStreak, what: string, message: string): boolean {
    this.#log(`error: reading ${what}: ${message}`);
    if (!streak.failed()) return false;
    this.failure = new GleitzeitError(
      "PERSISTENCE_UNAVAILABLE",
      `Redis at ${this.#store.url} has not answered for ${
        Math.round(this.#giveUpMs / 1000)
      }s: the worker stopped`,
      {
        hint: "check that Redis is up, then start the worker again (run it under a " +
          "supervisor that restarts it, e.g. systemd Restart=always)",
      },
    );
    void this.stop();
    return true;
  }

  /**
   * Touches what this worker holds and takes over what dead workers held (every third of the
   * lease); looks for cancellations more often (a timed-out attempt must stop soon).
   */
  async #leaseLoop(): Promise<void> {
    const every = Math.max(50, Math.floor(this.#leaseMs / 3));
    const tick = Math.min(CANCEL_CHECK_MS, every);
    // (the first at once: runs handed over by a worker stopped before this one started, and
    // what dead workers held, are taken over now, not a third of the lease later; the second
    // as soon as what was handed over just before this one started is idle for long enough
    // to be taken, TAKEOVER_IDLE_MS: the first look does not see it yet)
    let upkeep = 0;
    let looks = 0;
    while (!this.#stopped) {
      await this.#sleepUntilWoken(tick);
      if (this.#stopped) return;
      try {
        await this.#checkCancels();
        const changed = this.#checkHealth();
        const load = `${this.#tasks.size}/${this.#runs.size}`;
        // `system status` stays current; coordinators see at once what it takes
        if (changed || load !== this.#registered) await this.#register();
        if (changed) await this.#unblockTaskReader();
        const due = looks === 1 ? Math.min(every, TAKEOVER_IDLE_MS + 100) : every;
        if (Date.now() - upkeep < due) continue;
        upkeep = Date.now();
        looks++;
        const byStream = new Map<string, string[]>();
        for (const t of this.#tasks.values()) {
          byStream.set(t.stream, [...byStream.get(t.stream) ?? [], t.entry.id]);
        }
        for (const [stream, ids] of byStream) await this.#touch(stream, ids);
        await this.#touch(this.#keys.runs, [...this.#runs.values()].map((r) => r.entry.id));
        await this.#register();
        await this.#reclaim();
      } catch (e) {
        if (!this.#stopped) this.#log(`error: lease upkeep: ${(e as Error).message}`);
      }
    }
  }

  /**
   * Whether the protocols this worker can take tasks of changed since last looked at (the
   * registry probes its providers, unhealthy ones every few seconds until they recover);
   * says so in the log.
   */
  #checkHealth(): boolean {
    const now = this.#healthNow();
    const was = this.#health;
    // (the reasons too: `system status` shows the one of now)
    if (JSON.stringify(now) === JSON.stringify(was)) return false;
    this.#health = now;
    const gained = now.healthy.filter((p) => !was.healthy.includes(p));
    const lost = now.unhealthy.filter((p) => !was.unhealthy.includes(p));
    if (gained.length > 0) this.#log(`taking ${gained.join(", ")} tasks (a healthy provider)`);
    if (lost.length > 0) {
      this.#log(
        `not taking ${lost.join(", ")} tasks until a provider of it recovers (unhealthy): ` +
          "they go to other workers",
      );
    }
    return true;
  }

  /** The registry's protocols by health, and those that cannot be served (configuration). */
  #healthNow(): Health {
    return { ...this.#registry.protocolHealth(), unservable: this.#registry.unservable() };
  }

  /**
   * Asks each provider for its health (starting it: a worker would start it for its first
   * task anyway), all at once, each bounded by the registry's probe timeout; warns of each
   * that is unhealthy.
   */
  async #probeProviders(): Promise<void> {
    // every protocol's providers made first: one whose cannot be (`mcp/v1` with several MCP
    // servers, a plugin that fails) is then known not to be served here
    await this.#registry.startAll();
    const probed = await Promise.all(
      this.#registry.stats().map((stats) => this.#registry.health(stats.id).catch(() => [])),
    );
    const warned = new Set<string>();
    for (const entries of probed) {
      for (const { id, protocol, report } of entries) {
        if (report.healthy) continue;
        warned.add(protocol);
        this.#log(
          `warning: provider ${id} (${protocol}) is unhealthy: ${report.message ?? "no reason"}` +
            ` — this worker takes no ${protocol} tasks until it recovers; see ` +
            "`gleitzeit provider health` with this worker's settings",
        );
      }
    }
    // the rest it does not serve: protocols whose providers could not be made, and parts of
    // healthy ones (python/v1#bwrap where the default mode is basic and bubblewrap is missing)
    for (const [route, reason] of Object.entries(this.#registry.protocolHealth().reasons)) {
      if (warned.has(route.split("#")[0]!)) continue;
      this.#log(`warning: this worker takes no ${route} tasks: ${reason}`);
    }
  }

  /** Ends the task reader's blocking read, so that it reads the streams of now. */
  /**
   * The task reader's connection id again, after a failed read: a reconnected connection has
   * another, and CLIENT UNBLOCK of the old one would end nothing (or another client's read).
   */
  async #refreshReaderId(reader: RedisStore): Promise<void> {
    this.#readerIds[0] = await reader.command(["CLIENT", "ID"]).then(String).catch(() => "");
  }

  async #unblockTaskReader(): Promise<void> {
    const id = this.#readerIds[0];
    if (id) await this.#store.command(["CLIENT", "UNBLOCK", id]).catch(() => {});
  }

  async #touch(stream: string, ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.#store.command(["XCLAIM", stream, GROUP, this.owner, "0", ...ids, "JUSTID"]);
  }

  /** Attempts their coordinator gave up on, runs a user cancelled (`workflow cancel`). */
  async #checkCancels(): Promise<void> {
    const tasks = [...this.#tasks.values()].filter((t) => t.dispatchId);
    const runs = [...this.#runs.values()];
    if (tasks.length + runs.length === 0) return;
    const flags = await this.#store.command([
      "MGET",
      ...tasks.map((t) => this.#keys.cancel(t.dispatchId!)),
      ...runs.map((r) => this.#keys.cancelRun(r.runId!)),
    ]) as (string | null)[];
    [...tasks, ...runs].forEach((t, i) => {
      if (flags[i] && !t.controller?.signal.aborted) {
        if (t.runId) this.#log(`cancelling run ${t.runId} (asked by ${flags[i]})`);
        t.controller?.abort(cancelledByUser());
      }
    });
  }

  /**
   * Says this worker is alive: for `workflow cancel` and `system status` (kept for two
   * leases), and for the workers that would take over what it holds (its lease key).
   */
  async #register(): Promise<void> {
    this.#registered = `${this.#tasks.size}/${this.#runs.size}`;
    const ttl = String(Math.max(1, Math.ceil((this.#leaseMs * 2) / 1000)));
    const lease = String(this.#leaseMs);
    await this.#store.command(["SET", this.#keys.lease(this.owner), lease, "PX", lease]);
    await this.#store.command([
      "SET",
      this.#keys.worker(this.owner),
      JSON.stringify({
        since: this.#since,
        tasks: this.#tasks.size,
        runs: this.#runs.size,
        // what it takes at once (`system status` adds them up)
        concurrency: this.#concurrency,
        max_runs: this.#maxRuns,
        // what it takes tasks of now (coordinators fail attempts nobody can take)
        protocols: this.#health.healthy,
        unhealthy: this.#health.unhealthy,
        reasons: this.#health.reasons,
        // those of them no wait mends (a configuration error): their tasks fail at once
        unservable: this.#health.unservable,
      }),
      "EX",
      ttl,
    ]);
    await this.#store.command([
      "ZADD",
      this.#keys.workers,
      String(Date.now() + Number(ttl) * 1000),
      this.owner,
    ]);
  }

  async #reclaim(): Promise<void> {
    // Runs first: taking one over drops the attempts its dead coordinator had queued, before
    // they could be taken over below (their answers would go nowhere).
    // A run whose coordinator held its entry until its lease ran out is taken over at once:
    // the lease key says it is gone, sooner than the run's heartbeat would. One a look, past
    // --max-runs too: the runs here may be waiting for it (a task that awaits another run's,
    // see TaskSpec.awaits), and would wait for ever if only their end made room.
    for (const { entry, holder } of await this.#autoclaim(this.#keys.runs, 1)) {
      await this.#dropOrphanedAttempts(entry.fields.run ?? "", holder);
      this.#startRun(entry, true, holder);
    }
    // A dead worker's attempts are taken however busy this one is, from every protocol's
    // stream: they are only answered as lost (their coordinators send them again), not
    // executed here. Its own idle ones run again, as slots allow, from the streams it reads.
    // The free slots are held for this look (as a take holds its own: see #taskLoop): the
    // task reader must not fill them with new entries while the awaits below run, or both
    // would start attempts in the same slots.
    // (a blocking read holding the free slots ends first, and the task reader waits until
    // this look is done: else its own idle entries would never find a free slot)
    this.#pausedReads = true;
    if (this.#blocking) {
      await this.#unblockTaskReader();
      // (bounded: an unblock that missed the read, sent before it reached Redis, leaves it to
      // its second; its slots stay reserved meanwhile, so this look then starts none of its
      // own idle entries, but still answers dead workers' attempts and renews on time)
      await Promise.race([this.#blocking, sleep(250)]);
    }
    let free = Math.max(0, this.#freeSlots());
    this.#reserved += free;
    let held = free;
    try {
      let budget = free + LOST_BATCH;
      // (its own idle ones from any stream: one of a protocol it no longer takes is executed
      // or answered here all the same, not left pending for ever)
      const streams = new Set([
        ...await allTaskStreams(this.#store),
        ...this.#health.healthy.map((p) => this.#keys.tasks(p)),
      ]);
      for (const stream of streams) {
        if (budget <= 0) break;
        let claimed: Claimed[];
        try {
          claimed = await this.#autoclaim(stream, budget, Math.max(0, free));
        } catch (e) {
          // One stream failing (no group: made by a coordinator of an earlier version, or its
          // group lost) must not keep the others' dead entries from being taken over.
          if (!String((e as Error).message).includes("NOGROUP")) throw e;
          await ensureGroup(this.#store, stream);
          continue;
        }
        budget -= claimed.length;
        for (const { entry, holder, lastSeen } of claimed) {
          if (holder === undefined && held > 0) {
            // now executing (counted as such): no longer held
            free--;
            held--;
            this.#reserved--;
          }
          this.#startTask({ ...entry, stream }, true, holder, lastSeen);
        }
      }
    } finally {
      this.#reserved -= held;
      this.#pausedReads = false;
      this.#wake();
    }
  }

  /** Where the next look at each stream's pending entries starts (see #autoclaim). */
  readonly #cursor = new Map<string, string>();

  /**
   * Up to `count` entries of `stream`, now this worker's, with the worker that held each: held
   * by a worker whose own lease has run out (its lease key is gone) and idle for a moment
   * (TAKEOVER_IDLE_MS: not just handed to someone), or held by this one and idle for longer
   * than its lease (an entry it works on is touched well inside that: one it failed to start,
   * say, is tried again). A live worker with a longer lease touches its entries less often
   * than this one's lease: they stay its own. Each look goes on from where the last one
   * stopped, so a dead worker's entries are reached however many live ones come before.
   */
  async #autoclaim(
    stream: string,
    count: number,
    ownCount = count,
  ): Promise<Claimed[]> {
    const floor = Math.min(this.#leaseMs, TAKEOVER_IDLE_MS);
    const ids: string[] = [];
    const holderOf = new Map<string, string>();
    const seenAt = new Map<string, number>(); // when its gone holder last touched it
    const alive = new Map<string, boolean>([[this.owner, false]]);
    let start = this.#cursor.get(stream) ?? "-";
    let own = 0; // own idle entries taken (at most ownCount)
    for (let page = 0; page < AUTOCLAIM_PAGES && ids.length < count; page++) {
      const pending = await this.#store.command([
        "XPENDING",
        stream,
        GROUP,
        "IDLE",
        String(floor),
        start,
        "+",
        String(AUTOCLAIM_PAGE),
      ]) as unknown[][] | null;
      const rows = Array.isArray(pending) ? pending : [];
      // [id, consumer, idle ms, deliveries]
      const holders = [...new Set(rows.map((p) => String(p[1])))].filter((h) => !alive.has(h));
      if (holders.length > 0) {
        const leases = await this.#store.command([
          "MGET",
          ...holders.map((h) => this.#keys.lease(h)),
        ]) as (string | null)[];
        holders.forEach((h, i) => alive.set(h, leases[i] !== null));
      }
      for (const [id, holder, idle] of rows) {
        const mine = holder === this.owner;
        if (ids.length >= count || alive.get(String(holder))) continue;
        if (mine && (Number(idle) < this.#leaseMs || own >= ownCount)) continue;
        if (mine) own++;
        ids.push(String(id));
        if (!mine) {
          holderOf.set(String(id), String(holder));
          seenAt.set(String(id), Date.now() - Number(idle));
        }
      }
      if (rows.length < AUTOCLAIM_PAGE) {
        start = "-"; // the end: the next look starts over
        break;
      }
      start = `(${String(rows.at(-1)![0])}`;
    }
    this.#cursor.set(stream, start);
    if (ids.length === 0) return [];
    // XCLAIM checks the idle time again: of two workers looking at once, one gets each entry
    const claimed = parseEntries(
      await this.#store.command(["XCLAIM", stream, GROUP, this.owner, String(floor), ...ids]),
    );
    return claimed.map((entry) => ({
      entry,
      holder: holderOf.get(entry.id),
      lastSeen: seenAt.get(entry.id),
    }));
  }

  /**
   * When the run's coordinator is gone: removes the attempts it had put on the tasks stream (the
   * run's new coordinator sends its own). Those being executed somewhere run on, harmlessly.
   */
  async #dropOrphanedAttempts(runId: string, gone?: string): Promise<void> {
    const run = await this.#store.getRun(runId);
    if (!run || run.owner === this.owner) return;
    if (run.owner !== gone && ownerAlive(run, Date.now(), this.#leaseMs)) return;
    const prefix = `${runId}/`;
    const orphans = new Map<string, string[]>(); // by stream
    const dispatches: string[] = [];
    for (const stream of await allTaskStreams(this.#store)) {
      let start = "-";
      for (;;) {
        const page = parseEntries(
          await this.#store.command(["XRANGE", stream, start, "+", "COUNT", "500"]),
        );
        for (const e of page) {
          if (!e.fields.d?.startsWith(prefix)) continue;
          orphans.set(stream, [...orphans.get(stream) ?? [], e.id]);
          dispatches.push(e.fields.d);
        }
        if (page.length < 500) break;
        start = `(${page.at(-1)!.id}`;
      }
    }
    if (dispatches.length === 0) return;
    // one a worker already executes stops too: its answer would go to the dead coordinator
    // (the attempt is on record as interrupted, see Engine recover)
    await this.#store.command([
      "EVAL",
      CANCEL_ALL,
      String(dispatches.length),
      ...dispatches.map((d) => this.#keys.cancel(d)),
      "3600",
    ]);
    for (const [stream, ids] of orphans) await this.#ack(stream, ...ids);
    this.#log(
      `dropped ${dispatches.length} attempt(s) of run ${runId} queued by its dead coordinator`,
    );
  }

  /** `holder`: the worker that held the entry until its lease ran out (see #autoclaim). */
  #startTask(entry: StreamEntry, reclaimed: boolean, holder?: string, lastSeen?: number): void {
    const key = taskKey(entry);
    if (this.#tasks.has(key)) return;
    const stream = entry.stream ?? this.#keys.legacyTasks;
    const running: Running = { entry, stream, controller: new AbortController() };
    running.dispatchId = entry.fields.d;
    this.#tasks.set(key, running);
    running.done = this.#executeTask(running, reclaimed, holder, lastSeen)
      .catch((e) =>
        // Redis failing for its first look (still wanted?): its entry stays this worker's, and
        // is looked at again once idle for the lease (see #autoclaim)
        this.#log(`error: task entry ${entry.id}: ${(e as Error).message} (tried again later)`)
      )
      .finally(() => {
        this.#tasks.delete(key);
        this.#wake();
      });
  }

  async #executeTask(
    running: Running,
    reclaimed: boolean,
    holder?: string,
    lastSeen?: number,
  ): Promise<void> {
    const { entry } = running;
    const { d: dispatchId, reply, job: jobText } = entry.fields;
    let job: TaskJob;
    try {
      job = JSON.parse(jobText ?? "");
    } catch {
      this.#log(`dropped a malformed task entry ${entry.id}`);
      await this.#ack(running.stream, entry.id);
      return;
    }
    const which = `${job.ctx.taskId} attempt ${job.ctx.attempt}`;
    const what = `${job.ctx.runId}/${which}`;
    const key = taskKey(entry);
    if (this.#answered.has(key)) {
      // answered by the kept answer's own try meanwhile (see #resendSoon): done
      return;
    }
    const unreported = this.#unreported.get(key);
    if (unreported) {
      // executed (or found lost) here, its answer not sent (Redis failing): sent now, not
      // executed again under the same attempt number
      await this.#sendKept(key, { ...unreported, running, what }).catch((e) =>
        this.#log(`error: reporting ${what}: ${(e as Error).message}`)
      );
      return;
    }
    if (this.#stopped && holder === undefined && reply) {
      // read as this worker stops: not begun here; its coordinator sends it again at once
      const stopped = workerLostError(this.owner, which, true);
      await this.#reportOrKeep(running, false, stopped.toData(), what);
      return;
    }
    // Still wanted? The coordinator may have given up on it while it waited (cancel, timeout),
    // the run may have ended, or have another coordinator now (this one died). If so, the
    // coordinator is told that it begins (it records the attempt, and its timeout counts,
    // from then): one round trip.
    const sentBy = reply?.slice(this.#keys.replies("").length);
    // a coordinator on this host: is it still there? (asked first: no notice that it began
    // goes to one that is gone)
    const senderPid = localOwnerPid(sentBy);
    const senderGone = senderPid !== undefined && !pidAlive(senderPid);
    const begins = reply !== undefined && holder === undefined && !senderGone;
    const [cancelled, [owner, state]] = await this.#store.command([
      "EVAL",
      STILL_WANTED,
      "4",
      this.#keys.cancel(dispatchId ?? ""),
      `${this.#store.prefix}run:${job.ctx.runId}`,
      reply ?? this.#keys.replies(this.owner),
      this.#keys.cancelRun(job.ctx.runId),
      begins ? dispatchId ?? "" : "",
      this.owner,
      sentBy ?? "",
      String(REPLY_TTL_SECONDS),
    ]) as [number, [string | null, string | null]];
    const ended = state === "completed" || state === "failed" || state === "cancelled";
    const movedOn = owner !== null && sentBy !== undefined && owner !== sentBy;
    if (cancelled > 0 || ended || movedOn || senderGone) {
      await this.#ack(running.stream, entry.id);
      const why = ended
        ? "its run ended"
        : movedOn
        ? "its run has another coordinator now"
        : "its coordinator is gone";
      if (!cancelled) this.#log(`dropped ${what}: ${why}`);
      return;
    }
    if (holder !== undefined && reply) {
      // Its worker died (or stopped) with it: the coordinator records that attempt as
      // interrupted and sends another, so what ran is on record attempt by attempt.
      const lost = workerLostError(holder, which);
      if (lastSeen !== undefined) lost.details.last_seen = lastSeen;
      await this.#reportOrKeep(running, false, lost.toData(), what);
      this.#log(`${what} lost with worker ${holder}: its coordinator starts another attempt`);
      return;
    }
    const remark = this.#remark?.({ protocol: job.protocol, sandbox: job.ctx.sandbox });
    this.#log(
      `${reclaimed ? "took over" : "executing"} ${what} (${job.method})${
        remark ? `: ${remark}` : ""
      }`,
    );
    const signal = running.controller!.signal;
    let ok = true;
    let body: unknown;
    // A wait here for a provider's free place (an Ollama host's slots, say) is told to the
    // coordinator, whose timer for the attempt's timeout stops for it (see
    // CallContext.onWaiting), in order, on the reply stream.
    // (one after the other: two in flight at once, while Redis reconnects, could land in
    // the other order, and the coordinator's timer stay stopped)
    let told = Promise.resolve();
    const onWaiting = reply && dispatchId && job.ctx.timeoutMs !== undefined
      ? (waiting: boolean) => {
        told = told.then(() =>
          this.#store.command([
            "EVAL",
            WAITING,
            "1",
            reply,
            dispatchId,
            waiting ? "1" : "0",
            this.owner,
            String(REPLY_TTL_SECONDS),
          ])
        ).then(
          () => {},
          (e) => this.#log(`error: telling ${what} waits: ${(e as Error).message}`),
        );
      }
      : undefined;
    try {
      body = await this.#registry.call(job.protocol, job.method, job.params, {
        signal,
        runId: job.ctx.runId,
        taskId: job.ctx.taskId,
        attempt: job.ctx.attempt,
        ...(onWaiting ? { onWaiting } : {}),
        ...(job.ctx.timeoutMs !== undefined ? { timeoutMs: job.ctx.timeoutMs } : {}),
        ...(job.ctx.baseDir !== undefined ? { baseDir: job.ctx.baseDir } : {}),
        ...(job.ctx.sandbox !== undefined ? { sandbox: job.ctx.sandbox } : {}),
      });
    } catch (e) {
      ok = false;
      const error = toGleitzeitError(e, "TASK_EXECUTION_FAILED").toData();
      // which worker: one with a provider the others have fine (its Ollama down, say) is found
      error.details = { ...error.details, worker: this.owner };
      if (OF_THIS_WORKER.has(error.code)) error.message += ` (on worker ${this.owner})`;
      body = error;
    }
    if (this.#stopped && !ok && signal.reason === this.#stopReason) {
      // stopped by this worker's stop (not ended otherwise meanwhile): the coordinator starts
      // the attempt again elsewhere, at once (should this answer not get out, another worker
      // takes the entry over)
      ok = false;
      body = workerLostError(this.owner, which, true).toData();
    }
    if (!await this.#reportOrKeep(running, ok, body, what)) return;
    const code = (body as { code?: string } | undefined)?.code;
    const how = ok ? "completed" : code === "TASK_CANCELLED" ? "cancelled" : "failed";
    this.#log(`${how} ${what}${ok || how === "cancelled" ? "" : ` (${code})`}`);
  }

  /**
   * Answers of attempts whose entries stay this worker's because sending the answer failed:
   * the next look at its own idle entries sends them (see #autoclaim), and a lost one is
   * never executed again under the same number.
   */
  readonly #unreported = new Map<string, KeptAnswer>();

  /**
   * Kept answers sent (or found answered) since, by entry: the look at this worker's own idle
   * entries may have claimed one just before, and must not take it for one never executed.
   */
  readonly #answered = new Set<string>();

  /**
   * Sends a kept answer, only while its entry is still pending with this worker (REPORT_OWN,
   * one script: the two ways it is tried cannot both send it), and forgets it.
   */
  async #sendKept(key: string, kept: KeptAnswer): Promise<void> {
    const { entry, stream } = kept.running!;
    const { d: dispatchId, reply } = entry.fields;
    const sent = Number(
      await this.#store.command([
        "EVAL",
        REPORT_OWN,
        "2",
        reply ?? "",
        stream,
        dispatchId ?? "",
        kept.ok ? "1" : "0",
        JSON.stringify(kept.body ?? null),
        this.owner,
        String(REPLY_TTL_SECONDS),
        GROUP,
        entry.id,
      ]),
    );
    this.#unreported.delete(key);
    this.#answered.add(key);
    if (this.#answered.size > 10_000) this.#answered.delete(this.#answered.values().next().value!);
    this.#log(
      sent === -2
        ? `dropped the answer of ${kept.what}: another worker has its entry now`
        : sent === -1
        ? `the answer of ${kept.what} went out already (its entry is answered)`
        : `answered ${kept.what} (the answer could not be sent before)`,
    );
  }

  /** The next try at sending #unreported answers (see #resendSoon), and its delay. */
  #resendTimer: ReturnType<typeof setTimeout> | undefined;
  #resendDelayMs = RESEND_FIRST_MS;

  /**
   * Tries the kept answers again soon, backing off while Redis keeps failing: a short outage
   * would otherwise hold them until the next look at this worker's own idle entries, a lease
   * later. Each goes only while its entry is still this worker's (REPORT_OWN): one taken over
   * meanwhile is the other worker's to answer.
   */
  #resendSoon(): void {
    if (this.#resendTimer !== undefined || this.#stopped) return;
    this.#resendTimer = setTimeout(async () => {
      let failed = false;
      for (const [key, kept] of [...this.#unreported]) {
        if (!kept.running || this.#stopped) continue;
        try {
          await this.#sendKept(key, kept);
        } catch {
          // (last in line now: one that keeps failing does not hold up the others)
          this.#unreported.delete(key);
          this.#unreported.set(key, kept);
          failed = true;
          break;
        }
      }
      this.#resendTimer = undefined;
      this.#resendDelayMs = failed
        ? Math.min(this.#resendDelayMs * 2, RESEND_MAX_MS)
        : RESEND_FIRST_MS;
      if ([...this.#unreported.values()].some((k) => k.running)) this.#resendSoon();
    }, this.#resendDelayMs);
  }

  /** Why a stop aborts the attempts executing here. */
  readonly #stopReason = shutdownError();

  /** Redis client ids of the reading connections (see #stop). */
  #readerIds: string[] = [];

  /** #report, or the answer kept for later (see #unreported); true when it went out. */
  async #reportOrKeep(running: Running, ok: boolean, body: unknown, what: string) {
    try {
      await this.#report(running, ok, body);
      return true;
    } catch (e) {
      this.#unreported.set(taskKey(running.entry), { ok, body, running, what });
      this.#resendSoon();
      // (one taken by another worker meanwhile is never looked at here again: bounded)
      if (this.#unreported.size > 10_000) {
        this.#unreported.delete(this.#unreported.keys().next().value!);
      }
      this.#log(`error: reporting ${what}: ${(e as Error).message} (sent again later)`);
      return false;
    }
  }

  /** An attempt's answer to its coordinator, its entry acknowledged and removed: one trip. */
  async #report(running: Running, ok: boolean, body: unknown): Promise<void> {
    const { entry } = running;
    const { d: dispatchId, reply } = entry.fields;
    if (!reply) return await this.#ack(running.stream, entry.id);
    await this.#store.command([
      "EVAL",
      REPORT,
      "2",
      reply,
      running.stream,
      dispatchId ?? "",
      ok ? "1" : "0",
      JSON.stringify(body ?? null),
      this.owner,
      String(REPLY_TTL_SECONDS),
      GROUP,
      entry.id,
    ]);
  }

  #startRun(entry: StreamEntry, reclaimed: boolean, holder?: string): void {
    if (this.#runs.has(entry.id)) return;
    const running: Running = {
      entry,
      stream: this.#keys.runs,
      controller: new AbortController(),
      runId: entry.fields.run ?? "",
    };
    this.#runs.set(entry.id, running);
    this.#coordinate(running, reclaimed, holder).finally(() => {
      this.#runs.delete(entry.id);
      this.#wake();
    });
  }

  async #coordinate(running: Running, reclaimed: boolean, holder?: string): Promise<void> {
    const { entry } = running;
    const runId = running.runId!;
    try {
      const run = await this.#store.getRun(runId);
      if (!run || isTerminalRun(run.state)) {
        // gone, or finished by whoever had it: nothing left to do
        await this.#ack(this.#keys.runs, entry.id);
        return;
      }
      // cancelled while nobody coordinated it (its coordinator died): stopped before anything
      // starts again
      const cancelledBy = await this.#store.command(["GET", this.#keys.cancelRun(runId)]);
      if (cancelledBy !== null) running.controller!.abort(cancelledByUser());
      this.#log(`${reclaimed ? "taking over" : "coordinating"} run ${runId}`);
      const outcome = await this.#engine!.execute(runId, {
        signal: running.controller!.signal,
        continueRun: true,
        // the worker that held its entry until its lease ran out (see #autoclaim)
        ...(holder !== undefined ? { ownerGone: holder } : {}),
        // answers its previous coordinator got and never recorded are not run again
        recover: (previous) => this.#recoverAnswers(runId, previous),
      });
      if (outcome.lost) {
        // another coordinator has it now (and its entry of the queue of runs): leave both.
        // (Stopping, this worker gave it up itself: see #stop.)
        this.#log(
          this.#stopped
            ? `run ${runId}: handed over (this worker is stopping): the next worker that ` +
              "looks continues it"
            : `run ${runId}: ${outcome.error?.message ?? "taken over"}`,
        );
        return;
      }
      await this.#store.command(["DEL", this.#keys.cancelRun(runId)]).catch(() => {});
      if (this.#stopped) return;
      await this.#ack(this.#keys.runs, entry.id);
      this.#log(`run ${runId} ${outcome.state}`);
    } catch (e) {
      if (this.#stopped) return;
      const err = toGleitzeitError(e, "INTERNAL_ERROR");
      if (err.code === "USAGE_ERROR" && /already completed/.test(err.message)) {
        await this.#ack(this.#keys.runs, entry.id).catch(() => {});
        return;
      }
      // Someone else still executes it (its heartbeat is fresh): the entry stays pending and
      // is looked at again after the lease.
      this.#log(`run ${runId}: ${err.message}`);
    }
  }

  /**
   * The successful answers to attempts of `runId` left unread on a previous coordinator's
   * reply stream (it died, or was stopped and lost the run): results other workers finished.
   */
  async #recoverAnswers(runId: string, previous: string): Promise<RecoveredAnswer[]> {
    const out: RecoveredAnswer[] = [];
    const raw = await this.#store.command(["XRANGE", this.#keys.replies(previous), "-", "+"]);
    const began = new Map<string, { at: number; worker?: string }>();
    const answered = new Set<string>();
    // a stream id starts with the time it was added
    const timeOf = (e: StreamEntry) => Number(e.id.split("-")[0]);
    for (const e of parseEntries(raw)) {
      // d: `${runId}/${taskId}/${attempt}/${nonce}.${seq}` (see RemoteDispatcher)
      const [run, taskId, attempt] = (e.fields.d ?? "").split("/");
      if (run !== runId || !taskId) continue;
      if (e.fields.began !== undefined) {
        began.set(e.fields.d!, { at: timeOf(e), worker: e.fields.worker });
      }
      if (e.fields.ok !== undefined) answered.add(e.fields.d!);
      if (e.fields.ok !== "1") continue;
      try {
        out.push({
          taskId,
          attempt: Number(attempt),
          result: JSON.parse(e.fields.body ?? "null"),
          at: timeOf(e),
          ...(began.has(e.fields.d!) ? { began: began.get(e.fields.d!)!.at } : {}),
          ...(e.fields.worker ? { executor: e.fields.worker } : {}),
        });
      } catch {
        // not an answer of ours
      }
    }
    // begun, with no answer (yet): on record as begun, so that the takeover records how it
    // ended (interrupted), and its next attempt gets the next number
    for (const [d, { at, worker }] of began) {
      if (answered.has(d)) continue;
      const [, taskId, attempt] = d.split("/");
      out.push({
        taskId: taskId!,
        attempt: Number(attempt),
        began: at,
        answered: false,
        ...(worker ? { executor: worker } : {}),
      });
    }
    if (out.length > 0) {
      this.#log(`run ${runId}: ${out.length} answer(s) its previous coordinator never recorded`);
    }
    return out;
  }

  /** Acknowledges entries and removes them from `stream`, in one round trip. */
  async #ack(stream: string, ...ids: string[]): Promise<void> {
    await this.#store.command(["EVAL", ACK, "1", stream, GROUP, ...ids]);
  }

  #sleepUntilWoken(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#waiters.add(done);
    });
  }

  /** Wakes the loops that wait for a free slot (or for the stop). */
  #wake(): void {
    for (const w of [...this.#waiters]) w();
  }
}

/**
 * `[cancel flags KEYS[1] (the attempt's) and KEYS[4] (its run's) set, [owner, state] of run
 * KEYS[2]]` for an attempt about to start;
 * when it is still wanted and ARGV[1] is its dispatch id, a notice that worker ARGV[2] begins
 * it goes to its coordinator ARGV[3]'s reply stream KEYS[3] (kept ARGV[4] s).
 */
const STILL_WANTED = "local c = redis.call('EXISTS', KEYS[1], KEYS[4])\n" +
  "local r = redis.call('HMGET', KEYS[2], 'owner', 'state')\n" +
  "if ARGV[1] ~= '' and c == 0 and r[2] ~= 'completed' and r[2] ~= 'failed' and " +
  "r[2] ~= 'cancelled' and (ARGV[3] == '' or not r[1] or r[1] == ARGV[3]) then\n" +
  "  redis.call('XADD', KEYS[3], '*', 'd', ARGV[1], 'began', '1', 'worker', ARGV[2])\n" +
  "  redis.call('EXPIRE', KEYS[3], ARGV[4])\n" +
  "end\n" +
  "return {c, r}";

/**
 * A notice on coordinator reply stream KEYS[1] that attempt ARGV[1] waits (ARGV[2] "1") or
 * waits no more ("0") for a provider's free place on worker ARGV[3]; the stream kept ARGV[4]
 * seconds.
 */
const WAITING =
  "redis.call('XADD', KEYS[1], '*', 'd', ARGV[1], 'waiting', ARGV[2], 'worker', ARGV[3])\n" +
  "redis.call('EXPIRE', KEYS[1], ARGV[4])";

/**
 * Takes up to ARGV[3] new entries for consumer ARGV[2] of group ARGV[1] from the streams KEYS,
 * in order, in all (not per stream, as one XREADGROUP of several streams would): `{1, reply}`
 * with an XREADGROUP-shaped reply. With none, `{0, ids}`: each stream's last id its group has
 * handed out, for an XREAD that waits for anything past them. A stream without the group (not
 * made yet, or Redis lost it) gets it.
 */
const TAKE = "local left = tonumber(ARGV[3])\n" +
  "local out = {}\n" +
  "for _, s in ipairs(KEYS) do\n" +
  "  if left <= 0 then break end\n" +
  "  local args = {'XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', left, 'STREAMS', s, '>'}\n" +
  "  local r = redis.pcall(unpack(args))\n" +
  "  if type(r) == 'table' and r.err then\n" +
  "    redis.pcall('XGROUP', 'CREATE', s, ARGV[1], '0', 'MKSTREAM')\n" +
  "    r = redis.call(unpack(args))\n" +
  "  end\n" +
  "  if r and r[1] then\n" +
  "    left = left - #r[1][2]\n" +
  "    out[#out + 1] = r[1]\n" +
  "  end\n" +
  "end\n" +
  "if #out > 0 then return {1, out} end\n" +
  "local ids = {}\n" +
  "for i, s in ipairs(KEYS) do\n" +
  "  ids[i] = '0-0'\n" +
  "  for _, g in ipairs(redis.call('XINFO', 'GROUPS', s)) do\n" +
  "    local name, last\n" +
  "    for j = 1, #g, 2 do\n" +
  "      if g[j] == 'name' then name = g[j + 1] elseif g[j] == 'last-delivered-id' then " +
  "last = g[j + 1] end\n" +
  "    end\n" +
  "    if name == ARGV[1] then ids[i] = last end\n" +
  "  end\n" +
  "end\n" +
  "return {0, ids}";

/** The cancel flags KEYS, set for ARGV[1] s. */
const CANCEL_ALL = "for _, k in ipairs(KEYS) do redis.call('SET', k, '1', 'EX', ARGV[1]) end";

/** XACK + XDEL of ARGV[2..] in KEYS[1] (group ARGV[1]). */
const ACK = "local ids = {unpack(ARGV, 2)}\n" +
  "redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))\n" +
  "return redis.call('XDEL', KEYS[1], unpack(ids))";

/**
 * An attempt's answer on its coordinator's reply stream KEYS[1] (kept ARGV[5] s), then its
 * entry ARGV[7] of KEYS[2] acknowledged (group ARGV[6]) and removed.
 */
const REPORT = "redis.call('XADD', KEYS[1], '*', 'd', ARGV[1], 'ok', ARGV[2], 'body', ARGV[3], " +
  "'worker', ARGV[4])\n" +
  "redis.call('EXPIRE', KEYS[1], ARGV[5])\n" +
  "redis.call('XACK', KEYS[2], ARGV[6], ARGV[7])\n" +
  "return redis.call('XDEL', KEYS[2], ARGV[7])";

/**
 * REPORT of an answer kept while Redis failed, only while its entry is still pending with this
 * worker (ARGV[4]): -1 when it is pending no more (answered: the answer went out after all, its
 * reply lost), -2 when another worker took it over. An entry with no reply stream (KEYS[1]
 * empty) is acknowledged and removed alone.
 */
export const REPORT_OWN =
  "local p = redis.call('XPENDING', KEYS[2], ARGV[6], ARGV[7], ARGV[7], 1)\n" +
  "if #p == 0 then return -1 end\n" +
  "if p[1][2] ~= ARGV[4] then return -2 end\n" +
  "if KEYS[1] ~= '' then\n" +
  "  redis.call('XADD', KEYS[1], '*', 'd', ARGV[1], 'ok', ARGV[2], 'body', ARGV[3], " +
  "'worker', ARGV[4])\n" +
  "  redis.call('EXPIRE', KEYS[1], ARGV[5])\n" +
  "end\n" +
  "redis.call('XACK', KEYS[2], ARGV[6], ARGV[7])\n" +
  "return redis.call('XDEL', KEYS[2], ARGV[7])";

/** The first delay of a kept answer's next try (see Worker#resendSoon), and the longest. */
const RESEND_FIRST_MS = 250;
const RESEND_MAX_MS = 5_000;

/** An attempt's answer that could not be sent (see Worker#unreported), and its entry. */
interface KeptAnswer {
  ok: boolean;
  body: unknown;
  running?: Running;
  what?: string;
}

/** Failures that say more of the worker that had them than of the task. */
const OF_THIS_WORKER = new Set<string>([
  "PROVIDER_NOT_FOUND",
  "PROVIDER_UNAVAILABLE",
  "PROVIDER_UNHEALTHY",
  "PROTOCOL_NOT_FOUND",
  "SANDBOX_UNAVAILABLE",
  "MODEL_NOT_FOUND",
]);

/** Where a task entry is known by: its stream and id (ids of two streams may be the same). */
function taskKey(entry: StreamEntry): string {
  return `${entry.stream ?? ""} ${entry.id}`;
}

/** How often running attempts look for a cancellation (ms). */
const CANCEL_CHECK_MS = 250;

/** What `workflow cancel` aborts a run or attempt with. */
function cancelledByUser(): GleitzeitError {
  return new GleitzeitError("TASK_CANCELLED", "cancelled by user");
}

function shutdownError(): GleitzeitError {
  return new GleitzeitError("TASK_CANCELLED", "the worker is shutting down", {
    retryable: true,
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * How long an entry of a worker whose lease ran out must have been idle before another takes
 * it (at most its own lease): the gone worker's lease key is what says it is gone.
 */
const TAKEOVER_IDLE_MS = 1000;

/** A dead worker's task entries taken (and answered as lost) per look, at most. */
const LOST_BATCH = 100;

/** Pending entries looked at per XPENDING page, and pages per look (see #autoclaim). */
const AUTOCLAIM_PAGE = 100;
const AUTOCLAIM_PAGES = 10;
