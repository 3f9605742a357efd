/**
 * Durability budget (issue 3): on the engine's path a task costs at most two write
 * transactions, its claim (`startAttempt`) and its share of a group-committed `finishTasks`.
 * Runs the real Engine on a real SQLite file and a real Redis, counting commits as the store
 * itself counts them (one per BEGIN IMMEDIATE .. COMMIT, one per MULTI/EXEC or script).
 */

import * as assert from "node:assert/strict";
import { NO_RETRY } from "../../src/core/retry.ts";
import type { TaskSpec, Workflow } from "../../src/core/workflow.ts";
import { Engine } from "../../src/engine/engine.ts";
import type { Dispatcher } from "../../src/engine/run_execution.ts";
import type { RedisStore } from "../../src/persistence/redis_store.ts";
import { SqliteStore } from "../../src/persistence/sqlite_store.ts";
import type { Store } from "../../src/persistence/store.ts";
import { connectTestRedis } from "./redis_helpers.ts";

const WRITES = ["createRun", "updateRun", "startAttempt", "finishTasks", "claimRun"] as const;
type Write = (typeof WRITES)[number];

/** Wraps a store, counting calls of each write method (each must be exactly one commit). */
function counting(store: Store): { store: Store; calls: Record<Write, number> } {
  const calls = Object.fromEntries(WRITES.map((w) => [w, 0])) as Record<Write, number>;
  const wrapped = new Proxy(store, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== "function") return v;
      return (...args: unknown[]) => {
        if ((WRITES as readonly string[]).includes(prop as string)) calls[prop as Write]++;
        return v.apply(target, args);
      };
    },
  });
  return { store: wrapped, calls };
}

const noop: Dispatcher = { call: (_p, _m, params) => Promise.resolve(params) };

function task(id: string, deps: string[]): TaskSpec {
  return {
    id,
    name: id,
    protocol: "noop/v1",
    method: "noop/run",
    params: { id },
    dependencies: deps,
    priority: 50,
    retry: NO_RETRY,
    continueOnFailure: false,
  };
}

const chain = (n: number): Workflow => ({
  name: "chain",
  params: {},
  onFailure: "fail_fast",
  tasks: Array.from({ length: n }, (_, i) => task(`t${i}`, i > 0 ? [`t${i - 1}`] : [])),
});

const fanOut = (n: number): Workflow => ({
  name: "fan-out",
  params: {},
  onFailure: "fail_fast",
  tasks: Array.from({ length: n }, (_, i) => task(`t${i}`, [])),
});

async function measure(raw: Store & { commits: number }, workflow: Workflow) {
  const { store, calls } = counting(raw);
  const engine = new Engine({ dispatcher: noop, store, heartbeatMs: 60_000, maxConcurrency: 64 });
  const before = raw.commits;
  const outcome = await engine.run(workflow);
  const commits = raw.commits - before;
  assert.equal(outcome.state, "completed");
  const n = workflow.tasks.length;
  const shown = `${commits} commits for ${n} tasks: ${JSON.stringify(calls)}`;
  // A write call is at most one commit (the store may merge concurrent ones, never split one).
  assert.ok(commits <= WRITES.reduce((s, w) => s + calls[w], 0), shown);
  assert.equal(calls.startAttempt, n, "one claim per task");
  assert.ok(calls.startAttempt + calls.finishTasks <= 2 * n, shown);
  // The run's own writes (create, claim, start, finish) do not grow with the task count.
  const runLevel = calls.createRun + calls.updateRun + calls.claimRun;
  assert.ok(runLevel <= 6, shown);
  assert.ok(commits <= 2 * n + runLevel, shown);
  for (const t of await raw.listTasks({ runId: outcome.runId })) assert.equal(t.state, "completed");
  return { commits, calls };
}

Deno.test("durability (sqlite): at most 2 commits per task on the engine's path, chain and fan-out", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gleitzeit-dur-" });
  const store = SqliteStore.open(`${dir}/d.db`);
  try {
    const c = await measure(store, chain(40));
    assert.equal(c.calls.finishTasks, 40, "a chain finishes one task per commit");
    const f = await measure(store, fanOut(200));
    // the engine writes each finish as it comes; the store commits same-tick writes together
    assert.ok(f.commits < 40, `a fan-out groups its writes (${f.commits} commits for 200 tasks)`);
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("durability (redis): at most 2 round-trip writes per task on the engine's path", async () => {
  const prefix = `gleitzeit-test:${crypto.randomUUID()}:`;
  const store: RedisStore = await connectTestRedis(prefix);
  try {
    await measure(store, chain(30));
    const f = await measure(store, fanOut(200));
    assert.ok(f.commits < 40, `fan-out grouped: ${f.commits} round-trip writes for 200 tasks`);
  } finally {
    await store.clear();
    await store.close();
  }
});
