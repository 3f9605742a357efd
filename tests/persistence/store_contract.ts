/**
 * The Store contract: one suite, registered once per implementation (memory, SQLite, Redis).
 * Every implementation must pass every test unchanged.
 *
 * @module
 */

import { deepStrictEqual, equal, ok, rejects } from "node:assert/strict";
import { type ErrorData, GleitzeitError } from "../../src/core/errors.ts";
import { newId } from "../../src/core/ids.ts";
import type { RunState } from "../../src/core/states.ts";
import type { TaskSpec, Workflow } from "../../src/core/workflow.ts";
import type { RunRecord, Store, TaskFinish, TaskRecord } from "../../src/persistence/store.ts";

/** A fresh, empty store for one test. */
export interface StoreHandle {
  store: Store;
  /**
   * Another connection to the same data (another SQLite connection on the file, another Redis
   * client on the prefix); absent where there is none (memory).
   */
  connect?: () => Promise<Store>;
  /** Closes what the test opened and removes its data. */
  cleanup: () => Promise<void>;
}

/** Makes a fresh handle per test. */
export type StoreFactory = () => Promise<StoreHandle>;

/** Registers the contract tests for one implementation, named `store contract (<name>): ...`. */
export function storeContract(name: string, factory: StoreFactory): void {
  const test = (title: string, fn: (h: StoreHandle) => Promise<void>) =>
    Deno.test(`store contract (${name}): ${title}`, async () => {
      const h = await factory();
      try {
        await fn(h);
      } finally {
        await h.cleanup();
      }
    });

  test("createRun then getRun returns the run as given", async ({ store }) => {
    const { run, tasks } = fixture({ name: "ingest", tasks: ["a", "b"] });
    run.params = { topic: "Zürich 🚀", n: 3, nested: { list: [1, "x", null, { y: true }] } };
    await store.createRun(run, tasks);
    deepStrictEqual(await store.getRun(run.id), run);
    equal(await store.getRun("run_missing"), undefined);
    equal(await store.getTask("task_missing"), undefined);
    equal(await store.getRunTask(run.id, "nope"), undefined);
  });

  test("createRun refuses an existing id and leaves the run as it was", async ({ store }) => {
    const { run, tasks } = fixture({ name: "one", tasks: ["a"] });
    await store.createRun(run, tasks);
    const again = fixture({ id: run.id, name: "two", tasks: ["x", "y"] });
    await rejectsWith(store.createRun(again.run, again.tasks), "PERSISTENCE_ERROR");
    deepStrictEqual(await store.getRun(run.id), run);
    deepStrictEqual(await store.listTasks({ runId: run.id }), tasks);
  });

  test("tasks come back in workflow order, by global id and by run + task id", async ({ store }) => {
    const ids = ["zeta", "alpha", "mu", "beta", "omega", "gamma"];
    const { run, tasks } = fixture({ tasks: ids });
    await store.createRun(run, tasks);
    const listed = await store.listTasks({ runId: run.id });
    deepStrictEqual(listed.map((t) => t.taskId), ids);
    deepStrictEqual(listed, tasks);
    for (const t of tasks) {
      deepStrictEqual(await store.getTask(t.id), t);
      deepStrictEqual(await store.getRunTask(run.id, t.taskId), t);
    }
    deepStrictEqual(await store.listTasks({ runId: run.id, limit: 2 }), tasks.slice(0, 2));
  });

  test("listRuns: newest first, ties by id, limit and filters", async ({ store }) => {
    const base = 1_700_000_000_000;
    const specs: [string, number, RunState][] = [
      ["Daily Report", base + 1, "completed"],
      ["daily-report", base + 2, "failed"],
      ["ÄPFEL zählen", base + 3, "running"],
      ["Daily Report", base + 3, "completed"],
      ["other", base + 5, "pending"],
      ["Daily Report", base + 4, "failed"],
    ];
    const runs: RunRecord[] = [];
    for (const [name, createdAt, state] of specs) {
      const { run, tasks } = fixture({ name, createdAt, state, tasks: ["t"] });
      runs.push(run);
      await store.createRun(run, tasks);
    }
    const expected = [...runs].sort((a, b) =>
      b.createdAt - a.createdAt || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0)
    );
    const ids = (rs: RunRecord[]) => rs.map((r) => r.id);
    deepStrictEqual(await store.listRuns(), expected);
    deepStrictEqual(ids(await store.listRuns({ limit: 3 })), ids(expected.slice(0, 3)));
    deepStrictEqual(await store.listRuns({ limit: 0 }), []);
    deepStrictEqual(
      ids(await store.listRuns({ state: "completed" })),
      ids(expected.filter((r) => r.state === "completed")),
    );
    deepStrictEqual(
      ids(await store.listRuns({ workflowName: "Daily Report" })),
      ids(expected.filter((r) => r.workflowName === "Daily Report")),
    );
    deepStrictEqual(
      ids(await store.listRuns({ workflowName: "Daily Report", state: "failed", limit: 5 })),
      ids(expected.filter((r) => r.workflowName === "Daily Report" && r.state === "failed")),
    );
    deepStrictEqual(
      ids(await store.listRuns({ nameFilter: "DAILY" })),
      ids(expected.filter((r) => r.workflowName.toLowerCase().includes("daily"))),
    );
    deepStrictEqual(
      ids(await store.listRuns({ nameFilter: "äpfel" })),
      ids(expected.filter((r) => r.workflowName.startsWith("ÄPFEL"))),
    );
    deepStrictEqual(
      ids(await store.listRuns({ nameFilter: "report", limit: 1 })),
      ids(expected.filter((r) => r.workflowName.toLowerCase().includes("report")).slice(0, 1)),
    );
    deepStrictEqual(await store.listRuns({ workflowName: "nothing" }), []);
  });

  test("updateRun patches fields, clears with undefined, and moves the run's state", async ({ store }) => {
    const { run, tasks } = fixture({ tasks: ["a"] });
    await store.createRun(run, tasks);
    const error = errorData("WORKFLOW_FAILED", "task a failed");
    await store.updateRun(run.id, {
      state: "running",
      startedAt: run.createdAt + 1,
      owner: "host:1:abc",
      heartbeatAt: run.createdAt + 2,
    });
    await store.updateRun(run.id, { state: "failed", finishedAt: run.createdAt + 3, error });
    deepStrictEqual(await store.getRun(run.id), {
      ...run,
      state: "failed",
      startedAt: run.createdAt + 1,
      finishedAt: run.createdAt + 3,
      owner: "host:1:abc",
      heartbeatAt: run.createdAt + 2,
      error,
    });
    await store.updateRun(run.id, { owner: undefined, heartbeatAt: undefined });
    const got = await store.getRun(run.id);
    ok(got && !("owner" in got) && !("heartbeatAt" in got), "owner and heartbeat cleared");
    deepStrictEqual((await store.listRuns({ state: "failed" })).map((r) => r.id), [run.id]);
    deepStrictEqual(await store.listRuns({ state: "pending" }), []);
    await rejectsWith(store.updateRun("run_missing", { state: "running" }), "RUN_NOT_FOUND");
  });

  test("startAttempt claims a task and records the attempt", async ({ store }) => {
    const { run, tasks } = fixture({ tasks: ["a", "b"] });
    await store.createRun(run, tasks);
    const at = run.createdAt + 10;
    await store.startAttempt(run.id, "a", 1, at, "host:7:n1");
    deepStrictEqual(await store.getRunTask(run.id, "a"), {
      ...tasks[0],
      state: "running",
      attempts: 1,
      startedAt: at,
    });
    deepStrictEqual(await store.getRunTask(run.id, "b"), tasks[1]);
    deepStrictEqual(await store.listAttempts(run.id, "a"), [
      {
        runId: run.id,
        taskId: "a",
        attempt: 1,
        state: "running",
        startedAt: at,
        owner: "host:7:n1",
      },
    ]);
    await store.startAttempt(run.id, "b", 1, at);
    deepStrictEqual(await store.listAttempts(run.id, "b"), [
      { runId: run.id, taskId: "b", attempt: 1, state: "running", startedAt: at },
    ]);
    deepStrictEqual(await store.listAttempts(run.id, "nope"), []);
    await rejectsWith(store.startAttempt(run.id, "nope", 1, at), "TASK_NOT_FOUND");
    await rejectsWith(store.startAttempt("run_missing", "a", 1, at), "TASK_NOT_FOUND");
  });

  test("finishTasks: completed with a result, with a null result, and without one", async ({ store }) => {
    const { run, tasks } = fixture({ tasks: ["a", "b", "c"] });
    await store.createRun(run, tasks);
    const t0 = run.createdAt;
    for (const id of ["a", "b", "c"]) await store.startAttempt(run.id, id, 1, t0 + 1);
    await store.finishTasks([
      { runId: run.id, taskId: "a", state: "completed", at: t0 + 2, attempt: 1, result: { v: 1 } },
      { runId: run.id, taskId: "b", state: "completed", at: t0 + 3, attempt: 1, result: null },
      { runId: run.id, taskId: "c", state: "completed", at: t0 + 4, attempt: 1 },
    ]);
    const [a, b, c] = await store.listTasks({ runId: run.id });
    deepStrictEqual(a, {
      ...tasks[0],
      state: "completed",
      attempts: 1,
      startedAt: t0 + 1,
      finishedAt: t0 + 2,
      result: { v: 1 },
    });
    ok(b && "result" in b && b.result === null, "a null result is kept as null");
    equal(b?.finishedAt, t0 + 3);
    ok(c && !("result" in c), "no result key when none was given");
    deepStrictEqual(await store.listAttempts(run.id, "b"), [
      {
        runId: run.id,
        taskId: "b",
        attempt: 1,
        state: "completed",
        startedAt: t0 + 1,
        finishedAt: t0 + 3,
      },
    ]);
  });

  test("finishTasks: failure, retry_pending, a new attempt, then success", async ({ store }) => {
    const { run, tasks } = fixture({ tasks: ["flaky"] });
    await store.createRun(run, tasks);
    const t0 = run.createdAt;
    const err1 = errorData("PROVIDER_TIMEOUT", "timed out after 50 ms", { timeoutMs: 50 });
    await store.startAttempt(run.id, "flaky", 1, t0 + 1, "w1");
    await store.finishTasks([
      {
        runId: run.id,
        taskId: "flaky",
        state: "retry_pending",
        at: t0 + 2,
        attempt: 1,
        error: err1,
      },
    ]);
    let t = await store.getRunTask(run.id, "flaky");
    equal(t?.state, "retry_pending");
    deepStrictEqual(t?.error, err1);
    ok(t && !("finishedAt" in t), "retry_pending does not finish the task");

    await store.startAttempt(run.id, "flaky", 2, t0 + 3, "w2");
    t = await store.getRunTask(run.id, "flaky");
    equal(t?.state, "running");
    equal(t?.attempts, 2);
    equal(t?.startedAt, t0 + 3);
    ok(t && !("error" in t), "a new attempt clears the previous error");

    await store.finishTasks([
      { runId: run.id, taskId: "flaky", state: "completed", at: t0 + 4, attempt: 2, result: "ok" },
    ]);
    deepStrictEqual(await store.getRunTask(run.id, "flaky"), {
      ...tasks[0],
      state: "completed",
      attempts: 2,
      startedAt: t0 + 3,
      finishedAt: t0 + 4,
      result: "ok",
    });
    deepStrictEqual(await store.listAttempts(run.id, "flaky"), [
      {
        runId: run.id,
        taskId: "flaky",
        attempt: 1,
        state: "failed",
        startedAt: t0 + 1,
        finishedAt: t0 + 2,
        owner: "w1",
        error: err1,
      },
      {
        runId: run.id,
        taskId: "flaky",
        attempt: 2,
        state: "completed",
        startedAt: t0 + 3,
        finishedAt: t0 + 4,
        owner: "w2",
      },
    ]);
  });

  test("finishTasks: failed, skipped and cancelled with reasons; queued again", async ({ store }) => {
    const { run, tasks } = fixture({ tasks: ["boom", "after", "slow", "requeued"] });
    await store.createRun(run, tasks);
    const t0 = run.createdAt;
    const err = errorData("TASK_EXECUTION_FAILED", "ZeroDivisionError: division by zero");
    await store.startAttempt(run.id, "boom", 1, t0 + 1);
    await store.startAttempt(run.id, "slow", 1, t0 + 1);
    await store.startAttempt(run.id, "requeued", 1, t0 + 1);
    await store.finishTasks([
      { runId: run.id, taskId: "boom", state: "failed", at: t0 + 2, attempt: 1, error: err },
      {
        runId: run.id,
        taskId: "after",
        state: "skipped",
        at: t0 + 2,
        reason: "dependency boom failed",
      },
      {
        runId: run.id,
        taskId: "slow",
        state: "cancelled",
        at: t0 + 2,
        attempt: 1,
        reason: "fail_fast",
      },
      {
        runId: run.id,
        taskId: "requeued",
        state: "queued",
        at: t0 + 2,
        attempt: 1,
        reason: "resumed",
      },
    ]);
    const byId = new Map((await store.listTasks({ runId: run.id })).map((t) => [t.taskId, t]));
    deepStrictEqual(byId.get("boom"), {
      ...tasks[0],
      state: "failed",
      attempts: 1,
      startedAt: t0 + 1,
      finishedAt: t0 + 2,
      error: err,
    });
    deepStrictEqual(byId.get("after"), {
      ...tasks[1],
      state: "skipped",
      finishedAt: t0 + 2,
      reason: "dependency boom failed",
    });
    equal(byId.get("slow")?.state, "cancelled");
    equal(byId.get("slow")?.reason, "fail_fast");
    equal(byId.get("requeued")?.state, "queued");
    ok(!("finishedAt" in byId.get("requeued")!), "queued again is not finished");
    deepStrictEqual(await store.listAttempts(run.id, "after"), []);
    equal((await store.listAttempts(run.id, "boom"))[0]?.state, "failed");
    deepStrictEqual((await store.listAttempts(run.id, "boom"))[0]?.error, err);
    equal((await store.listAttempts(run.id, "slow"))[0]?.state, "cancelled");
    equal((await store.listAttempts(run.id, "requeued"))[0]?.state, "cancelled");
    // started again (a resumed run): the end of the attempt before is not the task's any more
    await store.startAttempt(run.id, "boom", 2, t0 + 3);
    const again = (await store.listTasks({ runId: run.id })).find((t) => t.taskId === "boom")!;
    deepStrictEqual([again.state, again.startedAt, "finishedAt" in again, "error" in again], [
      "running",
      t0 + 3,
      false,
      false,
    ]);
  });

  test("finishTasks is all or nothing: an unknown task rejects the whole batch", async ({ store }) => {
    const { run, tasks } = fixture({ tasks: ["a", "b"] });
    await store.createRun(run, tasks);
    await store.startAttempt(run.id, "a", 1, run.createdAt + 1);
    await rejectsWith(
      store.finishTasks([
        {
          runId: run.id,
          taskId: "a",
          state: "completed",
          at: run.createdAt + 2,
          attempt: 1,
          result: 1,
        },
        { runId: run.id, taskId: "ghost", state: "completed", at: run.createdAt + 2, result: 2 },
      ]),
      "TASK_NOT_FOUND",
    );
    const a = await store.getRunTask(run.id, "a");
    equal(a?.state, "running");
    ok(a && !("result" in a), "nothing of the failed batch was written");
    equal((await store.listAttempts(run.id, "a"))[0]?.state, "running");
    await store.finishTasks([]);
  });

  test("starting the same attempt number again replaces that attempt", async ({ store }) => {
    const { run, tasks } = fixture({ tasks: ["a"] });
    await store.createRun(run, tasks);
    await store.startAttempt(run.id, "a", 1, run.createdAt + 1, "old");
    await store.startAttempt(run.id, "a", 1, run.createdAt + 5, "new");
    deepStrictEqual(await store.listAttempts(run.id, "a"), [
      {
        runId: run.id,
        taskId: "a",
        attempt: 1,
        state: "running",
        startedAt: run.createdAt + 5,
        owner: "new",
      },
    ]);
  });

  test("claimRun: free, own, held, stale and finished runs", async ({ store }) => {
    const { run, tasks } = fixture({ tasks: ["a"] });
    await store.createRun(run, tasks);
    const t0 = run.createdAt;
    equal(await store.claimRun(run.id, "A", t0 + 100, t0), true);
    let got = await store.getRun(run.id);
    equal(got?.owner, "A");
    equal(got?.heartbeatAt, t0 + 100);
    equal(await store.claimRun(run.id, "A", t0 + 200, t0), true, "the owner may claim again");
    equal((await store.getRun(run.id))?.heartbeatAt, t0 + 200);
    equal(await store.claimRun(run.id, "B", t0 + 210, t0 + 150), false, "fresh heartbeat holds");
    got = await store.getRun(run.id);
    equal(got?.owner, "A");
    equal(got?.heartbeatAt, t0 + 200);
    equal(await store.claimRun(run.id, "B", t0 + 400, t0 + 300), true, "a stale owner loses");
    got = await store.getRun(run.id);
    equal(got?.owner, "B");
    equal(got?.heartbeatAt, t0 + 400);
    await store.updateRun(run.id, { state: "completed" });
    equal(await store.claimRun(run.id, "C", t0 + 410, 0), true, "a finished run can be taken");
    equal((await store.getRun(run.id))?.owner, "C");
    await rejectsWith(store.claimRun("run_missing", "A", t0, t0), "RUN_NOT_FOUND");
  });

  test("a run keeps its owner's lease: created, claimed with one, claimed without, patched", async ({ store }) => {
    const { run, tasks } = fixture({ tasks: ["a"] });
    const t0 = run.createdAt;
    await store.createRun({ ...run, owner: "A", heartbeatAt: t0, leaseMs: 6000 }, tasks);
    equal((await store.getRun(run.id))?.leaseMs, 6000);
    equal(await store.claimRun(run.id, "B", t0 + 10, t0 + 5, 30_000), true);
    let got = await store.getRun(run.id);
    equal(got?.owner, "B");
    equal(got?.leaseMs, 30_000);
    equal((await store.listRuns()).find((r) => r.id === run.id)?.leaseMs, 30_000);
    equal(await store.claimRun(run.id, "C", t0 + 20, t0 + 15), true);
    got = await store.getRun(run.id);
    equal(got?.owner, "C");
    equal(got?.leaseMs, undefined, "an owner that declares none leaves none of the last one's");
    await store.updateRun(run.id, { leaseMs: 1500 });
    equal((await store.getRun(run.id))?.leaseMs, 1500);
    await store.updateRun(run.id, { leaseMs: undefined });
    equal((await store.getRun(run.id))?.leaseMs, undefined);
  });

  test("writes for an owner (ifOwner) happen only while the run is that owner's", async ({ store }) => {
    const { run, tasks } = fixture({ tasks: ["a", "b"] });
    const t0 = run.createdAt;
    await store.createRun(run, tasks);
    equal(await store.claimRun(run.id, "A", t0 + 1, t0), true);
    await store.updateRun(run.id, { heartbeatAt: t0 + 2 }, "A");
    await store.startAttempt(run.id, "a", 1, t0 + 3, "A", "A");
    await store.finishTasks([{
      runId: run.id,
      taskId: "a",
      state: "completed",
      at: t0 + 4,
      attempt: 1,
      result: 1,
      ifOwner: "A",
    }]);
    equal((await store.getRunTask(run.id, "a"))?.state, "completed");
    // B takes the run over (A's heartbeat went stale); A's writes now change nothing
    equal(await store.claimRun(run.id, "B", t0 + 10, t0 + 5), true);
    const lost = (e: unknown) => {
      equal((e as GleitzeitError).code, "LEASE_EXPIRED");
      ok((e as Error).message.includes("process B took it over"), (e as Error).message);
      return true;
    };
    await rejects(store.updateRun(run.id, { state: "completed", heartbeatAt: t0 + 11 }, "A"), lost);
    await rejects(store.startAttempt(run.id, "b", 1, t0 + 12, "A", "A"), lost);
    await rejects(
      store.finishTasks([
        { runId: run.id, taskId: "b", state: "failed", at: t0 + 13, ifOwner: "A" },
      ]),
      lost,
    );
    const got = await store.getRun(run.id);
    equal(got?.state, run.state);
    equal(got?.heartbeatAt, t0 + 10);
    equal((await store.getRunTask(run.id, "b"))?.state, "queued");
    // the new owner's writes go through; unguarded ones (a cancel) too
    await store.startAttempt(run.id, "b", 1, t0 + 14, "B", "B");
    await store.updateRun(run.id, { owner: undefined, state: "cancelled" });
    await rejects(store.updateRun(run.id, { heartbeatAt: t0 + 15 }, "B"), (e: unknown) => {
      equal((e as GleitzeitError).code, "LEASE_EXPIRED");
      return true;
    });
    await rejectsWith(store.updateRun("run_missing", { heartbeatAt: 1 }, "A"), "RUN_NOT_FOUND");
  });

  test("a lost owner's finish fails alone when written with others' in the same tick", async ({ store }) => {
    const one = fixture({ tasks: ["a"] });
    const two = fixture({ tasks: ["a"] });
    for (const r of [one, two]) {
      await store.createRun(r.run, r.tasks);
      equal(await store.claimRun(r.run.id, "A", r.run.createdAt + 1, 0), true);
      await store.startAttempt(r.run.id, "a", 1, r.run.createdAt + 2, "A", "A");
    }
    equal(
      await store.claimRun(two.run.id, "B", two.run.createdAt + 10, two.run.createdAt + 5),
      true,
    );
    const [kept, refused] = await Promise.allSettled([
      store.finishTasks([{
        runId: one.run.id,
        taskId: "a",
        state: "completed",
        at: 5,
        attempt: 1,
        result: 1,
        ifOwner: "A",
      }]),
      store.finishTasks([{
        runId: two.run.id,
        taskId: "a",
        state: "completed",
        at: 5,
        attempt: 1,
        result: 2,
        ifOwner: "A",
      }]),
    ]);
    equal(kept.status, "fulfilled");
    equal(refused.status, "rejected");
    equal(((refused as PromiseRejectedResult).reason as GleitzeitError).code, "LEASE_EXPIRED");
    equal((await store.getRunTask(one.run.id, "a"))?.result, 1);
    equal((await store.getRunTask(two.run.id, "a"))?.state, "running");
  });

  test("an ended attempt may be given its own state (interrupted: its process died)", async ({ store }) => {
    const { run, tasks } = fixture({ tasks: ["a"] });
    await store.createRun(run, tasks);
    await store.startAttempt(run.id, "a", 1, run.createdAt + 1);
    await store.finishTasks([{
      runId: run.id,
      taskId: "a",
      state: "queued",
      at: run.createdAt + 2,
      attempt: 1,
      attemptState: "interrupted",
    }]);
    const attempts = await store.listAttempts(run.id, "a");
    deepStrictEqual(attempts.map((x) => [x.attempt, x.state, x.finishedAt]), [
      [1, "interrupted", run.createdAt + 2],
    ]);
    equal((await store.getRunTask(run.id, "a"))?.state, "queued");
  });

  test("claimRun is atomic: of many simultaneous claimers exactly one wins", async (h) => {
    const { run, tasks } = fixture({ tasks: ["a"] });
    await h.store.createRun(run, tasks);
    const others = h.connect ? await Promise.all([h.connect(), h.connect()]) : [];
    try {
      const stores = [h.store, ...others];
      const owners = Array.from({ length: 24 }, (_, i) => `owner-${i}`);
      const won = await Promise.all(
        owners.map((o, i) => stores[i % stores.length]!.claimRun(run.id, o, run.createdAt + 1, 0)),
      );
      equal(won.filter(Boolean).length, 1);
      equal((await h.store.getRun(run.id))?.owner, owners[won.indexOf(true)]);
    } finally {
      for (const s of others) await s.close();
    }
  });

  test("listTasks across runs: newest run first, workflow order, filters", async ({ store }) => {
    const t0 = 1_710_000_000_000;
    const r1 = fixture({ name: "alpha", createdAt: t0, tasks: ["fetch", "Parse", "store"] });
    const r2 = fixture({ name: "beta", createdAt: t0 + 1, tasks: ["fetch", "summarise"] });
    const r3 = fixture({ name: "alpha", createdAt: t0 + 2, tasks: ["x-fetch-y", "zz"] });
    for (const r of [r1, r2, r3]) await store.createRun(r.run, r.tasks);
    await store.startAttempt(r1.run.id, "Parse", 1, t0 + 5);
    await store.finishTasks([
      {
        runId: r1.run.id,
        taskId: "Parse",
        state: "failed",
        at: t0 + 6,
        attempt: 1,
        error: errorData("TASK_EXECUTION_FAILED", "bad"),
      },
      { runId: r3.run.id, taskId: "zz", state: "skipped", at: t0 + 6, reason: "x" },
    ]);
    const key = (ts: TaskRecord[]) => ts.map((t) => `${t.runId}/${t.taskId}`);
    const all = [...r3.tasks, ...r2.tasks, ...r1.tasks].map((t) => `${t.runId}/${t.taskId}`);
    deepStrictEqual(key(await store.listTasks()), all);
    deepStrictEqual(key(await store.listTasks({ limit: 3 })), all.slice(0, 3));
    deepStrictEqual(key(await store.listTasks({ workflowName: "alpha" })), [
      `${r3.run.id}/x-fetch-y`,
      `${r3.run.id}/zz`,
      `${r1.run.id}/fetch`,
      `${r1.run.id}/Parse`,
      `${r1.run.id}/store`,
    ]);
    deepStrictEqual(key(await store.listTasks({ nameFilter: "FETCH" })), [
      `${r3.run.id}/x-fetch-y`,
      `${r2.run.id}/fetch`,
      `${r1.run.id}/fetch`,
    ]);
    deepStrictEqual(key(await store.listTasks({ nameFilter: "fetch", limit: 2 })), [
      `${r3.run.id}/x-fetch-y`,
      `${r2.run.id}/fetch`,
    ]);
    deepStrictEqual(key(await store.listTasks({ state: "failed" })), [`${r1.run.id}/Parse`]);
    deepStrictEqual(key(await store.listTasks({ state: "skipped", workflowName: "beta" })), []);
    deepStrictEqual(key(await store.listTasks({ state: "queued", workflowName: "alpha" })), [
      `${r3.run.id}/x-fetch-y`,
      `${r1.run.id}/fetch`,
      `${r1.run.id}/store`,
    ]);
    deepStrictEqual(key(await store.listTasks({ runId: r1.run.id, state: "queued" })), [
      `${r1.run.id}/fetch`,
      `${r1.run.id}/store`,
    ]);
    deepStrictEqual(key(await store.listTasks({ runId: r2.run.id, nameFilter: "SUM" })), [
      `${r2.run.id}/summarise`,
    ]);
    deepStrictEqual(await store.listTasks({ runId: "run_missing" }), []);
  });

  test("stats counts runs and tasks by state", async ({ store }) => {
    const empty = await store.stats();
    equal(empty.backend, store.backend);
    deepStrictEqual([empty.totalRuns, empty.totalTasks], [0, 0]);
    const a = fixture({ tasks: ["x", "y", "z"] });
    const b = fixture({ tasks: ["x"], state: "completed" });
    await store.createRun(a.run, a.tasks);
    await store.createRun(b.run, b.tasks);
    await store.startAttempt(a.run.id, "x", 1, 1);
    await store.finishTasks([
      { runId: a.run.id, taskId: "x", state: "completed", at: 2, attempt: 1, result: 1 },
      {
        runId: a.run.id,
        taskId: "y",
        state: "failed",
        at: 2,
        error: errorData("TASK_EXECUTION_FAILED", "no"),
      },
    ]);
    await store.startAttempt(b.run.id, "x", 1, 3);
    await store.updateRun(a.run.id, { state: "running" });
    const s = await store.stats();
    equal(s.backend, store.backend);
    equal(s.totalRuns, 2);
    equal(s.totalTasks, 4);
    deepStrictEqual(dropZeros(s.runs), { running: 1, completed: 1 });
    deepStrictEqual(dropZeros(s.tasks), { completed: 1, failed: 1, queued: 1, running: 1 });
  });

  test("JSON round trips: unicode, nesting, numbers, large results", async ({ store }) => {
    const { run, tasks } = fixture({ name: "ünïcødé 工作流 🚀", tasks: ["u", "n", "big", "err"] });
    run.workflow.description = 'line1\nline2\t"quoted" \\ back\u0000slash';
    run.params = { empty: {}, emptyList: [], deep: nest(40), text: "Ωμέγα \ud83d\ude00 \u2028" };
    await store.createRun(run, tasks);
    deepStrictEqual(await store.getRun(run.id), run);
    deepStrictEqual((await store.listRuns({ nameFilter: "工作" }))[0], run);

    const unicode = { "ключ": "значение", "emoji🔑": ["😀", "👩‍👩‍👧"], lone: "\ud800x", rtl: "שָׁלוֹם" };
    const numbers = {
      ints: [0, -1, 2 ** 53 - 1, -(2 ** 53 - 1)],
      floats: [0.1, -2.5e-300, 1.7976931348623157e308, 5e-324],
      bools: [true, false],
      nulls: [null, { a: null }],
      emptyString: "",
      list: [[], {}, [[{}]]],
    };
    const big = {
      text: "x".repeat(2_000_000) + "ü",
      rows: Array.from({ length: 20_000 }, (_, i) => ({ i, s: `row ${i}`, f: i / 7 })),
    };
    const err = errorData("TASK_EXECUTION_FAILED", "Traceback …\n  ValueError: ✗", {
      stderr: "line 1\nline 2",
      exitCode: 1,
      nested: { list: [1, { deep: [] }], emptyObj: {} },
    });
    for (const id of ["u", "n", "big", "err"]) await store.startAttempt(run.id, id, 1, 1);
    await store.finishTasks([
      { runId: run.id, taskId: "u", state: "completed", at: 2, attempt: 1, result: unicode },
      { runId: run.id, taskId: "n", state: "completed", at: 2, attempt: 1, result: numbers },
      { runId: run.id, taskId: "big", state: "completed", at: 2, attempt: 1, result: big },
      {
        runId: run.id,
        taskId: "err",
        state: "failed",
        at: 2,
        attempt: 1,
        error: err,
        reason: "ünïcødé ✓",
      },
    ]);
    deepStrictEqual((await store.getRunTask(run.id, "u"))?.result, unicode);
    deepStrictEqual((await store.getRunTask(run.id, "n"))?.result, numbers);
    deepStrictEqual((await store.getTask(tasks[2]!.id))?.result, big);
    const e = await store.getRunTask(run.id, "err");
    deepStrictEqual(e?.error, err);
    equal(e?.reason, "ünïcødé ✓");
    deepStrictEqual((await store.listAttempts(run.id, "err"))[0]?.error, err);
  });

  test("concurrent finishTasks batches all land", async (h) => {
    const n = 240;
    const ids = Array.from({ length: n }, (_, i) => `t${String(i).padStart(3, "0")}`);
    const { run, tasks } = fixture({ tasks: ids });
    await h.store.createRun(run, tasks);
    const others = h.connect ? [await h.connect()] : [];
    try {
      const stores = [h.store, ...others];
      await Promise.all(
        ids.map((id, i) => stores[i % stores.length]!.startAttempt(run.id, id, 1, 1)),
      );
      const batches: TaskFinish[][] = [];
      for (let i = 0; i < n; i += 8) {
        batches.push(
          ids.slice(i, i + 8).map((id, j) => ({
            runId: run.id,
            taskId: id,
            state: (i + j) % 5 === 0 ? "failed" : "completed",
            at: 2,
            attempt: 1,
            ...((i + j) % 5 === 0
              ? { error: errorData("TASK_EXECUTION_FAILED", `t${i + j}`) }
              : { result: { i: i + j } }),
          })),
        );
      }
      await Promise.all(batches.map((b, i) => stores[i % stores.length]!.finishTasks(b)));
      const listed = await h.store.listTasks({ runId: run.id });
      deepStrictEqual(listed.map((t) => t.taskId), ids);
      listed.forEach((t, i) => {
        if (i % 5 === 0) {
          equal(t.state, "failed");
          equal(t.error?.message, `t${i}`);
        } else {
          equal(t.state, "completed");
          deepStrictEqual(t.result, { i });
        }
      });
      const s = await h.store.stats();
      deepStrictEqual(dropZeros(s.tasks), { completed: n - n / 5, failed: n / 5 });
    } finally {
      for (const s of others) await s.close();
    }
  });

  test("concurrent writes: one that fails rejects alone, the others land", async ({ store }) => {
    const { run, tasks } = fixture({ tasks: ["a", "b", "c"] });
    await store.createRun(run, tasks);
    const dup = fixture({ id: run.id, tasks: ["z"] });
    const other = fixture({ tasks: ["q"] });
    const results = await Promise.allSettled([
      store.startAttempt(run.id, "a", 1, 1),
      store.startAttempt(run.id, "ghost", 1, 1),
      store.createRun(dup.run, dup.tasks),
      store.finishTasks([
        { runId: run.id, taskId: "b", state: "skipped", at: 2, reason: "r" },
        { runId: run.id, taskId: "ghost", state: "skipped", at: 2 },
      ]),
      store.createRun(other.run, other.tasks),
      store.finishTasks([{ runId: run.id, taskId: "c", state: "skipped", at: 2, reason: "r" }]),
      store.updateRun(run.id, { state: "running" }),
    ]);
    deepStrictEqual(results.map((r) => r.status), [
      "fulfilled",
      "rejected",
      "rejected",
      "rejected",
      "fulfilled",
      "fulfilled",
      "fulfilled",
    ]);
    const codes = results.flatMap((r) =>
      r.status === "rejected" ? [(r.reason as GleitzeitError).code] : []
    );
    deepStrictEqual(codes, ["TASK_NOT_FOUND", "PERSISTENCE_ERROR", "TASK_NOT_FOUND"]);
    const byId = new Map((await store.listTasks({ runId: run.id })).map((t) => [t.taskId, t]));
    deepStrictEqual([...byId.keys()], ["a", "b", "c"]);
    equal(byId.get("a")?.state, "running");
    equal(byId.get("b")?.state, "queued", "the failed batch left b alone");
    equal(byId.get("c")?.state, "skipped");
    equal((await store.getRun(run.id))?.state, "running");
    deepStrictEqual(await store.getRun(other.run.id), other.run);
  });

  test("a run of 5000 tasks, claimed together and finished in one batch", async ({ store }) => {
    const ids = Array.from({ length: 5000 }, (_, i) => `task-${i}`);
    const { run, tasks } = fixture({ tasks: ids });
    await store.createRun(run, tasks);
    await Promise.all(ids.map((id) => store.startAttempt(run.id, id, 1, 1, "w")));
    await store.finishTasks(ids.map((taskId, i) => ({
      runId: run.id,
      taskId,
      state: "completed" as const,
      at: 2,
      attempt: 1,
      result: { i },
    })));
    const listed = await store.listTasks({ runId: run.id });
    equal(listed.length, 5000);
    deepStrictEqual(listed.map((t) => t.taskId), ids);
    ok(listed.every((t, i) => t.state === "completed" && (t.result as { i: number }).i === i));
    deepStrictEqual(await store.getTask(tasks[4321]!.id), {
      ...tasks[4321],
      state: "completed",
      attempts: 1,
      startedAt: 1,
      finishedAt: 2,
      result: { i: 4321 },
    });
    equal((await store.listAttempts(run.id, "task-4999"))[0]?.state, "completed");
    equal((await store.stats()).tasks.completed, 5000);
  });

  test("what one connection writes, another reads; it survives closing", async (h) => {
    if (!h.connect) {
      equal(h.store.backend, "memory", "only the memory store has no second connection");
      return;
    }
    const { run, tasks } = fixture({ tasks: ["a"] });
    await h.store.createRun(run, tasks);
    await h.store.startAttempt(run.id, "a", 1, 5);
    await h.store.finishTasks([
      { runId: run.id, taskId: "a", state: "completed", at: 6, attempt: 1, result: [1, 2] },
    ]);
    await h.store.updateRun(run.id, { state: "completed", finishedAt: 7 });
    await h.store.close();
    const other = await h.connect();
    try {
      deepStrictEqual(await other.getRun(run.id), { ...run, state: "completed", finishedAt: 7 });
      deepStrictEqual((await other.getTask(tasks[0]!.id))?.result, [1, 2]);
      equal((await other.stats()).totalTasks, 1);
    } finally {
      await other.close();
    }
  });
}

/** A run and its tasks, as the engine would create them. */
export function fixture(options: {
  id?: string;
  name?: string;
  createdAt?: number;
  state?: RunState;
  tasks: string[];
}): { run: RunRecord; tasks: TaskRecord[] } {
  const createdAt = options.createdAt ?? Date.now();
  const runId = options.id ?? newId("run", createdAt);
  const specs: TaskSpec[] = options.tasks.map((id, i) => ({
    id,
    name: id,
    protocol: "echo/v1",
    method: "echo/echo",
    params: { message: `\${${options.tasks[i - 1] ?? "input"}.result}` },
    dependencies: i > 0 ? [options.tasks[i - 1]!] : [],
    priority: 50,
    retry: {
      maxAttempts: 3,
      backoff: "exponential",
      baseDelayMs: 10,
      maxDelayMs: 100,
      jitter: true,
    },
    continueOnFailure: false,
  }));
  const workflow: Workflow = {
    name: options.name ?? "contract",
    params: { input: "hello" },
    onFailure: "fail_fast",
    tasks: specs,
  };
  const run: RunRecord = {
    id: runId,
    workflowName: workflow.name,
    workflow,
    params: { input: "hello" },
    state: options.state ?? "pending",
    createdAt,
  };
  const tasks: TaskRecord[] = specs.map((s) => ({
    id: newId("task", createdAt),
    runId,
    taskId: s.id,
    name: s.name,
    protocol: s.protocol,
    method: s.method,
    state: "queued",
    priority: s.priority,
    attempts: 0,
    createdAt,
  }));
  return { run, tasks };
}

function errorData(
  code: ErrorData["code"],
  message: string,
  details?: Record<string, unknown>,
): ErrorData {
  return new GleitzeitError(code, message, details ? { details } : {}).toData();
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  await rejects(p, (e: unknown) => {
    ok(e instanceof GleitzeitError, `expected a GleitzeitError, got ${e}`);
    equal(e.code, code);
    return true;
  });
}

function dropZeros(counts: Record<string, number | undefined>): Record<string, number> {
  return Object.fromEntries(Object.entries(counts).filter(([, n]) => n)) as Record<string, number>;
}

function nest(depth: number): unknown {
  let v: unknown = { leaf: "🍃" };
  for (let i = 0; i < depth; i++) v = { level: i, child: v, list: [v === null ? 0 : i] };
  return v;
}
