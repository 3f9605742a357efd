/**
 * The default Store: one SQLite file through Deno's built-in `node:sqlite` (no native addon).
 *
 * WAL journal, `synchronous=NORMAL` (a commit is durable against a process crash; a power loss
 * may lose the last commits, never corrupt the file), `busy_timeout` so a second process waits
 * for the write lock instead of failing, and every write transaction opened with
 * `BEGIN IMMEDIATE`: a deferred transaction that upgrades from read to write gets SQLITE_BUSY
 * without waiting, which is where "database is locked" comes from.
 *
 * @module
 */

import { DatabaseSync, type SQLInputValue, type StatementSync } from "node:sqlite";
import { dirname } from "node:path";
import { type ErrorData, GleitzeitError } from "../core/errors.ts";
import { isTerminalRun, type RunState, type TaskState } from "../core/states.ts";
import {
  attemptStateFor,
  finishSetsFinishedAt,
  ownerLost,
  runExists,
  runNotFound,
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

/** Options for {@link SqliteStore.open}. */
export interface SqliteStoreOptions {
  /** How long a writer waits for another process's write lock, in ms. Default 5000. */
  busyTimeoutMs?: number;
}

/** Schema migrations; `PRAGMA user_version` is the number applied. Append, never edit. */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE runs (
     id TEXT PRIMARY KEY,
     workflow_name TEXT NOT NULL,
     workflow TEXT NOT NULL,
     params TEXT NOT NULL,
     state TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     started_at INTEGER,
     finished_at INTEGER,
     owner TEXT,
     heartbeat_at INTEGER,
     error TEXT
   );
   CREATE INDEX runs_by_created ON runs (created_at DESC, id DESC);
   CREATE TABLE tasks (
     id TEXT PRIMARY KEY,
     run_id TEXT NOT NULL,
     task_id TEXT NOT NULL,
     seq INTEGER NOT NULL,
     name TEXT NOT NULL,
     protocol TEXT NOT NULL,
     method TEXT NOT NULL,
     state TEXT NOT NULL,
     priority INTEGER NOT NULL,
     attempts INTEGER NOT NULL,
     created_at INTEGER NOT NULL,
     started_at INTEGER,
     finished_at INTEGER,
     result TEXT,
     error TEXT,
     reason TEXT,
     -- The task's attempts, a JSON array: kept in the task's row so that a claim or a finish
     -- writes one row (one page) rather than two tables.
     attempt_log TEXT NOT NULL DEFAULT '[]',
     UNIQUE (run_id, task_id)
   );`,
  // the owner's lease (RunRecord.leaseMs), and the owner of a run read without its row: a
  // write for an owner checks it (see #checkOwner), and the row holds the whole workflow
  // (overflow pages that reading `owner`, a later column, would walk)
  `ALTER TABLE runs ADD COLUMN lease_ms INTEGER;
   CREATE INDEX runs_owner ON runs (id, owner);`,
];

/** The schema version this code writes. */
export const SQLITE_SCHEMA_VERSION = MIGRATIONS.length;

type Row = Record<string, SQLInputValue>;

/** An attempt as kept in a task's `attempt_log` (run and task ids are the row's). */
type LoggedAttempt = Omit<AttemptRecord, "runId" | "taskId">;

/** Store on one SQLite file. Safe to share between processes. */
export class SqliteStore implements Store {
  readonly backend = "sqlite";
  /** The database file. */
  readonly path: string;
  #db: DatabaseSync;
  #statements = new Map<string, StatementSync>();
  #commits = 0;
  #closed = false;
  #queue: {
    fn: () => unknown;
    what: string;
    resolve: (v: unknown) => void;
    reject: (e: unknown) => void;
  }[] = [];
  #flushScheduled = false;

  private constructor(path: string, db: DatabaseSync) {
    this.path = path;
    this.#db = db;
  }

  /**
   * Opens (creating parent directories, the file and the schema as needed) the database at
   * `path`; `:memory:` gives a private in-memory database.
   */
  static open(path: string, options: SqliteStoreOptions = {}): SqliteStore {
    const busy = options.busyTimeoutMs ?? 5000;
    let db: DatabaseSync;
    try {
      if (path !== ":memory:") Deno.mkdirSync(dirname(path), { recursive: true });
      db = new DatabaseSync(path, { timeout: busy });
    } catch (e) {
      throw new GleitzeitError(
        "PERSISTENCE_UNAVAILABLE",
        `cannot open SQLite database ${path}: ${messageOf(e)}`,
        { cause: e, hint: "check the path and its permissions, or set GLEITZEIT_SQLITE_PATH" },
      );
    }
    const store = new SqliteStore(path, db);
    try {
      db.exec(`PRAGMA busy_timeout = ${Math.max(0, Math.floor(busy))}`);
      db.exec("PRAGMA journal_mode = WAL");
      db.exec("PRAGMA synchronous = NORMAL");
      db.function("gz_lower", { deterministic: true }, (s) => String(s ?? "").toLowerCase());
      store.#migrate();
    } catch (e) {
      db.close();
      throw toStoreError(e, `cannot open SQLite database ${path}`);
    }
    return store;
  }

  /** Write transactions committed through this store since it was opened. */
  get commits(): number {
    return this.#commits;
  }

  /** Reads a setting of the connection (for `system status` and tests). */
  pragma(name: "journal_mode" | "synchronous" | "busy_timeout" | "user_version"): unknown {
    if (this.#closed) throw closedError();
    const row = this.#db.prepare(`PRAGMA ${name}`).get() as Row | undefined;
    return row ? Object.values(row)[0] : undefined;
  }

  #migrate(): void {
    const version = () =>
      Number((this.#db.prepare("PRAGMA user_version").get() as Row).user_version);
    if (version() === MIGRATIONS.length) return;
    // Several processes may open a new file at once: the first to get the write lock migrates,
    // the others find the work done once they get it.
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      const from = version();
      if (from > MIGRATIONS.length) {
        throw new GleitzeitError(
          "PERSISTENCE_ERROR",
          `database ${this.path} has schema version ${from}, newer than this gleitzeit (${MIGRATIONS.length})`,
          { hint: "upgrade gleitzeit, or point GLEITZEIT_SQLITE_PATH at another file" },
        );
      }
      for (let v = from; v < MIGRATIONS.length; v++) this.#db.exec(MIGRATIONS[v]!);
      this.#db.exec(`PRAGMA user_version = ${MIGRATIONS.length}`);
      this.#db.exec("COMMIT");
    } catch (e) {
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      throw e;
    }
  }

  /** A cached prepared statement. */
  #sql(sql: string): StatementSync {
    let st = this.#statements.get(sql);
    if (!st) {
      st = this.#db.prepare(sql);
      this.#statements.set(sql, st);
    }
    return st;
  }

  /** Runs `fn` in one `BEGIN IMMEDIATE` transaction. */
  #write<T>(fn: () => T): T {
    if (this.#closed) throw closedError();
    this.#sql("BEGIN IMMEDIATE").run();
    this.#owners.clear(); // (read afresh in each transaction: other processes write between)
    try {
      const out = fn();
      this.#sql("COMMIT").run();
      this.#commits++;
      return out;
    } catch (e) {
      if (this.#db.isTransaction) this.#sql("ROLLBACK").run();
      throw e;
    }
  }

  /**
   * Queues a write. Writes queued in the same tick (concurrent callers: a fan-out's claims, a
   * batch of finishes) share one transaction, each inside its own savepoint so one failing
   * write rolls back alone; every caller's promise settles after the commit that holds it.
   */
  #enqueue<T>(fn: () => T, what: string): Promise<T> {
    if (this.#closed) return Promise.reject(closedError());
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ fn, what, resolve: resolve as (v: unknown) => void, reject });
      if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        queueMicrotask(() => this.#flush());
      }
    });
  }

  #flush(): void {
    this.#flushScheduled = false;
    const batch = this.#queue;
    this.#queue = [];
    if (batch.length === 0) return;
    if (batch.length === 1) {
      const op = batch[0]!;
      try {
        op.resolve(this.#write(op.fn));
      } catch (e) {
        op.reject(toStoreError(e, op.what));
      }
      return;
    }
    // Fast path: all of them in one transaction. Should one fail, roll back and go again with
    // a savepoint around each, so that only the failing one is undone.
    try {
      const values = this.#write(() => batch.map((op) => op.fn()));
      batch.forEach((op, i) => op.resolve(values[i]));
      return;
    } catch {
      // fall through to the careful path
    }
    const outcomes: ({ ok: true; value: unknown } | { ok: false; error: unknown })[] = [];
    try {
      this.#write(() => {
        for (const op of batch) {
          this.#sql("SAVEPOINT gz_write").run();
          try {
            outcomes.push({ ok: true, value: op.fn() });
            this.#sql("RELEASE gz_write").run();
          } catch (e) {
            this.#sql("ROLLBACK TO gz_write").run();
            this.#owners.clear();
            this.#sql("RELEASE gz_write").run();
            outcomes.push({ ok: false, error: e });
          }
        }
      });
    } catch (e) {
      for (const op of batch) op.reject(toStoreError(e, op.what));
      return;
    }
    batch.forEach((op, i) => {
      const o = outcomes[i]!;
      if (o.ok) op.resolve(o.value);
      else op.reject(toStoreError(o.error, op.what));
    });
  }

  #read<T>(fn: () => T): T {
    if (this.#closed) throw closedError();
    // Reads see every write issued before them, even one not awaited yet.
    if (this.#queue.length > 0) this.#flush();
    return fn();
  }

  #insertRun(run: RunRecord): void {
    this.#sql(
      `INSERT INTO runs (id, workflow_name, workflow, params, state, created_at, started_at,
             finished_at, owner, heartbeat_at, lease_ms, error)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      run.id,
      run.workflowName,
      JSON.stringify(run.workflow),
      JSON.stringify(run.params ?? {}),
      run.state,
      run.createdAt,
      run.startedAt ?? null,
      run.finishedAt ?? null,
      run.owner ?? null,
      run.heartbeatAt ?? null,
      run.leaseMs ?? null,
      json(run.error),
    );
  }

  createRun(run: RunRecord, tasks: TaskRecord[]): Promise<void> {
    return this.#enqueue(() => {
      try {
        this.#insertRun(run);
      } catch (e) {
        if (/UNIQUE constraint failed: runs\.id/.test(messageOf(e))) throw runExists(run.id);
        throw e;
      }
      const insert = this.#sql(
        `INSERT INTO tasks (id, run_id, task_id, seq, name, protocol, method, state, priority,
             attempts, created_at, started_at, finished_at, result, error, reason)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      );
      tasks.forEach((t, seq) =>
        insert.run(
          t.id,
          run.id,
          t.taskId,
          seq,
          t.name,
          t.protocol,
          t.method,
          t.state,
          t.priority,
          t.attempts,
          t.createdAt,
          t.startedAt ?? null,
          t.finishedAt ?? null,
          "result" in t && t.result !== undefined ? JSON.stringify(t.result) : null,
          json(t.error),
          t.reason ?? null,
        )
      );
    }, `cannot create run ${run.id}`);
  }

  updateRun(runId: string, patch: RunPatch, ifOwner?: string): Promise<void> {
    const cols: string[] = [];
    const values: SQLInputValue[] = [];
    const set = (col: string, v: SQLInputValue) => {
      cols.push(`${col} = ?`);
      values.push(v);
    };
    if ("state" in patch && patch.state !== undefined) set("state", patch.state);
    if ("startedAt" in patch) set("started_at", patch.startedAt ?? null);
    if ("finishedAt" in patch) set("finished_at", patch.finishedAt ?? null);
    if ("owner" in patch) set("owner", patch.owner ?? null);
    if ("heartbeatAt" in patch) set("heartbeat_at", patch.heartbeatAt ?? null);
    if ("leaseMs" in patch) set("lease_ms", patch.leaseMs ?? null);
    if ("error" in patch) set("error", json(patch.error));
    return this.#enqueue(() => {
      if (ifOwner !== undefined) this.#checkOwner(runId, ifOwner);
      const sql = cols.length > 0
        ? `UPDATE runs SET ${cols.join(", ")} WHERE id = ?`
        : "UPDATE runs SET id = id WHERE id = ?";
      const { changes } = this.#sql(sql).run(...values, runId);
      if (Number(changes) === 0) throw runNotFound(runId);
      if ("owner" in patch) this.#owners.set(runId, patch.owner ?? null);
    }, `cannot update run ${runId}`);
  }

  startAttempt(
    runId: string,
    taskId: string,
    attemptNo: number,
    at: number,
    owner?: string,
    ifOwner?: string,
  ): Promise<void> {
    const rec: LoggedAttempt = { attempt: attemptNo, state: "running", startedAt: at };
    if (owner !== undefined) rec.owner = owner;
    return this.#enqueue(() => {
      if (ifOwner !== undefined) this.#checkOwner(runId, ifOwner);
      // The attempt log is edited in SQL (no read back into JS): appended to, or, when this
      // attempt number was started before, that entry replaced.
      const { changes } = this.#sql(
        `UPDATE tasks SET state = 'running', attempts = ?1, started_at = ?2, error = NULL,
           finished_at = NULL,
           attempt_log = json_insert(
             CASE WHEN coalesce(json_extract(attempt_log, '$[#-1].attempt'), -1) < ?1
               THEN attempt_log
               ELSE (SELECT json_group_array(json(e.value)) FROM json_each(tasks.attempt_log) e
                     WHERE json_extract(e.value, '$.attempt') != ?1)
             END, '$[#]', json(?3))
         WHERE run_id = ?4 AND task_id = ?5`,
      ).run(attemptNo, at, JSON.stringify(rec), runId, taskId);
      if (Number(changes) === 0) throw taskNotFound(runId, taskId);
    }, `cannot start task ${taskId} of run ${runId}`);
  }

  finishTasks(finishes: TaskFinish[]): Promise<void> {
    if (finishes.length === 0) return Promise.resolve();
    return this.#enqueue(() => {
      // One statement per task; the transaction (or savepoint) makes the batch all or nothing.
      const update = this.#sql(
        `UPDATE tasks SET
             state = ?1,
             finished_at = CASE WHEN ?2 THEN ?3 ELSE finished_at END,
             result = CASE WHEN ?4 THEN ?5 ELSE result END,
             error = coalesce(?6, error),
             reason = coalesce(?7, reason),
             attempt_log = coalesce(
               (SELECT CASE WHEN ?6 IS NULL
                  THEN json_set(attempt_log, '$[' || e.key || '].state', ?8,
                                '$[' || e.key || '].finishedAt', ?3)
                  ELSE json_set(attempt_log, '$[' || e.key || '].state', ?8,
                                '$[' || e.key || '].finishedAt', ?3,
                                '$[' || e.key || '].error', json(?6))
                  END
                FROM json_each(tasks.attempt_log) e
                WHERE ?9 IS NOT NULL AND json_extract(e.value, '$.attempt') = ?9),
               attempt_log)
           WHERE run_id = ?10 AND task_id = ?11`,
      );
      for (const f of finishes) {
        if (f.ifOwner !== undefined) this.#checkOwner(f.runId, f.ifOwner);
        const hasResult = "result" in f;
        const { changes } = update.run(
          f.state,
          finishSetsFinishedAt(f.state) ? 1 : 0,
          f.at,
          hasResult ? 1 : 0,
          hasResult && f.result !== undefined ? JSON.stringify(f.result) : null,
          json(f.error),
          f.reason ?? null,
          f.attemptState ?? attemptStateFor(f.state),
          f.attempt ?? null,
          f.runId,
          f.taskId,
        );
        if (Number(changes) === 0) throw taskNotFound(f.runId, f.taskId);
      }
    }, "cannot record finished tasks");
  }

  /**
   * Owners of runs read in the current transaction (see #checkOwner): a batch of writes, one
   * transaction, checks each run once. Writes of an owner in the same transaction keep it
   * current.
   */
  #owners = new Map<string, string | null>();

  /** Inside a write: throws unless the run is `owner`'s (see Store.updateRun). */
  #checkOwner(runId: string, owner: string): void {
    let now = this.#owners.get(runId);
    if (now === undefined) {
      // from the index alone (the row's overflow pages, the workflow, are not read)
      const row = this.#sql("SELECT owner FROM runs INDEXED BY runs_owner WHERE id = ?").get(
        runId,
      ) as Row | undefined;
      if (!row) throw runNotFound(runId);
      now = (row.owner as string | null) ?? null;
      this.#owners.set(runId, now);
    }
    if (now !== owner) throw ownerLost(runId, now ?? undefined);
  }

  claimRun(
    runId: string,
    owner: string,
    at: number,
    staleBefore: number,
    leaseMs?: number,
  ): Promise<boolean> {
    return this.#enqueue(() => {
      const row = this.#sql("SELECT state, owner, heartbeat_at FROM runs WHERE id = ?").get(
        runId,
      ) as Row | undefined;
      if (!row) throw runNotFound(runId);
      const free = row.owner === null || row.owner === owner ||
        isTerminalRun(row.state as RunState) || Number(row.heartbeat_at ?? 0) < staleBefore;
      if (!free) return false;
      this.#owners.set(runId, owner);
      this.#sql("UPDATE runs SET owner = ?, heartbeat_at = ?, lease_ms = ? WHERE id = ?").run(
        owner,
        at,
        leaseMs ?? null,
        runId,
      );
      return true;
    }, `cannot claim run ${runId}`);
  }

  getRun(runId: string): Promise<RunRecord | undefined> {
    return attempt(() =>
      this.#read(() => {
        const row = this.#sql("SELECT * FROM runs WHERE id = ?").get(runId) as Row | undefined;
        return row && toRun(row);
      }), `cannot read run ${runId}`);
  }

  listRuns(filter: RunFilter = {}): Promise<RunRecord[]> {
    const where: string[] = [];
    const values: SQLInputValue[] = [];
    if (filter.state) where.push("state = ?"), values.push(filter.state);
    if (filter.workflowName) where.push("workflow_name = ?"), values.push(filter.workflowName);
    if (filter.nameFilter) {
      where.push("instr(gz_lower(workflow_name), ?) > 0");
      values.push(filter.nameFilter.toLowerCase());
    }
    const sql = `SELECT * FROM runs ${where.length ? "WHERE " + where.join(" AND ") : ""}
      ORDER BY created_at DESC, id DESC LIMIT ?`;
    return attempt(
      () =>
        this.#read(() =>
          (this.#sql(sql).all(...values, limitOf(filter.limit)) as Row[]).map(toRun)
        ),
      "cannot list runs",
    );
  }

  getTask(id: string): Promise<TaskRecord | undefined> {
    return attempt(() =>
      this.#read(() => {
        const row = this.#sql("SELECT * FROM tasks WHERE id = ?").get(id) as Row | undefined;
        return row && toTask(row);
      }), `cannot read task ${id}`);
  }

  getRunTask(runId: string, taskId: string): Promise<TaskRecord | undefined> {
    return attempt(() =>
      this.#read(() => {
        const row = this.#sql("SELECT * FROM tasks WHERE run_id = ? AND task_id = ?").get(
          runId,
          taskId,
        ) as Row | undefined;
        return row && toTask(row);
      }), `cannot read task ${taskId} of run ${runId}`);
  }

  listTasks(filter: TaskFilter = {}): Promise<TaskRecord[]> {
    const where: string[] = [];
    const values: SQLInputValue[] = [];
    if (filter.runId) where.push("t.run_id = ?"), values.push(filter.runId);
    if (filter.state) where.push("t.state = ?"), values.push(filter.state);
    if (filter.workflowName) where.push("r.workflow_name = ?"), values.push(filter.workflowName);
    if (filter.nameFilter) {
      where.push("instr(gz_lower(t.name), ?) > 0");
      values.push(filter.nameFilter.toLowerCase());
    }
    const order = filter.runId ? "t.seq" : "r.created_at DESC, r.id DESC, t.seq";
    const sql = `SELECT t.* FROM tasks t JOIN runs r ON r.id = t.run_id
      ${where.length ? "WHERE " + where.join(" AND ") : ""} ORDER BY ${order} LIMIT ?`;
    return attempt(
      () =>
        this.#read(() =>
          (this.#sql(sql).all(...values, limitOf(filter.limit)) as Row[]).map(toTask)
        ),
      "cannot list tasks",
    );
  }

  listAttempts(runId: string, taskId: string): Promise<AttemptRecord[]> {
    return attempt(() =>
      this.#read(() => {
        const row = this.#sql(
          "SELECT attempt_log FROM tasks WHERE run_id = ? AND task_id = ?",
        ).get(runId, taskId) as Row | undefined;
        if (!row) return [];
        return (JSON.parse(row.attempt_log as string) as LoggedAttempt[])
          .sort((a, b) => a.attempt - b.attempt)
          .map((a) => ({ runId, taskId, ...a }));
      }), `cannot list attempts of task ${taskId}`);
  }

  stats(): Promise<StoreStats> {
    return attempt(() =>
      this.#read(() => {
        const runs: StoreStats["runs"] = {};
        const tasks: StoreStats["tasks"] = {};
        let totalRuns = 0;
        let totalTasks = 0;
        for (const r of this.#sql("SELECT state, count(*) n FROM runs GROUP BY state").all()) {
          runs[r.state as RunState] = Number(r.n);
          totalRuns += Number(r.n);
        }
        for (const r of this.#sql("SELECT state, count(*) n FROM tasks GROUP BY state").all()) {
          tasks[r.state as TaskState] = Number(r.n);
          totalTasks += Number(r.n);
        }
        return { backend: this.backend, runs, tasks, totalRuns, totalTasks };
      }), "cannot read statistics");
  }

  close(): Promise<void> {
    if (this.#queue.length > 0) this.#flush();
    if (!this.#closed) {
      this.#closed = true;
      this.#statements.clear();
      this.#db.close();
    }
    return Promise.resolve();
  }
}

function json(v: unknown): string | null {
  return v === undefined || v === null ? null : JSON.stringify(v);
}

function limitOf(limit: number | undefined): number {
  return limit === undefined ? -1 : Math.max(0, Math.floor(limit));
}

function toRun(row: Row): RunRecord {
  const run: RunRecord = {
    id: row.id as string,
    workflowName: row.workflow_name as string,
    workflow: JSON.parse(row.workflow as string),
    params: JSON.parse(row.params as string),
    state: row.state as RunState,
    createdAt: Number(row.created_at),
  };
  if (row.started_at !== null) run.startedAt = Number(row.started_at);
  if (row.finished_at !== null) run.finishedAt = Number(row.finished_at);
  if (row.owner !== null) run.owner = row.owner as string;
  if (row.heartbeat_at !== null) run.heartbeatAt = Number(row.heartbeat_at);
  if (row.lease_ms !== null && row.lease_ms !== undefined) run.leaseMs = Number(row.lease_ms);
  if (row.error !== null) run.error = JSON.parse(row.error as string) as ErrorData;
  return run;
}

function toTask(row: Row): TaskRecord {
  const task: TaskRecord = {
    id: row.id as string,
    runId: row.run_id as string,
    taskId: row.task_id as string,
    name: row.name as string,
    protocol: row.protocol as string,
    method: row.method as string,
    state: row.state as TaskState,
    priority: Number(row.priority),
    attempts: Number(row.attempts),
    createdAt: Number(row.created_at),
  };
  if (row.started_at !== null) task.startedAt = Number(row.started_at);
  if (row.finished_at !== null) task.finishedAt = Number(row.finished_at);
  if (row.result !== null) task.result = JSON.parse(row.result as string);
  if (row.error !== null) task.error = JSON.parse(row.error as string) as ErrorData;
  if (row.reason !== null) task.reason = row.reason as string;
  return task;
}

/** Runs a synchronous body, turning its outcome into a promise and its errors into ours. */
function attempt<T>(fn: () => T, what: string): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (e) {
    return Promise.reject(toStoreError(e, what));
  }
}

function toStoreError(e: unknown, what: string): GleitzeitError {
  if (e instanceof GleitzeitError) return e;
  const msg = messageOf(e);
  if (/database is locked|SQLITE_BUSY|database is busy/i.test(msg)) {
    return new GleitzeitError("PERSISTENCE_UNAVAILABLE", `${what}: ${msg}`, {
      cause: e,
      hint: "another process holds the database's write lock for too long; try again",
    });
  }
  if (/not a database|malformed|SQLITE_NOTADB|SQLITE_CORRUPT/i.test(msg)) {
    return new GleitzeitError("PERSISTENCE_UNAVAILABLE", `${what}: ${msg}`, {
      cause: e,
      hint: "that file is not a Gleitzeit (SQLite) database, or is damaged: point " +
        "--sqlite-path / GLEITZEIT_SQLITE_PATH at another file (a new one is made)",
    });
  }
  return new GleitzeitError("PERSISTENCE_ERROR", `${what}: ${msg}`, {
    cause: e,
    hint: "run it again with --debug for the details",
  });
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function closedError(): GleitzeitError {
  return new GleitzeitError("PERSISTENCE_ERROR", "the SQLite store is closed");
}
