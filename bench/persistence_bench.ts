/**
 * Store path benchmark (a script, not a test): tasks/s of our stores beside the raw cost of
 * the same backend measured in the same run.
 *
 *   deno run -A bench/persistence_bench.ts [--tasks 5000] [--batch 100] [--reps 5]
 *     [--redis-tasks 3000] [--redis-url URL] [--no-redis]
 *
 * Each figure is the median of `reps` interleaved rounds; each ratio is the median of the
 * per-round ratios (the machine may be shared: raw and store see the same load).
 *
 * SQLite (same file settings as SqliteStore: WAL, synchronous=NORMAL):
 *   raw          insert + 2 updates per task, each its own commit
 *   raw group    the same statements, `batch` tasks per commit
 *   chain        one run of N tasks; per task, sequentially: startAttempt, finishTasks([one])
 *   chain/1run   per task: createRun (a one-task run), startAttempt, finishTasks  (3 commits)
 *   fan-out      one run of N tasks; startAttempt for each, finishes in batches of `batch`
 * Redis: raw = HSET insert + 2 HSET updates per task, awaited one by one; raw group = the same
 * commands, `batch` tasks per MULTI; the store rows as above.
 *
 * Engine rows run real workflows of no-op echo/v1 tasks through the Engine on the same store:
 *   engine chain    N tasks, each depending on the previous one
 *   engine fan-out  N independent tasks, `batch` of them in flight (the raw group's batch size)
 *
 * Targets (issue 3): chain >= 0.5x raw, fan-out >= 0.3x raw group commit.
 *
 * @module
 */

import { echoWorkflow } from "./echo_workflow.ts";
import type { Workflow } from "../src/core/workflow.ts";
import { DatabaseSync } from "node:sqlite";
import { newId } from "../src/core/ids.ts";
import { Engine } from "../src/engine/engine.ts";
import { ECHO_PROTOCOL, EchoProvider } from "../src/providers/echo/echo_provider.ts";
import { ProviderRegistry } from "../src/providers/registry.ts";
import { RedisStore } from "../src/persistence/redis_store.ts";
import { SqliteStore } from "../src/persistence/sqlite_store.ts";
import type { RunRecord, Store, TaskRecord } from "../src/persistence/store.ts";

const args = parseArgs(Deno.args);
const N = args.tasks;
const BATCH = args.batch;

interface Row {
  label: string;
  /** Rates of each round; the median is shown. */
  perSec: number[];
  note?: string;
}

function rate(n: number, ms: number): number {
  return n / (ms / 1000);
}

async function timed(n: number, fn: () => Promise<void> | void): Promise<number> {
  const t0 = performance.now();
  await fn();
  return rate(n, performance.now() - t0);
}

/**
 * Runs every variant once per round, `args.reps` rounds, interleaved so that a raw figure and
 * the store figure it is compared with see the same machine load (the machine is shared).
 */
async function rounds(variants: (() => Promise<number> | number)[]): Promise<number[][]> {
  const out: number[][] = variants.map(() => []);
  for (let r = 0; r < args.reps; r++) {
    for (const [i, v] of variants.entries()) out[i]!.push(await v());
  }
  return out;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Median over rounds of the per-round ratio a/b, with the target verdict. */
function ratio(a: number[], b: number[], target: number): string {
  const x = median(a.map((v, i) => v / b[i]!));
  return `${x.toFixed(2)}x (target >= ${target}) ${x >= target ? "ok" : "BELOW TARGET"}`;
}

function print(title: string, rows: Row[]): void {
  console.log(`\n${title}`);
  for (const r of rows) {
    const v = Math.round(median(r.perSec)).toLocaleString("en-US").padStart(10);
    console.log(`  ${r.label.padEnd(48)} ${v} tasks/s${r.note ? `   ${r.note}` : ""}`);
  }
}

/** A run of `n` no-op tasks. */
function makeRun(n: number, name: string): { run: RunRecord; tasks: TaskRecord[] } {
  const now = Date.now();
  const ids = Array.from({ length: n }, (_, i) => `t${i}`);
  const workflow: Workflow = {
    name,
    params: {},
    onFailure: "fail_fast",
    tasks: ids.map((id) => ({
      id,
      name: id,
      protocol: "noop/v1",
      method: "noop/run",
      params: {},
      dependencies: [],
      priority: 50,
      retry: { maxAttempts: 1, backoff: "fixed", baseDelayMs: 0, maxDelayMs: 0, jitter: false },
      continueOnFailure: false,
    })),
  };
  const run: RunRecord = {
    id: newId("run", now),
    workflowName: name,
    workflow,
    params: {},
    state: "running",
    createdAt: now,
  };
  const tasks: TaskRecord[] = ids.map((taskId) => ({
    id: newId("task", now),
    runId: run.id,
    taskId,
    name: taskId,
    protocol: "noop/v1",
    method: "noop/run",
    state: "queued",
    priority: 50,
    attempts: 0,
    createdAt: now,
  }));
  return { run, tasks };
}

const RESULT = { ok: true, value: "done" };

/** Chain: one run of n tasks, each claimed then finished on its own. */
async function storeChain(store: Store, n: number): Promise<number> {
  return await timed(n, async () => {
    const { run } = await create(store, n, "bench-chain");
    for (let i = 0; i < n; i++) {
      await store.startAttempt(run.id, `t${i}`, 1, Date.now());
      await store.finishTasks([
        {
          runId: run.id,
          taskId: `t${i}`,
          state: "completed",
          at: Date.now(),
          attempt: 1,
          result: RESULT,
        },
      ]);
    }
  });
}

/** Chain, one run per task: createRun + startAttempt + finishTasks, 3 commits per task. */
async function storeChainRunPerTask(store: Store, n: number): Promise<number> {
  return await timed(n, async () => {
    for (let i = 0; i < n; i++) {
      const { run } = await create(store, 1, "bench-single");
      await store.startAttempt(run.id, "t0", 1, Date.now());
      await store.finishTasks([
        {
          runId: run.id,
          taskId: "t0",
          state: "completed",
          at: Date.now(),
          attempt: 1,
          result: RESULT,
        },
      ]);
    }
  });
}

/** Fan-out: one run of n independent tasks; every task claimed, finishes written in batches. */
async function storeFanOut(store: Store, n: number, batch: number): Promise<number> {
  return await timed(n, async () => {
    const { run } = await create(store, n, "bench-fanout");
    for (let i = 0; i < n; i += batch) {
      const ids = Array.from({ length: Math.min(batch, n - i) }, (_, j) => `t${i + j}`);
      await Promise.all(ids.map((id) => store.startAttempt(run.id, id, 1, Date.now())));
      await store.finishTasks(ids.map((taskId) => ({
        runId: run.id,
        taskId,
        state: "completed" as const,
        at: Date.now(),
        attempt: 1,
        result: RESULT,
      })));
    }
  });
}

const registry = new ProviderRegistry();
registry.registerProtocol(ECHO_PROTOCOL);
registry.register(new EchoProvider());

/** A workflow of no-op tasks through the real Engine on `store`. */
async function engineRun(store: Store, n: number, chained: boolean): Promise<number> {
  const engine = new Engine({ dispatcher: registry, store, maxConcurrency: BATCH });
  const wf = echoWorkflow(n, {
    chained,
    name: chained ? "bench-engine-chain" : "bench-engine-fanout",
  });
  return await timed(n, async () => {
    const out = await engine.run(wf);
    if (out.state !== "completed") throw new Error(`engine run ${out.state}`);
  });
}

async function create(store: Store, n: number, name: string) {
  const r = makeRun(n, name);
  await store.createRun(r.run, r.tasks);
  return r;
}

// ---------------------------------------------------------------- SQLite

function rawSqlite(path: string): DatabaseSync {
  const db = new DatabaseSync(path);
  db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000");
  db.exec(`CREATE TABLE tasks (
    id TEXT PRIMARY KEY, run_id TEXT NOT NULL, task_id TEXT NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL, created_at INTEGER NOT NULL, started_at INTEGER,
    finished_at INTEGER, result TEXT)`);
  return db;
}

function rawSqliteRun(db: DatabaseSync, n: number, batch: number): number {
  const ins = db.prepare(
    "INSERT INTO tasks (id, run_id, task_id, state, attempts, created_at) VALUES (?, ?, ?, 'queued', 0, ?)",
  );
  const start = db.prepare(
    "UPDATE tasks SET state = 'running', attempts = 1, started_at = ? WHERE id = ?",
  );
  const finish = db.prepare(
    "UPDATE tasks SET state = 'completed', finished_at = ?, result = ? WHERE id = ?",
  );
  const begin = db.prepare("BEGIN IMMEDIATE");
  const commit = db.prepare("COMMIT");
  const runId = newId("run");
  const t0 = performance.now();
  for (let i = 0; i < n; i += batch) {
    const m = Math.min(batch, n - i);
    const ids = Array.from({ length: m }, () => newId("task"));
    if (batch > 1) begin.run();
    for (const id of ids) ins.run(id, runId, id, Date.now());
    for (const id of ids) start.run(Date.now(), id);
    for (const id of ids) finish.run(Date.now(), JSON.stringify(RESULT), id);
    if (batch > 1) commit.run();
  }
  return rate(n, performance.now() - t0);
}

async function benchSqlite(dir: string): Promise<void> {
  let k = 0;
  const file = () => `${dir}/bench-${k++}.db`;
  // Warm up the JIT and the file system on small runs first.
  rawSqliteRun(rawSqlite(file()), 200, 1);
  const warm = SqliteStore.open(file());
  await storeChain(warm, 200);
  await storeFanOut(warm, 200, BATCH);
  await warm.close();

  const withDb = (batch: number) => () => {
    const db = rawSqlite(file());
    try {
      return rawSqliteRun(db, N, batch);
    } finally {
      db.close();
    }
  };
  const withStore = (fn: (s: Store) => Promise<number>) => async () => {
    const s = SqliteStore.open(file());
    try {
      return await fn(s);
    } finally {
      await s.close();
    }
  };
  const [raw, group, chain, chain1, fan, eChain, eFan] = await rounds([
    withDb(1),
    withDb(BATCH),
    withStore((s) => storeChain(s, N)),
    withStore((s) => storeChainRunPerTask(s, N)),
    withStore((s) => storeFanOut(s, N, BATCH)),
    withStore((s) => engineRun(s, N, true)),
    withStore((s) => engineRun(s, N, false)),
  ]) as [number[], number[], number[], number[], number[], number[], number[]];

  const version = (new DatabaseSync(":memory:").prepare("SELECT sqlite_version() v").get() as {
    v: string;
  }).v;
  print(`SQLite ${version} (WAL, synchronous=NORMAL), ${N} tasks, batch ${BATCH}`, [
    { label: "raw: insert + 2 updates, a commit each", perSec: raw },
    { label: `raw: group commit, ${BATCH} tasks per commit`, perSec: group },
    {
      label: "store chain: startAttempt + finishTasks",
      perSec: chain,
      note: ratio(chain, raw, 0.5),
    },
    {
      label: "store chain, run per task: create+start+finish",
      perSec: chain1,
      note: ratio(chain1, raw, 0.5),
    },
    {
      label: `store fan-out: finishes in batches of ${BATCH}`,
      perSec: fan,
      note: ratio(fan, group, 0.3),
    },
    {
      label: "engine chain: no-op tasks, each after the last",
      perSec: eChain,
      note: ratio(eChain, raw, 0.5),
    },
    {
      label: "engine fan-out: independent no-op tasks",
      perSec: eFan,
      note: ratio(eFan, group, 0.3),
    },
  ]);
}

// ---------------------------------------------------------------- Redis

async function benchRedis(url: string): Promise<void> {
  const { createClient } = await import("redis");
  const prefix = `gleitzeit-bench:${crypto.randomUUID()}:`;
  const client = createClient({ url, socket: { connectTimeout: 3000, reconnectStrategy: false } });
  client.on("error", () => {});
  let store: RedisStore | undefined;
  try {
    await client.connect();
    store = await RedisStore.connect({ url, prefix });
  } catch (e) {
    console.log(`\nRedis at ${url}: not benchmarked: ${e instanceof Error ? e.message : e}`);
    return;
  }
  try {
    const rawRun = async (n: number, batch: number) => {
      const t0 = performance.now();
      for (let i = 0; i < n; i += batch) {
        const ids = Array.from({ length: Math.min(batch, n - i) }, () => newId("task"));
        const key = (id: string) => `${prefix}raw:${id}`;
        if (batch === 1) {
          const id = ids[0]!;
          await client.hSet(key(id), {
            id,
            state: "queued",
            attempts: "0",
            createdAt: `${Date.now()}`,
          });
          await client.hSet(key(id), {
            state: "running",
            attempts: "1",
            startedAt: `${Date.now()}`,
          });
          await client.hSet(key(id), {
            state: "completed",
            finishedAt: `${Date.now()}`,
            result: JSON.stringify(RESULT),
          });
        } else {
          const m = client.multi();
          for (const id of ids) {
            m.hSet(key(id), { id, state: "queued", attempts: "0", createdAt: `${Date.now()}` });
          }
          for (const id of ids) {
            m.hSet(key(id), { state: "running", attempts: "1", startedAt: `${Date.now()}` });
          }
          for (const id of ids) {
            m.hSet(key(id), {
              state: "completed",
              finishedAt: `${Date.now()}`,
              result: JSON.stringify(RESULT),
            });
          }
          await m.exec();
        }
      }
      return rate(n, performance.now() - t0);
    };
    const n = Math.min(N, args.redisTasks);
    await rawRun(200, 1);
    await storeChain(store, 200);
    const s = store;
    const [raw, group, chain, chain1, fan, eChain, eFan] = await rounds([
      () => rawRun(n, 1),
      () => rawRun(n, BATCH),
      () => storeChain(s, n),
      () => storeChainRunPerTask(s, n),
      () => storeFanOut(s, n, BATCH),
      () => engineRun(s, n, true),
      () => engineRun(s, n, false),
    ]) as [number[], number[], number[], number[], number[], number[], number[]];
    const info = await client.info("server");
    const version = /redis_version:(\S+)/.exec(info)?.[1] ?? "?";
    print(`Redis ${version} at ${url}, ${n} tasks, batch ${BATCH}`, [
      { label: "raw: HSET insert + 2 HSET updates, awaited each", perSec: raw },
      { label: `raw: group commit, ${BATCH} tasks per MULTI`, perSec: group },
      {
        label: "store chain: startAttempt + finishTasks",
        perSec: chain,
        note: ratio(chain, raw, 0.5),
      },
      {
        label: "store chain, run per task: create+start+finish",
        perSec: chain1,
        note: ratio(chain1, raw, 0.5),
      },
      {
        label: `store fan-out: finishes in batches of ${BATCH}`,
        perSec: fan,
        note: ratio(fan, group, 0.3),
      },
      {
        label: "engine chain: no-op tasks, each after the last",
        perSec: eChain,
        note: ratio(eChain, raw, 0.5),
      },
      {
        label: "engine fan-out: independent no-op tasks",
        perSec: eFan,
        note: ratio(eFan, group, 0.3),
      },
    ]);
  } finally {
    await store.clear();
    await store.close();
    await client.close();
  }
}

function parseArgs(argv: string[]) {
  const out = {
    tasks: 5000,
    batch: 100,
    reps: 5,
    redisTasks: 3000,
    redisUrl: "redis://127.0.0.1:6379",
    redis: true,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--tasks") out.tasks = Number(argv[++i]);
    else if (a === "--batch") out.batch = Number(argv[++i]);
    else if (a === "--reps") out.reps = Math.max(1, Number(argv[++i]));
    else if (a === "--redis-tasks") out.redisTasks = Number(argv[++i]);
    else if (a === "--redis-url") out.redisUrl = argv[++i]!;
    else if (a === "--no-redis") out.redis = false;
    else {
      console.error(`unknown argument ${a}`);
      Deno.exit(2);
    }
  }
  return out;
}

const dir = await Deno.makeTempDir({ prefix: "gleitzeit-bench-" });
try {
  await benchSqlite(dir);
  if (args.redis) await benchRedis(args.redisUrl);
} finally {
  await Deno.remove(dir, { recursive: true });
}
