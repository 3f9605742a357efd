/**
 * Store on Redis (node-redis 5), for several processes or machines sharing state.
 *
 * Everything lives under one key prefix (default `gleitzeit:`); runs and tasks are hashes,
 * listings read sorted sets (runs by creation, tasks in workflow order, runs and tasks by
 * state; tasks across runs by walking the runs), so normal operation never uses KEYS or SCAN. Writes are one round trip each, one
 * atomic Lua script (a script is a transaction, like MULTI/EXEC, that can also check before it
 * writes): `createRun`, `updateRun`, `claimRun`, `finishTasks` (a whole batch), and
 * `startAttempt` (claims made in the same tick go out together). See redis_scripts.ts for the
 * key layout.
 *
 * The `redis` package is imported inside {@link RedisStore.connect}, so loading this module
 * costs nothing until a Redis store is opened.
 *
 * @module
 */

import { type ErrorData, GleitzeitError } from "../core/errors.ts";
import { RUN_STATES, type RunState, TASK_STATES, type TaskState } from "../core/states.ts";
import {
  CLAIM_RUN,
  CREATE_RUN,
  FINISH_FIELDS,
  FINISH_TASKS,
  START_ATTEMPTS,
  START_FIELDS,
  UPDATE_RUN,
} from "./redis_scripts.ts";
import { attemptStateFor, ownerLost, runExists, runNotFound, taskNotFound } from "./store_rules.ts";
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

type Client = ReturnType<typeof import("redis").createClient>;

/** Options for {@link RedisStore.connect}. */
export interface RedisStoreOptions {
  /** Default `redis://127.0.0.1:6379`. */
  url?: string;
  /** Prefix of every key. Default `gleitzeit:`. */
  prefix?: string;
  /** How long to wait for the connection, in ms. Default 3000. */
  connectTimeoutMs?: number;
  /** Reconnect attempts after a connection that worked was lost. Default 5. */
  reconnectAttempts?: number;
  /**
   * A command without a reply after this long fails with PERSISTENCE_UNAVAILABLE. Default 3000.
   * (A server that dies while the client reconnects can leave a socket that never answers.)
   */
  commandTimeoutMs?: number;
}

const SCRIPTS = {
  create: CREATE_RUN,
  start: START_ATTEMPTS,
  finish: FINISH_TASKS,
  update: UPDATE_RUN,
  claim: CLAIM_RUN,
} as const;
const PAGE = 200;

/** A command timer this late says the process itself was held up (see #guarded). */
const STALLED_MS = 1000;
/** Separates the parts of a task state index member (sorts below every other byte) and of a
 * `taskid` value. */
const SEP = "\u0000";

/** Store on a Redis server. */
export class RedisStore implements Store {
  readonly backend = "redis";
  readonly url: string;
  readonly prefix: string;
  #client: Client;
  #shas = new Map<keyof typeof SCRIPTS, string>();
  #commits = 0;
  #closed = false;
  #starts: {
    runId: string;
    taskId: string;
    attempt: number;
    at: number;
    owner?: string;
    ifOwner?: string;
    resolve: () => void;
    reject: (e: unknown) => void;
  }[] = [];
  #finishes: {
    finishes: TaskFinish[];
    parts: string[];
    resolve: () => void;
    reject: (e: unknown) => void;
  }[] = [];

  readonly #commandTimeoutMs: number;
  #reconnectAttempts = 5;
  /** The client was dropped (no reply in time); {@link #replacing} opens the next one. */
  #broken = false;
  /** Opens and connects a new client with this store's settings. */
  #open?: () => Promise<Client>;
  #replacing?: Promise<void>;
  /** The client {@link #open} is connecting, dropped by close(). */
  #opening?: Client;

  private constructor(client: Client, url: string, prefix: string, commandTimeoutMs: number) {
    this.#commandTimeoutMs = commandTimeoutMs;
    this.#client = client;
    this.url = url;
    this.prefix = prefix;
  }

  /**
   * Connects and loads the scripts. Fails fast with PERSISTENCE_UNAVAILABLE when Redis cannot
   * be reached (no reconnect loop before the first connection).
   */
  static async connect(options: RedisStoreOptions = {}): Promise<RedisStore> {
    const url = options.url ?? "redis://127.0.0.1:6379";
    const prefix = options.prefix ?? "gleitzeit:";
    const retries = options.reconnectAttempts ?? 5;
    const budget = options.connectTimeoutMs ?? 3000;
    const { createClient } = await import("redis");
    if (!/^rediss?:\/\//.test(url)) {
      throw new GleitzeitError("CONFIG_ERROR", `'${redactUrl(url)}' is not a Redis URL`, {
        hint: "use redis://HOST:PORT[/DB] (or rediss:// for TLS), e.g. redis://127.0.0.1:6379",
      });
    }
    // The store, once made: the clients' event handlers report to it.
    const owner: { store?: RedisStore } = {};
    // Before a client's first connection: fail at once. After a loss: a few quick tries (as
    // many as `reconnectAttempts`), then give up so commands fail with a clear error instead
    // of hanging.
    const open = (): { client: Client; connected: () => void } => {
      let ready = false;
      const client = createClient({
        url,
        disableOfflineQueue: false,
        socket: {
          connectTimeout: budget,
          reconnectStrategy: (attempt: number, cause: Error) =>
            !ready || attempt >= retries ? cause : reconnectDelayMs(attempt),
        },
      });
      // node-redis emits "error" on every socket problem; without a listener it would throw.
      // Once it stops reconnecting, commands already sent may never settle: fail them ourselves.
      client.on("error", (e: Error) => {
        if (owner.store && ready && !client.isOpen) owner.store.#connectionLost(client, e);
      });
      client.on("end", () => {
        if (owner.store) owner.store.#connectionLost(client, new Error("connection closed"));
      });
      return { client, connected: () => (ready = true) };
    };
    let first: ReturnType<typeof open>;
    try {
      first = open();
    } catch (e) {
      throw new GleitzeitError(
        "CONFIG_ERROR",
        `invalid Redis URL '${redactUrl(url)}': ${messageOf(e)}`,
        {
          hint: "use redis://HOST:PORT[/DB], e.g. redis://127.0.0.1:6379",
        },
      );
    }
    const store = new RedisStore(first.client, url, prefix, options.commandTimeoutMs ?? 3000);
    owner.store = store;
    store.#reconnectAttempts = retries;
    store.#open = async () => {
      const next = open();
      store.#opening = next.client;
      try {
        await withDeadline(next.client.connect(), budget);
      } catch (e) {
        // a handshake that timed out would otherwise finish later and stay open (a leaked
        // connection, and a process that cannot exit)
        shutDown(next.client);
        throw e;
      } finally {
        store.#opening = undefined;
      }
      next.connected();
      return next.client;
    };
    // A peer that accepts the connection but never speaks Redis (or a host that drops packets)
    // would hold connect() past the socket's connectTimeout: bound the whole handshake.
    try {
      await withDeadline(
        (async () => {
          await first.client.connect();
          first.connected();
          await store.#loadScripts();
        })(),
        budget,
      );
    } catch (e) {
      shutDown(first.client);
      throw unavailable(url, e);
    }
    return store;
  }

  /** Write round trips (MULTI/EXEC or script) made through this store. */
  get commits(): number {
    return this.#commits;
  }

  async #loadScripts(): Promise<void> {
    const names = Object.keys(SCRIPTS) as (keyof typeof SCRIPTS)[];
    const shas = await Promise.all(names.map((n) => this.#client.scriptLoad(SCRIPTS[n])));
    names.forEach((n, i) => this.#shas.set(n, shas[i]!));
  }

  /**
   * Runs a script by its SHA, loading it again if Redis lost it (restart, SCRIPT FLUSH). Sent
   * with sendCommand: the typed evalSha spreads its arguments into a call, which overflows the
   * stack for a run of thousands of tasks.
   */
  async #script(
    name: keyof typeof SCRIPTS,
    keys: string[],
    args: string[],
  ): Promise<unknown> {
    const send = () =>
      this.#client.sendCommand([
        "EVALSHA",
        this.#shas.get(name)!,
        String(keys.length),
        ...keys,
        ...args,
      ]);
    try {
      return await send();
    } catch (e) {
      if (!String((e as Error)?.message).startsWith("NOSCRIPT")) throw e;
      await this.#loadScripts();
      return await send();
    }
  }

  /** Rejecters of the commands in flight, failed together when the connection is gone for good. */
  #inFlight = new Set<(e: unknown) => void>();

  #connectionLost(client: Client, cause: Error): void {
    if (client !== this.#client) return; // a client already replaced
    const err = unavailable(this.url, cause);
    for (const reject of this.#inFlight) reject(err);
    this.#inFlight.clear();
  }

  /** `fn()`, rejected early should the connection be lost for good or no reply come in time. */
  #guarded<T>(fn: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#inFlight.add(reject);
      let timer: ReturnType<typeof setTimeout>;
      const arm = () => {
        const due = performance.now() + this.#commandTimeoutMs;
        timer = setTimeout(() => {
          // Due long ago: this process was stopped (SIGSTOP, a paused VM) or its event loop
          // held up, not Redis: the reply may be waiting unread. It gets the time again.
          if (performance.now() - due > STALLED_MS) return arm();
          // the socket is dead though the client thinks it ready (or the server stalled):
          // drop it and open a new connection, so that what follows waits for that one
          const dead = this.#client;
          this.#connectionLost(dead, new Error(`no reply within ${this.#commandTimeoutMs} ms`));
          this.#replace(dead);
        }, this.#commandTimeoutMs);
      };
      arm();
      fn().then(resolve, reject).finally(() => {
        clearTimeout(timer);
        this.#inFlight.delete(reject);
      });
    });
  }

  /**
   * Drops `dead` (when it is still the client) and opens new connections in the background,
   * with the same budget of attempts as the client's own reconnecting.
   */
  #replace(dead: Client): void {
    if (dead !== this.#client || this.#closed) return;
    this.#broken = true;
    shutDown(dead);
    this.#replacing ??= (async () => {
      for (let attempt = 0; attempt < this.#reconnectAttempts && !this.#closed; attempt++) {
        try {
          const client = await this.#open!();
          if (this.#closed) return shutDown(client);
          this.#client = client;
          this.#broken = false;
          return;
        } catch {
          await new Promise((r) => setTimeout(r, reconnectDelayMs(attempt)));
        }
      }
    })().finally(() => (this.#replacing = undefined));
  }

  /**
   * Waits (up to the command timeout) for a connection that is being re-established: the
   * client reconnecting by itself, or a replacement being opened. False when none comes.
   */
  async #awaitConnection(): Promise<boolean> {
    const until = Date.now() + this.#commandTimeoutMs;
    const coming = () =>
      !this.#closed && (this.#broken ? this.#replacing !== undefined : this.#client.isOpen);
    while (coming() && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 20));
      if (!this.#broken && this.#client.isReady) return true;
    }
    return !this.#closed && !this.#broken && this.#client.isReady;
  }

  async #do<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.#closed) throw new GleitzeitError("PERSISTENCE_ERROR", "the Redis store is closed");
    // While the connection is down a command would wait in the client's offline queue, possibly
    // forever once reconnecting gives up: wait a little for the connection to come back (a
    // Redis restart, a stalled socket replaced), then fail; the caller decides (the run stays
    // resumable).
    if ((this.#broken || !this.#client.isReady) && !await this.#awaitConnection()) {
      throw unavailable(this.url, new Error("connection lost"));
    }
    try {
      return await this.#guarded(fn);
    } catch (e) {
      if (e instanceof GleitzeitError) throw e;
      if (isConnectionError(e) || !this.#client.isReady) throw unavailable(this.url, e);
      throw new GleitzeitError("PERSISTENCE_ERROR", `${what}: ${messageOf(e)}`, { cause: e });
    }
  }

  #k(...parts: string[]): string {
    return this.prefix + parts.join(":");
  }

  /**
   * One script call: checks the id is free and writes the run, its tasks and index entries. A
   * task goes out as its ids, its unchanging fields as one JSON string and its state fields; the
   * script derives keys and index members itself (see CREATE_RUN).
   */
  createRun(run: RunRecord, tasks: TaskRecord[]): Promise<void> {
    const fields = Object.entries(runFields(run)).flat();
    const args = [
      this.prefix,
      run.id,
      String(run.createdAt),
      run.workflowName,
      run.state,
      String(fields.length),
      ...fields,
    ];
    for (const t of tasks) {
      const extra = Object.entries(taskStateFields(t)).flat();
      args.push(
        t.taskId,
        t.id,
        JSON.stringify(
          {
            id: t.id,
            name: t.name,
            protocol: t.protocol,
            method: t.method,
            priority: t.priority,
            createdAt: t.createdAt,
            wf: run.workflowName,
          } satisfies FixedFields,
        ),
        t.state,
        String(t.attempts),
        String(extra.length),
      );
      for (const x of extra) args.push(x);
    }
    return this.#do(`cannot create run ${run.id}`, async () => {
      try {
        await this.#script("create", [this.#k("run", run.id)], args);
        this.#commits++;
      } catch (e) {
        if (/\bGZ_EXISTS\b/.test(String((e as Error)?.message))) throw runExists(run.id);
        throw e;
      }
    });
  }

  updateRun(runId: string, patch: RunPatch, ifOwner?: string): Promise<void> {
    const args = [this.prefix, runId, ifOwner === undefined ? "" : "o" + ifOwner];
    const put = (field: keyof RunPatch, value: string | undefined) =>
      value === undefined ? args.push("d", field, "") : args.push("s", field, value);
    if (patch.state !== undefined) put("state", patch.state);
    for (const f of ["startedAt", "finishedAt", "heartbeatAt", "leaseMs"] as const) {
      if (f in patch) put(f, patch[f] === undefined ? undefined : String(patch[f]));
    }
    if ("owner" in patch) put("owner", patch.owner);
    if ("error" in patch) put("error", patch.error ? JSON.stringify(patch.error) : undefined);
    return this.#do(`cannot update run ${runId}`, async () => {
      try {
        await this.#script("update", [this.#k("run", runId)], args);
        this.#commits++;
      } catch (e) {
        if (isNotFound(e)) throw runNotFound(runId);
        const lost = lostOwner(e);
        if (lost) throw ownerLost(runId, lost.owner);
        throw e;
      }
    });
  }

  /**
   * Claims are queued for the rest of the tick and sent as one script call: a fan-out's claims
   * cost one round trip. Each caller's promise settles with its own claim.
   */
  startAttempt(
    runId: string,
    taskId: string,
    attempt: number,
    at: number,
    owner?: string,
    ifOwner?: string,
  ): Promise<void> {
    if (this.#closed) {
      return Promise.reject(new GleitzeitError("PERSISTENCE_ERROR", "the Redis store is closed"));
    }
    return new Promise<void>((resolve, reject) => {
      this.#starts.push({ runId, taskId, attempt, at, owner, ifOwner, resolve, reject });
      if (this.#starts.length === 1) queueMicrotask(() => void this.#flushStarts());
    });
  }

  async #flushStarts(): Promise<void> {
    const batch = this.#starts;
    this.#starts = [];
    const args = [this.prefix];
    for (const s of batch) {
      const part = [
        s.runId,
        s.taskId,
        String(s.attempt),
        String(s.at),
        s.owner === undefined ? "" : "o" + s.owner,
        s.ifOwner === undefined ? "" : "o" + s.ifOwner,
      ];
      if (part.length !== START_FIELDS) throw new Error("start encoding out of step");
      args.push(...part);
    }
    let done: unknown;
    try {
      done = await this.#do("cannot start tasks", () => this.#script("start", [], args));
      this.#commits++;
    } catch (e) {
      for (const s of batch) s.reject(e);
      return;
    }
    batch.forEach((s, i) => {
      const one = (done as unknown[])[i];
      if (Number(one) === 1) s.resolve();
      else if (typeof one === "string" && one.startsWith("L")) {
        s.reject(ownerLost(s.runId, one.slice(1) || undefined));
      } else s.reject(taskNotFound(s.runId, s.taskId));
    });
  }

  /**
   * Finishes are queued for the rest of the tick like claims: the calls made in one tick (a
   * fan-out's tasks finishing together) go out as one script call. Should one of them name an
   * unknown task, each call is sent again on its own so that only that one fails.
   */
  finishTasks(finishes: TaskFinish[]): Promise<void> {
    if (finishes.length === 0) return Promise.resolve();
    if (this.#closed) {
      return Promise.reject(new GleitzeitError("PERSISTENCE_ERROR", "the Redis store is closed"));
    }
    const parts: string[] = [];
    for (const f of finishes) {
      const hasResult = "result" in f;
      const part = [
        f.runId,
        f.taskId,
        f.state,
        String(f.at),
        f.attempt === undefined ? "" : String(f.attempt),
        f.attemptState ?? attemptStateFor(f.state),
        hasResult ? "1" : "0",
        hasResult && f.result !== undefined ? JSON.stringify(f.result) : "",
        f.error ? JSON.stringify(f.error) : "",
        f.reason === undefined ? "0" : "1",
        f.reason ?? "",
        f.ifOwner === undefined ? "" : "o" + f.ifOwner,
      ];
      if (part.length !== FINISH_FIELDS) throw new Error("finish encoding out of step");
      parts.push(...part);
    }
    return new Promise<void>((resolve, reject) => {
      this.#finishes.push({ finishes, parts, resolve, reject });
      if (this.#finishes.length === 1) queueMicrotask(() => void this.#flushFinishes());
    });
  }

  async #flushFinishes(): Promise<void> {
    const batch = this.#finishes;
    this.#finishes = [];
    const send = async (items: typeof batch) => {
      const finishes = items.flatMap((b) => b.finishes);
      await this.#do("cannot record finished tasks", async () => {
        try {
          await this.#script("finish", [], [this.prefix, ...items.flatMap((b) => b.parts)]);
          this.#commits++;
        } catch (e) {
          if (isNotFound(e)) {
            const i = Number(/GZ_NOT_FOUND (\d+)/.exec(String((e as Error).message))?.[1]);
            const f = finishes[i] ?? finishes[0]!;
            throw taskNotFound(f.runId, f.taskId);
          }
          const lost = lostOwner(e);
          if (lost) throw ownerLost((finishes[lost.index] ?? finishes[0]!).runId, lost.owner);
          throw e;
        }
      });
    };
    try {
      await send(batch);
      for (const b of batch) b.resolve();
    } catch (e) {
      const oneCall = e instanceof GleitzeitError &&
        (e.code === "TASK_NOT_FOUND" || e.code === "LEASE_EXPIRED");
      if (batch.length === 1 || !oneCall) {
        for (const b of batch) b.reject(e);
        return;
      }
      // the script is all or nothing: go again call by call, so only the bad one fails
      for (const b of batch) await send([b]).then(b.resolve, b.reject);
    }
  }

  claimRun(
    runId: string,
    owner: string,
    at: number,
    staleBefore: number,
    leaseMs?: number,
  ): Promise<boolean> {
    return this.#do(`cannot claim run ${runId}`, async () => {
      try {
        const won = await this.#script("claim", [this.#k("run", runId)], [
          owner,
          String(at),
          String(staleBefore),
          leaseMs === undefined ? "" : String(leaseMs),
        ]);
        this.#commits++;
        return Number(won) === 1;
      } catch (e) {
        if (isNotFound(e)) throw runNotFound(runId);
        throw e;
      }
    });
  }

  getRun(runId: string): Promise<RunRecord | undefined> {
    return this.#do(`cannot read run ${runId}`, async () => {
      return toRun(await this.#client.hGetAll(this.#k("run", runId)));
    });
  }

  listRuns(filter: RunFilter = {}): Promise<RunRecord[]> {
    const source = filter.workflowName
      ? this.#k("runs", "name", filter.workflowName)
      : filter.state
      ? this.#k("runs", "state", filter.state)
      : this.#k("runs");
    const needle = filter.nameFilter?.toLowerCase();
    const keep = (r: RunRecord) =>
      (!filter.state || r.state === filter.state) &&
      (!filter.workflowName || r.workflowName === filter.workflowName) &&
      (!needle || r.workflowName.toLowerCase().includes(needle));
    return this.#do("cannot list runs", () =>
      this.#collect(source, filter.limit, async (ids) => {
        const rows = await Promise.all(ids.map((id) => this.#client.hGetAll(this.#k("run", id))));
        return rows.map(toRun).filter((r): r is RunRecord => r !== undefined && keep(r));
      }));
  }

  getTask(id: string): Promise<TaskRecord | undefined> {
    return this.#do(`cannot read task ${id}`, async () => {
      const where = await this.#client.hGet(this.#k("taskid"), id);
      if (!where) return undefined;
      const i = where.indexOf(SEP);
      return this.#readTask(where.slice(0, i), where.slice(i + 1));
    });
  }

  getRunTask(runId: string, taskId: string): Promise<TaskRecord | undefined> {
    return this.#do(`cannot read task ${taskId} of run ${runId}`, () => {
      return this.#readTask(runId, taskId);
    });
  }

  async #readTask(runId: string, taskId: string): Promise<TaskRecord | undefined> {
    const h = await this.#client.hGetAll(this.#k("task", runId, taskId));
    return toTask(h, runId, taskId)?.task;
  }

  listTasks(filter: TaskFilter = {}): Promise<TaskRecord[]> {
    const needle = filter.nameFilter?.toLowerCase();
    const keep = ({ task, workflowName }: { task: TaskRecord; workflowName: string }) =>
      (!filter.runId || task.runId === filter.runId) &&
      (!filter.state || task.state === filter.state) &&
      (!filter.workflowName || workflowName === filter.workflowName) &&
      (!needle || task.name.toLowerCase().includes(needle));
    const fetch = async (ids: [runId: string, taskId: string][]) => {
      const rows = await Promise.all(
        ids.map(([runId, taskId]) => this.#client.hGetAll(this.#k("task", runId, taskId))),
      );
      const out: TaskRecord[] = [];
      rows.forEach((h, i) => {
        const t = toTask(h, ids[i]![0], ids[i]![1]);
        if (t && keep(t)) out.push(t.task);
      });
      return out;
    };
    return this.#do("cannot list tasks", () => {
      if (filter.runId) {
        const runId = filter.runId;
        return this.#collect(
          this.#k("run", runId, "tasks"),
          filter.limit,
          (ids) => fetch(ids.map((id) => [runId, id])),
          false,
        );
      }
      if (filter.state) {
        return this.#collect(
          this.#k("tasks", "state", filter.state),
          filter.limit,
          (members) =>
            fetch(members.map((m) => {
              const [runId, , ...rest] = m.split(SEP);
              return [runId!, rest.join(SEP)];
            })),
        );
      }
      // no task-wide index: the runs, newest first, each with its tasks in workflow order
      const runs = filter.workflowName
        ? this.#k("runs", "name", filter.workflowName)
        : this.#k("runs");
      return this.#collectRunTasks(runs, filter.limit, fetch);
    });
  }

  /**
   * Tasks of the runs listed (newest first) in the sorted set `runs`, each run's in workflow
   * order, until `limit` are found. The task lists of a page of runs are read together.
   */
  async #collectRunTasks(
    runs: string,
    limit: number | undefined,
    fetch: (ids: [runId: string, taskId: string][]) => Promise<TaskRecord[]>,
  ): Promise<TaskRecord[]> {
    const want = limit === undefined ? Infinity : Math.max(0, Math.floor(limit));
    const out: TaskRecord[] = [];
    for (let start = 0; out.length < want; start += PAGE) {
      const runIds = await this.#client.zRange(runs, start, start + PAGE - 1, { REV: true });
      const firsts = await Promise.all(
        runIds.map((id) => this.#client.zRange(this.#k("run", id, "tasks"), 0, PAGE - 1)),
      );
      for (const [i, runId] of runIds.entries()) {
        let taskIds = firsts[i]!;
        for (let from = 0; out.length < want && taskIds.length > 0; from += PAGE) {
          out.push(...await fetch(taskIds.map((t) => [runId, t])));
          if (taskIds.length < PAGE) break;
          taskIds = await this.#client.zRange(
            this.#k("run", runId, "tasks"),
            from + PAGE,
            from + 2 * PAGE - 1,
          );
        }
        if (out.length >= want) break;
      }
      if (runIds.length < PAGE) break;
    }
    return out.slice(0, want);
  }

  /** Pages through a sorted set, mapping and filtering each page, until `limit` are found. */
  async #collect<T>(
    key: string,
    limit: number | undefined,
    page: (members: string[]) => Promise<T[]>,
    rev = true,
  ): Promise<T[]> {
    const want = limit === undefined ? Infinity : Math.max(0, Math.floor(limit));
    const out: T[] = [];
    for (let start = 0; out.length < want; start += PAGE) {
      const members = await this.#client.zRange(key, start, start + PAGE - 1, {
        REV: rev || undefined,
      });
      if (members.length === 0) break;
      out.push(...await page(members));
      if (members.length < PAGE) break;
    }
    return out.slice(0, want);
  }

  listAttempts(runId: string, taskId: string): Promise<AttemptRecord[]> {
    return this.#do(`cannot list attempts of task ${taskId}`, async () => {
      const h = await this.#client.hGetAll(this.#k("task", runId, taskId));
      const byNo = new Map<number, Record<string, string>>();
      for (const [field, value] of Object.entries(h)) {
        const i = field.indexOf(":");
        if (i <= 0) continue; // a field of the task itself
        const n = Number(field.slice(0, i));
        const fields = byNo.get(n) ?? {};
        fields[field.slice(i + 1)] = value;
        byNo.set(n, fields);
      }
      return [...byNo.entries()].sort(([a], [b]) => a - b).map(([n, f]) => {
        const a: AttemptRecord = {
          runId,
          taskId,
          attempt: n,
          state: f.state as AttemptRecord["state"],
          startedAt: Number(f.startedAt),
        };
        if (f.finishedAt !== undefined) a.finishedAt = Number(f.finishedAt);
        if (f.owner !== undefined) a.owner = f.owner;
        if (f.error !== undefined) a.error = JSON.parse(f.error) as ErrorData;
        return a;
      });
    });
  }

  stats(): Promise<StoreStats> {
    return this.#do("cannot read statistics", async () => {
      const [runCounts, taskCounts] = await Promise.all([
        Promise.all(RUN_STATES.map((s) => this.#client.zCard(this.#k("runs", "state", s)))),
        Promise.all(TASK_STATES.map((s) => this.#client.zCard(this.#k("tasks", "state", s)))),
      ]);
      const runs: StoreStats["runs"] = {};
      const tasks: StoreStats["tasks"] = {};
      RUN_STATES.forEach((s, i) => runCounts[i] && (runs[s] = runCounts[i]));
      TASK_STATES.forEach((s, i) => taskCounts[i] && (tasks[s] = taskCounts[i]));
      const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
      return {
        backend: this.backend,
        runs,
        tasks,
        totalRuns: sum(runCounts),
        totalTasks: sum(taskCounts),
      };
    });
  }

  /**
   * Deletes every key under this store's prefix (SCAN + UNLINK): an administrative operation for
   * tests and resets, never used in normal operation. Returns how many keys went.
   */
  clear(): Promise<number> {
    return this.#do("cannot clear the store", async () => {
      let n = 0;
      const pattern = this.prefix.replace(/[*?[\]\\]/g, "\\$&") + "*";
      for await (const keys of this.#client.scanIterator({ MATCH: pattern, COUNT: 500 })) {
        if (keys.length > 0) n += await this.#client.unlink(keys);
      }
      return n;
    });
  }

  /**
   * Sends one raw command (the workers' streams), with this store's timeouts and errors. A
   * blocking read must block for less than the command timeout.
   */
  command(args: string[]): Promise<unknown> {
    return this.#do(args[0] ?? "command", () => this.#client.sendCommand(args));
  }

  /** Another store on the same server and prefix, with a connection of its own. */
  sibling(): Promise<RedisStore> {
    return RedisStore.connect({
      url: this.url,
      prefix: this.prefix,
      commandTimeoutMs: this.#commandTimeoutMs,
      reconnectAttempts: this.#reconnectAttempts,
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#opening) shutDown(this.#opening);
    if (this.#client.isOpen && !this.#broken) {
      // a graceful QUIT, unless the server does not answer it soon
      let timer: ReturnType<typeof setTimeout> | undefined;
      const closed = await Promise.race([
        this.#client.close().then(() => true, () => false),
        new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 1000))),
      ]);
      clearTimeout(timer);
      if (closed) return;
    }
    shutDown(this.#client);
  }
}

/** The pause before reconnect attempt `attempt`: 100 ms, doubling, at most 1 s. */
function reconnectDelayMs(attempt: number): number {
  return Math.min(50 * 2 ** Math.max(1, attempt), 1000);
}

/** `promise`, or a rejection once `ms` have passed without it settling. */
async function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no Redis answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Drops a client whatever state it is in; a closed client throws on destroy, which is fine. */
function shutDown(client: Client): void {
  try {
    client.destroy();
  } catch {
    // already closed
  }
}

function runFields(run: RunRecord): Record<string, string> {
  const h: Record<string, string> = {
    id: run.id,
    workflowName: run.workflowName,
    workflow: JSON.stringify(run.workflow),
    params: JSON.stringify(run.params ?? {}),
    state: run.state,
    createdAt: String(run.createdAt),
  };
  if (run.startedAt !== undefined) h.startedAt = String(run.startedAt);
  if (run.finishedAt !== undefined) h.finishedAt = String(run.finishedAt);
  if (run.owner !== undefined) h.owner = run.owner;
  if (run.heartbeatAt !== undefined) h.heartbeatAt = String(run.heartbeatAt);
  if (run.leaseMs !== undefined) h.leaseMs = String(run.leaseMs);
  if (run.error) h.error = JSON.stringify(run.error);
  return h;
}

function toRun(h: Record<string, string>): RunRecord | undefined {
  if (h.id === undefined) return undefined;
  const run: RunRecord = {
    id: h.id,
    workflowName: h.workflowName!,
    workflow: JSON.parse(h.workflow!),
    params: JSON.parse(h.params!),
    state: h.state as RunState,
    createdAt: Number(h.createdAt),
  };
  if (h.startedAt !== undefined) run.startedAt = Number(h.startedAt);
  if (h.finishedAt !== undefined) run.finishedAt = Number(h.finishedAt);
  if (h.owner !== undefined) run.owner = h.owner;
  if (h.heartbeatAt !== undefined) run.heartbeatAt = Number(h.heartbeatAt);
  if (h.leaseMs !== undefined) run.leaseMs = Number(h.leaseMs);
  if (h.error !== undefined) run.error = JSON.parse(h.error) as ErrorData;
  return run;
}

/** The task fields that never change, stored together as the JSON field `f`. */
interface FixedFields {
  id: string;
  name: string;
  protocol: string;
  method: string;
  priority: number;
  createdAt: number;
  /** The run's workflow name, for listings filtered by it. */
  wf: string;
}

/** The changing fields beyond `state` and `attempts` that a new task record already has. */
function taskStateFields(t: TaskRecord): Record<string, string> {
  const h: Record<string, string> = {};
  if (t.startedAt !== undefined) h.startedAt = String(t.startedAt);
  if (t.finishedAt !== undefined) h.finishedAt = String(t.finishedAt);
  if (t.result !== undefined) h.result = JSON.stringify(t.result);
  if (t.error) h.error = JSON.stringify(t.error);
  if (t.reason !== undefined) h.reason = t.reason;
  return h;
}

/** A task hash (see redis_scripts.ts) back as a record, with its run's workflow name. */
function toTask(
  h: Record<string, string>,
  runId: string,
  taskId: string,
): { task: TaskRecord; workflowName: string } | undefined {
  if (h.f === undefined) return undefined;
  const f = JSON.parse(h.f) as FixedFields;
  const task: TaskRecord = {
    id: f.id,
    runId,
    taskId,
    name: f.name,
    protocol: f.protocol,
    method: f.method,
    state: h.state as TaskState,
    priority: f.priority,
    attempts: Number(h.attempts),
    createdAt: f.createdAt,
  };
  if (h.startedAt !== undefined) task.startedAt = Number(h.startedAt);
  if (h.finishedAt !== undefined) task.finishedAt = Number(h.finishedAt);
  if (h.result !== undefined) task.result = JSON.parse(h.result);
  if (h.error !== undefined) task.error = JSON.parse(h.error) as ErrorData;
  if (h.reason !== undefined) task.reason = h.reason;
  return { task, workflowName: f.wf };
}

/** The finish index and the run's owner now, from a script's GZ_LOST reply. */
function lostOwner(e: unknown): { index: number; owner: string | undefined } | undefined {
  const m = /\bGZ_LOST (\d+) ?(.*)$/.exec(String((e as Error)?.message ?? ""));
  return m ? { index: Number(m[1]), owner: m[2]?.trim() || undefined } : undefined;
}

function isNotFound(e: unknown): boolean {
  // Redis may put "ERR " in front of a script's error reply.
  return /\bGZ_NOT_FOUND\b/.test(String((e as Error)?.message ?? ""));
}

function isConnectionError(e: unknown): boolean {
  const name = (e as Error)?.constructor?.name ?? "";
  const msg = messageOf(e);
  return /ClientClosed|SocketClosed|ConnectionTimeout|ReconnectStrategy|ClientOffline/.test(name) ||
    /ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENOTFOUND|client is closed|socket closed|timeout/i.test(
      msg,
    );
}

function unavailable(url: string, cause: unknown): GleitzeitError {
  const shown = redactUrl(url);
  return new GleitzeitError(
    "PERSISTENCE_UNAVAILABLE",
    `cannot reach Redis at ${shown}: ${messageOf(cause)}`,
    {
      cause,
      details: { url: shown },
      hint: `is Redis running at ${shown}? start it with \`redis-server\` ` +
        "(or `docker run -d -p 6379:6379 redis:7`), or set GLEITZEIT_REDIS_URL / --backend sqlite",
    },
  );
}

/** The URL without its password. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString().replace(/\/$/, "");
  } catch {
    return url;
  }
}

function messageOf(e: unknown): string {
  if (e instanceof AggregateError && e.errors.length > 0) return messageOf(e.errors[0]);
  const m = e instanceof Error ? e.message : String(e);
  return m || (e as Error)?.constructor?.name || "unknown error";
}
