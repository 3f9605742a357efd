import { assert, assertEquals, assertExists, assertRejects } from "../assert.ts";
import { FakeClock, sleep } from "../../src/core/clock.ts";
import { type ErrorCode, GleitzeitError, workerLostError } from "../../src/core/errors.ts";
import { NO_RETRY, type RetryPolicy } from "../../src/core/retry.ts";
import type { TaskSpec, Workflow } from "../../src/core/workflow.ts";
import { Engine } from "../../src/engine/engine.ts";
import { lastSignOfLife, pidAlive } from "../../src/engine/liveness.ts";
import type { EngineEvent } from "../../src/engine/events.ts";
import type { Dispatcher } from "../../src/engine/run_execution.ts";
import { MemoryStore } from "../../src/persistence/memory_store.ts";
import { SqliteStore } from "../../src/persistence/sqlite_store.ts";
import type { Store } from "../../src/persistence/store.ts";
import type { CallContext } from "../../src/providers/provider.ts";

type Handler = (params: Record<string, unknown>, ctx: CallContext) => Promise<unknown> | unknown;

/** A dispatcher whose behaviour per method is set by the test; records calls and concurrency. */
class FakeDispatcher implements Dispatcher {
  calls: { method: string; params: Record<string, unknown>; taskId: string; attempt: number }[] =
    [];
  active = 0;
  maxActive = 0;
  handlers = new Map<string, Handler>();

  on(method: string, h: Handler): this {
    this.handlers.set(method, h);
    return this;
  }

  async call(_p: string, method: string, params: Record<string, unknown>, ctx: CallContext) {
    this.calls.push({ method, params, taskId: ctx.taskId, attempt: ctx.attempt });
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    try {
      const h = this.handlers.get(method);
      return h ? await h(params, ctx) : params;
    } finally {
      this.active--;
    }
  }
}

function task(id: string, extra: Partial<TaskSpec> = {}): TaskSpec {
  return {
    id,
    name: id,
    protocol: "test/v1",
    method: "ok",
    params: {},
    dependencies: [],
    priority: 50,
    retry: NO_RETRY,
    continueOnFailure: false,
    ...extra,
  };
}

function wf(tasks: TaskSpec[], extra: Partial<Workflow> = {}): Workflow {
  return { name: "test", params: {}, onFailure: "fail_fast", tasks, ...extra };
}

function setup(options: { clock?: FakeClock; maxConcurrency?: number; store?: Store } = {}) {
  const dispatcher = new FakeDispatcher();
  const store = options.store ?? new MemoryStore();
  const events: EngineEvent[] = [];
  const engine = new Engine({
    dispatcher,
    store,
    heartbeatMs: 60_000,
    random: () => 0.5,
    onEvent: (e) => events.push(e),
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.maxConcurrency ? { maxConcurrency: options.maxConcurrency } : {}),
  });
  return { dispatcher, store, events, engine };
}

const byId = <T extends { taskId: string }>(tasks: T[]) => new Map(tasks.map((t) => [t.taskId, t]));

/** The stored run's state and owner, and its task `t`'s result. */
async function assertStored(
  store: Store,
  runId: string,
  stateAndOwner: [string, string],
  result: unknown,
): Promise<void> {
  const stored = await store.getRun(runId);
  assertEquals([stored?.state, stored?.owner], stateAndOwner);
  assertEquals((await store.getRunTask(runId, "t"))?.result, result);
}

/** A dispatcher whose `work` answers `result` once `finish()` is called. */
function heldWork(result: string): { dispatcher: FakeDispatcher; finish: () => void } {
  let finish = () => {};
  const held = new Promise<void>((r) => (finish = r));
  const dispatcher = new FakeDispatcher().on("work", async () => {
    await held;
    return result;
  });
  return { dispatcher, finish };
}

Deno.test("dependencies run in order and typed results flow through references", async () => {
  const { dispatcher, engine } = setup();
  dispatcher.on("stats", () => ({ items: [3, 4], mean: 3.5, label: "x" }));
  const out = await engine.run(wf([
    task("stats", { method: "stats" }),
    task("use", {
      params: {
        whole: "${stats.items}",
        mean: "${stats.mean}",
        text: "mean=${stats.mean} items=${stats.items} label=${stats.label}",
        first: "${stats.items[0]}",
        input: "${params.topic}",
      },
      dependencies: ["stats"],
    }),
  ], { params: { topic: "llamas" } }));
  assertEquals(out.state, "completed");
  const use = byId(out.tasks).get("use")!;
  assertEquals(use.result, {
    whole: [3, 4],
    mean: 3.5,
    text: "mean=3.5 items=[3,4] label=x",
    first: 3,
    input: "llamas",
  });
  assertEquals(dispatcher.calls.map((c) => c.taskId), ["stats", "use"]);
});

Deno.test("ready tasks start by priority, then submission order, within max_parallel", async () => {
  const { dispatcher, engine } = setup();
  const out = await engine.run(wf([
    task("low", { priority: 25 }),
    task("normal1", { priority: 50 }),
    task("urgent", { priority: 100 }),
    task("normal2", { priority: 50 }),
  ], { maxParallel: 1 }));
  assertEquals(out.state, "completed");
  assertEquals(dispatcher.calls.map((c) => c.taskId), ["urgent", "normal1", "normal2", "low"]);
  assertEquals(dispatcher.maxActive, 1);
});

Deno.test("max_parallel and the global limit bound concurrency", async () => {
  const gate = Promise.withResolvers<void>();
  const a = setup({ maxConcurrency: 3 });
  a.dispatcher.on("ok", async () => {
    await gate.promise;
    return 1;
  });
  const tasks = Array.from({ length: 10 }, (_, i) => task(`t${i}`));
  const running = a.engine.run(wf(tasks));
  await new Promise((r) => setTimeout(r, 20));
  assertEquals(a.dispatcher.active, 3);
  gate.resolve();
  assertEquals((await running).state, "completed");
  assertEquals(a.dispatcher.maxActive, 3);

  const b = setup({ maxConcurrency: 10 });
  b.dispatcher.on("ok", () => new Promise((r) => setTimeout(r, 5)));
  await b.engine.run(wf(tasks, { maxParallel: 2 }));
  assertEquals(b.dispatcher.maxActive, 2);
});

Deno.test("a task that awaits stored tasks of other runs waits for them holding no slot, then gets their results; one that failed fails it", async () => {
  const { engine, dispatcher, store, events } = setup({ maxConcurrency: 1 });
  const gate = Promise.withResolvers<void>();
  dispatcher.on("slow", async (params) => {
    await gate.promise;
    return params;
  });
  const a = await engine.createRun(wf([task("t", { method: "slow", params: { n: 3 } })]));
  const aTask = (await store.getRunTask(a.id, "t"))!.id;
  // waits for a's task, whose run the same engine executes after it, with its one slot
  const b = engine.run(wf([task("u", { awaits: [aTask], params: { x: `\${${aTask}.n}` } })]));
  await new Promise((r) => setTimeout(r, 50));
  assert(events.some((e) => e.type === "task_waiting" && e.on[0] === `${aTask} (queued)`));
  const ranA = engine.execute(a.id);
  gate.resolve();
  assertEquals((await ranA).state, "completed");
  const done = await b;
  assertEquals(done.state, "completed");
  assertEquals(done.tasks[0]?.result, { x: 3 });
  // a dependency that failed: the task fails with TASK_DEPENDENCY_FAILED, its provider not called
  dispatcher.on("bad", () => {
    throw new GleitzeitError("TASK_EXECUTION_FAILED", "nope");
  });
  const f = await engine.run(wf([task("t", { method: "bad" })]));
  const fTask = f.tasks[0]!.id;
  const calls = dispatcher.calls.length;
  const after = await engine.run(wf([task("v", { awaits: [`${f.runId}/t`] })]));
  assertEquals(after.state, "failed");
  assertEquals(after.tasks[0]?.error?.code, "TASK_DEPENDENCY_FAILED");
  assert(after.tasks[0]?.error?.message.includes(`dependency ${fTask}`));
  assertEquals(dispatcher.calls.length, calls);
});

Deno.test("a task that awaits stored tasks rides out a failing store read: it looks again", async () => {
  const store = new MemoryStore();
  let failNext = false;
  const getTask = store.getTask.bind(store);
  store.getTask = (id: string) => {
    if (!failNext) return getTask(id);
    failNext = false;
    return Promise.reject(new GleitzeitError("PERSISTENCE_UNAVAILABLE", "blip"));
  };
  const { engine } = setup({ store });
  const a = await engine.createRun(wf([task("t", { params: { n: 3 } })]));
  const aTask = (await store.getRunTask(a.id, "t"))!.id;
  const b = engine.run(wf([task("u", { awaits: [aTask], params: { x: `\${${aTask}.n}` } })]));
  await new Promise((r) => setTimeout(r, 300));
  failNext = true; // one read fails during the wait
  await new Promise((r) => setTimeout(r, 600));
  assertEquals((await engine.execute(a.id)).state, "completed");
  const done = await b;
  assertEquals([done.state, done.tasks[0]?.result], ["completed", { x: 3 }]);
});

Deno.test("fail_fast: dependents skipped with the reason, nothing new starts, run failed", async () => {
  const { dispatcher, engine, events } = setup();
  dispatcher.on("boom", () => {
    throw new GleitzeitError("TASK_EXECUTION_FAILED", "boom");
  });
  const out = await engine.run(wf([
    task("bad", { method: "boom", priority: 100 }),
    task("child", { dependencies: ["bad"] }),
    task("grandchild", { dependencies: ["child"] }),
    task("other", { priority: 10 }),
  ], { maxParallel: 1 }));
  assertEquals(out.state, "failed");
  assertEquals(out.error?.code, "WORKFLOW_FAILED");
  const t = byId(out.tasks);
  assertEquals(t.get("bad")!.state, "failed");
  assertEquals(t.get("child")!.state, "skipped");
  assertEquals(t.get("child")!.reason, "dependency 'bad' failed");
  assertEquals(t.get("grandchild")!.state, "skipped");
  assertEquals(t.get("other")!.state, "skipped");
  assert(t.get("other")!.reason!.includes("fail_fast"));
  assertEquals(dispatcher.calls.map((c) => c.taskId), ["bad"]);
  assert(events.some((e) => e.type === "task_skipped" && e.taskId === "grandchild"));
});

Deno.test("on_failure continue: independent branches go on, the run still fails", async () => {
  const { dispatcher, engine } = setup();
  dispatcher.on("boom", () => {
    throw new GleitzeitError("TASK_EXECUTION_FAILED", "boom");
  });
  const out = await engine.run(wf([
    task("bad", { method: "boom" }),
    task("child", { dependencies: ["bad"] }),
    task("a"),
    task("b", { dependencies: ["a"] }),
  ], { onFailure: "continue" }));
  const t = byId(out.tasks);
  assertEquals(out.state, "failed");
  assertEquals(t.get("child")!.state, "skipped");
  assertEquals(t.get("a")!.state, "completed");
  assertEquals(t.get("b")!.state, "completed");
});

Deno.test("continue_on_failure: the run completes and dependents still run", async () => {
  const { dispatcher, engine } = setup();
  dispatcher.on("boom", () => {
    throw new GleitzeitError("TASK_EXECUTION_FAILED", "boom");
  });
  const out = await engine.run(wf([
    task("optional", { method: "boom", continueOnFailure: true }),
    task("after", { dependencies: ["optional"] }),
  ]));
  assertEquals(out.state, "completed");
  const t = byId(out.tasks);
  assertEquals(t.get("optional")!.state, "failed");
  assertEquals(t.get("after")!.state, "completed");
  // beside a failure that fails the run, the run's error counts it apart
  const mixed = await engine.run(wf([
    task("optional", { method: "boom", continueOnFailure: true }),
    task("needed", { method: "boom" }),
  ], { onFailure: "continue" }));
  assertEquals(mixed.state, "failed");
  assertEquals(mixed.error?.message, "1 task failed: needed (and 1 marked continue_on_failure)");
});

Deno.test("retries follow the backoff on the injected clock and only for retryable errors", async () => {
  const clock = new FakeClock();
  const { dispatcher, engine, events } = setup({ clock });
  let n = 0;
  dispatcher.on("flaky", () => {
    n++;
    if (n < 4) throw new GleitzeitError("PROVIDER_UNAVAILABLE", `down ${n}`);
    return "up";
  });
  dispatcher.on("fatal", () => {
    throw new GleitzeitError("TASK_EXECUTION_FAILED", "bad code");
  });
  const retry: RetryPolicy = {
    maxAttempts: 5,
    backoff: "exponential",
    baseDelayMs: 1000,
    maxDelayMs: 3000,
    jitter: false,
  };
  const running = engine.run(wf([
    task("flaky", { method: "flaky", retry }),
    task("fatal", { method: "fatal", retry }),
  ], { onFailure: "continue" }));
  await clock.advance(0);
  const retryDelays = () =>
    events.filter((e) => e.type === "task_failed" && e.taskId === "flaky")
      .map((e) => (e as { retryInMs?: number }).retryInMs);
  assertEquals(retryDelays(), [1000]);
  await clock.advance(999);
  assertEquals(n, 1);
  await clock.advance(1);
  assertEquals(n, 2);
  await clock.advance(2000);
  assertEquals(n, 3);
  await clock.advance(3000); // 4000 capped at 3000
  assertEquals(n, 4);
  const out = await running;
  assertEquals(retryDelays(), [1000, 2000, 3000]);
  const t = byId(out.tasks);
  assertEquals(t.get("flaky")!.state, "completed");
  assertEquals(t.get("flaky")!.attempts, 4);
  assertEquals(t.get("fatal")!.attempts, 1);
  assertEquals(t.get("fatal")!.state, "failed");
});

/** A dispatcher that queues attempts (as for workers): `begin(taskId)` says one begins. */
class QueuingDispatcher extends FakeDispatcher {
  readonly queues = true;
  readonly begins = new Map<string, () => unknown>();
  /** Tasks a worker began whose notice is not read yet: an abort finds it (see work_queue). */
  readonly unread = new Set<string>();

  override call(p: string, method: string, params: Record<string, unknown>, ctx: CallContext) {
    if (ctx.onBegin) this.begins.set(ctx.taskId, ctx.onBegin);
    const answer = super.call(p, method, params, ctx);
    // (such a dispatcher settles an aborted call itself: see Dispatcher.queues)
    return new Promise((resolve, reject) => {
      const onAbort = async () => {
        if (this.unread.has(ctx.taskId)) await ctx.onBegin?.();
        reject(ctx.signal.reason);
      };
      if (ctx.signal.aborted) return void onAbort();
      ctx.signal.addEventListener("abort", onAbort, { once: true });
      answer.then(resolve, reject).finally(() => ctx.signal.removeEventListener("abort", onAbort));
    });
  }

  begin(taskId: string): void {
    this.begins.get(taskId)!();
  }
}

Deno.test("queued attempts: recorded, and timed, from when a worker begins them; meanwhile the task is queued", async () => {
  const clock = new FakeClock();
  const t0 = clock.now();
  const store = new MemoryStore();
  const dispatcher = new QueuingDispatcher();
  const events: EngineEvent[] = [];
  const engine = new Engine({ dispatcher, store, clock, onEvent: (e) => events.push(e) });
  let release = () => {};
  dispatcher.on("work", () => new Promise((r) => (release = () => r("done"))));
  dispatcher.on("slow", () => new Promise(() => {})); // never answers: its timeout ends it
  const running = engine.run(wf([
    task("w", { method: "work", timeoutMs: 1000 }),
    task("s", { method: "slow", timeoutMs: 1000 }),
  ], { onFailure: "continue" }));
  await clock.advance(0);
  const runId = (await store.listRuns({}))[0]!.id;
  const state = async (t: string) => (await store.getRunTask(runId, t))!;
  // dispatched, waiting for a worker: still queued, no attempt, no timeout running
  assertEquals([(await state("w")).state, (await state("w")).attempts], ["queued", 0]);
  assertEquals(await store.listAttempts(runId, "w"), []);
  await clock.advance(5000); // far past the timeout: it has not begun
  assertEquals((await state("s")).state, "queued");
  dispatcher.begin("w");
  dispatcher.begin("s");
  await clock.advance(0);
  assertEquals([(await state("w")).state, (await state("w")).startedAt], ["running", t0 + 5000]);
  assertEquals(events.filter((e) => e.type === "task_started").length, 2);
  await clock.advance(400);
  release();
  await clock.advance(600); // s: 1000 ms since it began
  const out = await running;
  const t = byId(out.tasks);
  assertEquals([t.get("w")!.state, t.get("w")!.startedAt, t.get("w")!.finishedAt], [
    "completed",
    t0 + 5000,
    t0 + 5400,
  ]);
  assertEquals([t.get("s")!.state, t.get("s")!.error?.code], ["failed", "TASK_TIMEOUT"]);
  assertEquals(t.get("s")!.finishedAt, t0 + 6000);
  const completed = events.find((e) => e.type === "task_completed");
  assertEquals((completed as { durationMs: number }).durationMs, 400);
});

Deno.test("queued attempts: one that ends without a notice that it began is on record all the same; one lost before it began is sent again as it was", async () => {
  const store = new MemoryStore();
  const dispatcher = new QueuingDispatcher();
  const engine = new Engine({ dispatcher, store });
  let sent = 0;
  dispatcher.on("quiet", () => "answered"); // the answer comes, the notice never did
  dispatcher.on("lostEarly", (_p, ctx) => {
    sent++;
    if (sent === 1) throw workerLostError("w9", `lostEarly attempt ${ctx.attempt}`);
    dispatcher.begin("lostEarly");
    return "second try";
  });
  const out = await engine.run(wf([
    task("quiet", { method: "quiet" }),
    task("lostEarly", { method: "lostEarly" }),
  ]));
  assertEquals(out.state, "completed");
  const t = byId(out.tasks);
  assertEquals([t.get("quiet")!.attempts, t.get("quiet")!.result], [1, "answered"]);
  assertEquals((await store.listAttempts(out.runId, "quiet")).map((a) => a.state), [
    "completed",
  ]);
  assertEquals(sent, 2);
  assertEquals(dispatcher.calls.filter((c) => c.taskId === "lostEarly").map((c) => c.attempt), [
    1,
    1,
  ]);
  assertEquals(
    (await store.listAttempts(out.runId, "lostEarly")).map((a) => [a.attempt, a.state]),
    [[1, "completed"]],
  );
});

Deno.test("queued attempts: cancelling the run while one waits for a worker ends its task as not started, with no attempt on record", async () => {
  const store = new MemoryStore();
  const dispatcher = new QueuingDispatcher();
  const engine = new Engine({ dispatcher, store });
  dispatcher.on("wait", () => new Promise(() => {})); // no worker ever begins it
  const controller = new AbortController();
  const running = engine.run(wf([task("w", { method: "wait" })]), { signal: controller.signal });
  while (dispatcher.calls.length === 0) await new Promise((r) => setTimeout(r, 1));
  controller.abort();
  const out = await running;
  assertEquals(out.state, "cancelled");
  const w = byId(out.tasks).get("w")!;
  assertEquals([w.state, w.reason, w.attempts], ["cancelled", "not started: run cancelled", 0]);
  assertEquals(await store.listAttempts(out.runId, "w"), []);
});

Deno.test("queued attempts: fail_fast withdraws one still waiting for a worker (it does not start after the failure)", async () => {
  const store = new MemoryStore();
  const dispatcher = new QueuingDispatcher();
  const events: EngineEvent[] = [];
  const engine = new Engine({ dispatcher, store, onEvent: (e) => events.push(e) });
  let aborted = false;
  dispatcher.on(
    "wait",
    (_p, ctx) =>
      new Promise((_, reject) =>
        ctx.signal.addEventListener("abort", () => {
          aborted = true;
          reject(ctx.signal.reason);
        })
      ),
  );
  dispatcher.on("boom", async () => {
    dispatcher.begin("b");
    await new Promise((r) => setTimeout(r, 5));
    throw new GleitzeitError("TASK_EXECUTION_FAILED", "bad");
  });
  dispatcher.unread.add("c"); // began by a worker just as the run stopped
  const out = await engine.run(
    wf([
      task("a", { method: "wait" }),
      task("b", { method: "boom" }),
      task("c", { method: "wait" }),
    ]),
  );
  assertEquals(out.state, "failed");
  assert(aborted, "its dispatch was withdrawn");
  const a = byId(out.tasks).get("a")!;
  assertEquals([a.state, a.attempts], ["skipped", 0]);
  assertEquals(a.reason, "not started: run stopped after 'b' failed (fail_fast)");
  assert(!events.some((e) => e.type === "task_started" && e.taskId === "a"));
  // one found begun when withdrawn: on record as started, and cancelled (not failed)
  const c = byId(out.tasks).get("c")!;
  assertEquals([c.state, c.attempts, c.reason], [
    "cancelled",
    1,
    "run stopped after 'b' failed (fail_fast)",
  ]);
  assert(!/\bc\b/.test(out.error?.message ?? ""), out.error?.message); // not a failed task
});

Deno.test("an attempt whose worker was lost ends interrupted, another starts at once outside the retry budget; the third loss fails the task", async () => {
  const { dispatcher, engine, store, events } = setup();
  let lost = 0;
  dispatcher.on("once", (_p, ctx) => {
    if (ctx.attempt === 1) throw workerLostError("w1", `once attempt ${ctx.attempt}`);
    return "ran";
  });
  dispatcher.on("doomed", (_p, ctx) => {
    lost++;
    throw workerLostError(`w${lost}`, `doomed attempt ${ctx.attempt}`);
  });
  const retry: RetryPolicy = { ...NO_RETRY, maxAttempts: 2 };
  const out = await engine.run(wf([
    task("once", { method: "once" }), // NO_RETRY: one attempt of its own
    task("doomed", { method: "doomed", retry }),
  ], { onFailure: "continue" }));
  const t = byId(out.tasks);
  assertEquals([t.get("once")!.state, t.get("once")!.attempts], ["completed", 2]);
  const once = await store.listAttempts(out.runId, "once");
  assertEquals(once.map((a) => [a.attempt, a.state, a.error?.code]), [
    [1, "interrupted", "LEASE_EXPIRED"],
    [2, "completed", undefined],
  ]);
  // its own budget of 2 is not what ends it: the third lost worker is
  assertEquals(lost, 3);
  assertEquals(t.get("doomed")!.state, "failed");
  const doomed = await store.listAttempts(out.runId, "doomed");
  assertEquals(doomed.map((a) => a.state), ["interrupted", "interrupted", "failed"]);
  const error = t.get("doomed")!.error!;
  assertEquals([error.code, error.retryable], ["LEASE_EXPIRED", false]);
  assert(/3 workers died while executing it \(w1, w2, w3\)/.test(error.message), error.message);
  assert(error.hint?.includes("workers' logs"), error.hint);
  const announced = events.filter((e) => e.type === "task_failed" && e.taskId === "once");
  assertEquals(announced.map((e) => (e as { retryInMs?: number }).retryInMs), [0]);
});

Deno.test("workers stopped on purpose (SIGTERM) do not count as lost: the task goes on being sent", async () => {
  const { dispatcher, engine, store } = setup();
  dispatcher.on("restarted", (_p, ctx) => {
    if (ctx.attempt <= 4) throw workerLostError(`w${ctx.attempt}`, "restarted", true);
    return "ran";
  });
  const out = await engine.run(wf([task("r", { method: "restarted" })]));
  assertEquals(out.state, "completed");
  assertEquals(
    (await store.listAttempts(out.runId, "r")).map((a) => a.state),
    ["interrupted", "interrupted", "interrupted", "interrupted", "completed"],
  );
});

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A MemoryStore whose writes of interrupted attempts take `ms` (a slow round trip). */
class SlowInterruptStore extends MemoryStore {
  constructor(readonly ms: number) {
    super();
  }
  override async finishTasks(finishes: Parameters<MemoryStore["finishTasks"]>[0]) {
    if (finishes.some((f) => f.attemptState === "interrupted")) await wait(this.ms);
    return await super.finishTasks(finishes);
  }
}

Deno.test("a lost worker while the run stops (fail_fast, or its timeout): the task ends as one not started, not queued, not failed", async () => {
  for (const stop of ["fail_fast", "timeout", "after fail_fast"]) {
    const store = new SlowInterruptStore(80);
    const { dispatcher, engine } = setup({ store });
    dispatcher.on("lost", async () => {
      if (stop === "after fail_fast") await wait(40); // answered once the run has stopped
      throw workerLostError("w1", "lost attempt 1");
    });
    dispatcher.on("boom", async () => {
      if (stop !== "after fail_fast") await wait(30); // while the interrupted write goes on
      throw new GleitzeitError("TASK_EXECUTION_FAILED", "bad");
    });
    dispatcher.on("nap", () => wait(500));
    const tasks = stop === "timeout"
      ? [task("a", { method: "lost" }), task("n", { method: "nap" })]
      : [task("a", { method: "lost" }), task("b", { method: "boom" })];
    const out = await engine.run(wf(tasks, stop === "timeout" ? { timeoutMs: 40 } : {}));
    assertEquals(out.state, "failed", stop);
    const a = byId(out.tasks).get("a")!;
    assertEquals(a.state, "skipped", `${stop}: ${JSON.stringify(a)}`);
    assert(/not started: run (timed out|stopped after 'b' failed)/.test(a.reason ?? ""), a.reason);
    assertEquals((await store.listAttempts(out.runId, "a")).map((x) => x.state), ["interrupted"]);
    assertEquals((await store.getRunTask(out.runId, "a"))!.state, "skipped", stop);
    if (stop !== "timeout") assert(!/\ba\b/.test(out.error?.message ?? ""), out.error?.message);
  }
});

// Which task stopped the run, and the last error, whether the retry was waiting when the run
// stopped (flaky failed first) or the attempt failed retryably once it had stopped.
for (const flakyFirst of [true, false]) {
  Deno.test(
    `fail_fast abandons a retry and says so: which task stopped the run, the last error (${
      flakyFirst ? "a retry waiting" : "an attempt failing after the stop"
    })`,
    async () => {
      const clock = new FakeClock();
      const { dispatcher, engine, events } = setup({ clock });
      const fails = (code: ErrorCode, message: string, later: boolean) => async () => {
        if (later) await sleep(clock, 10);
        throw new GleitzeitError(code, message);
      };
      dispatcher.on("flaky", fails("PROVIDER_UNAVAILABLE", "down", !flakyFirst));
      dispatcher.on("fatal", fails("TASK_EXECUTION_FAILED", "bad code", flakyFirst));
      const retry: RetryPolicy = {
        ...NO_RETRY,
        maxAttempts: 3,
        backoff: "fixed",
        baseDelayMs: 1000,
      };
      const running = engine.run(wf([
        task("flaky", { method: "flaky", retry }),
        task("fatal", { method: "fatal" }),
      ]));
      await clock.advance(10);
      const out = await running;
      const flaky = byId(out.tasks).get("flaky")!;
      const abandoned = "retry abandoned: run stopped after 'fatal' failed (fail_fast)";
      assertEquals([flaky.state, flaky.attempts], ["failed", 1]);
      assertEquals(flaky.reason, abandoned);
      assertEquals(flaky.error?.message, "down");
      const ends = events.filter((e) => e.type === "task_failed" && e.taskId === "flaky");
      assertEquals(
        ends.map((e) => (e as { abandoned?: string }).abandoned),
        flakyFirst ? [undefined, abandoned] : [abandoned],
      );
    },
  );
}

Deno.test("an attempt past its timeout is aborted with TASK_TIMEOUT and retried", async () => {
  const clock = new FakeClock();
  const { dispatcher, engine, store } = setup({ clock });
  const signals: AbortSignal[] = [];
  dispatcher.on("slow", (_p, ctx) => {
    signals.push(ctx.signal);
    if (ctx.attempt === 1) return sleep(clock, 60_000, ctx.signal);
    return "fast";
  });
  const retry: RetryPolicy = { ...NO_RETRY, maxAttempts: 2, backoff: "fixed", baseDelayMs: 10 };
  const running = engine.run(wf([task("slow", { method: "slow", timeoutMs: 5000, retry })]));
  await clock.advance(4999);
  assertEquals(signals[0]!.aborted, false);
  await clock.advance(1);
  assert(signals[0]!.aborted);
  await clock.advance(10);
  const out = await running;
  assertEquals(out.state, "completed");
  const attempts = await store.listAttempts(out.runId, "slow");
  assertEquals(attempts.map((a) => a.state), ["failed", "completed"]);
  assertEquals(attempts[0]!.error?.code, "TASK_TIMEOUT");
});

Deno.test("a run past its timeout is stopped: running tasks cancelled, the rest skipped", async () => {
  const clock = new FakeClock();
  const { dispatcher, engine } = setup({ clock });
  dispatcher.on("slow", (_p, ctx) => sleep(clock, 60_000, ctx.signal));
  const running = engine.run(wf([
    task("slow", { method: "slow" }),
    task("after", { dependencies: ["slow"] }),
  ], { timeoutMs: 1000 }));
  await clock.advance(1000);
  const out = await running;
  assertEquals(out.state, "failed");
  assertEquals(out.error?.code, "WORKFLOW_TIMEOUT");
  const t = byId(out.tasks);
  assertEquals(t.get("slow")!.state, "cancelled");
  assertEquals(t.get("after")!.state, "skipped");
});

Deno.test("a missing result path fails the task before the provider is called", async () => {
  const { dispatcher, engine } = setup();
  dispatcher.on("src", () => ({ answer: 42, extra: true }));
  const out = await engine.run(wf([
    task("src", { method: "src" }),
    task("use", { method: "never", params: { x: "${src.answr}" }, dependencies: ["src"] }),
  ]));
  const use = byId(out.tasks).get("use")!;
  assertEquals(use.state, "failed");
  assertEquals(use.error?.code, "TASK_PARAMETER_ERROR");
  assert(use.error!.message.includes("answr"));
  assert(use.error!.message.includes("answer, extra"));
  assertEquals(dispatcher.calls.filter((c) => c.method === "never").length, 0);
});

Deno.test("cancelling a run stops running tasks, cancels those not started (saying so), and resume finishes it", async () => {
  const store = new MemoryStore();
  const first = setup({ store });
  let aRuns = 0;
  first.dispatcher.on("a", () => ++aRuns);
  first.dispatcher.on("slow", (_p, ctx) =>
    sleep(
      {
        now: Date.now,
        setTimer: (ms, fn) => {
          const id = setTimeout(fn, ms);
          return { cancel: () => clearTimeout(id) };
        },
      },
      60_000,
      ctx.signal,
    ));
  const controller = new AbortController();
  const workflow = wf([
    task("a", { method: "a" }),
    task("slow", { method: "slow", dependencies: ["a"] }),
    task("last", { dependencies: ["slow"], params: { a: "${a}" } }),
  ]);
  const running = first.engine.run(workflow, { signal: controller.signal });
  while (!first.dispatcher.calls.some((c) => c.method === "slow")) {
    await new Promise((r) => setTimeout(r, 1));
  }
  controller.abort();
  const out = await running;
  assertEquals(out.state, "cancelled");
  const t = byId(out.tasks);
  assertEquals(t.get("a")!.state, "completed");
  assertEquals(t.get("slow")!.state, "cancelled");
  assertEquals([t.get("last")!.state, t.get("last")!.reason], [
    "cancelled",
    "not started: run cancelled",
  ]);

  const second = setup({ store });
  second.dispatcher.on("a", () => ++aRuns);
  second.dispatcher.on("slow", () => "done");
  const resumed = await second.engine.execute(out.runId);
  assertEquals(resumed.state, "completed");
  assertEquals(aRuns, 1, "completed tasks are not executed again");
  const r = byId(resumed.tasks);
  assertEquals(r.get("slow")!.attempts, 2);
  assertEquals(r.get("last")!.result, { a: 1 });
});

Deno.test("completions that arrive together are written in one commit", async () => {
  const store = SqliteStore.open(":memory:");
  const { engine } = setup({ store, maxConcurrency: 100 });
  const before = store.commits;
  const out = await engine.run(wf(Array.from({ length: 100 }, (_, i) => task(`t${i}`))));
  assertEquals(out.state, "completed");
  const commits = store.commits - before;
  // create + 100 claims + 100 finishes + run updates, grouped: far fewer than one per write
  assert(commits <= 10, `expected grouped commits, got ${commits} for 100 tasks`);
  await store.close();
});

Deno.test("10,000 independent tasks finish", async () => {
  const { engine } = setup({ maxConcurrency: 64 });
  const out = await engine.run(wf(Array.from({ length: 10_000 }, (_, i) => task(`t${i}`))));
  assertEquals(out.state, "completed");
  assertEquals(out.tasks.filter((t) => t.state === "completed").length, 10_000);
});

Deno.test("unknown inputs are rejected; a completed run cannot be executed again", async () => {
  const { engine } = setup();
  await assertRejects(
    () => engine.run(wf([task("a")], { params: { topic: "x" } }), { params: { nope: 1 } }),
    GleitzeitError,
    "unknown input 'nope'",
  );
  const out = await engine.run(wf([task("a")]));
  const err = await assertRejects(() => engine.execute(out.runId), GleitzeitError);
  assertEquals(err.code, "USAGE_ERROR");
  assertExists(err.hint);
});

/** A run as a coordinator that died mid-way left it: `bad` failed for good, `after` skipped
 * because of it, `long` running, `tail` waiting for `long`. */
async function interruptedRun(store: Store, workflow: Workflow, startedAt: number) {
  const { engine } = setup({ store });
  const run = await engine.createRun(workflow);
  await store.updateRun(run.id, {
    state: "running",
    startedAt,
    owner: "elsewhere:1:dead",
    heartbeatAt: Date.now() - 3_600_000, // silent for an hour: it may be taken over
  });
  await store.startAttempt(run.id, "bad", 1, startedAt, "elsewhere:1:dead");
  await store.startAttempt(run.id, "long", 1, startedAt, "elsewhere:1:dead");
  await store.finishTasks([
    {
      runId: run.id,
      taskId: "bad",
      state: "failed",
      attempt: 1,
      at: startedAt + 1,
      error: { code: "TASK_EXECUTION_FAILED", message: "ValueError: no", retryable: false },
    },
    {
      runId: run.id,
      taskId: "after",
      state: "skipped",
      at: startedAt + 1,
      reason: "dependency 'bad' failed",
    },
  ]);
  return run.id;
}

const interruptedWorkflow = (extra: Partial<Workflow> = {}) =>
  wf([
    task("bad", { method: "bad" }),
    task("after", { dependencies: ["bad"] }),
    task("long", { method: "long" }),
    task("tail", { dependencies: ["long"] }),
  ], extra);

Deno.test("continuing a run (worker takeover): what failed for good stays failed, in-flight work runs again", async () => {
  const store = new MemoryStore();
  const runId = await interruptedRun(
    store,
    interruptedWorkflow({ onFailure: "continue" }),
    Date.now(),
  );
  const { engine, dispatcher } = setup({ store });
  dispatcher.on("bad", () => "ran again");
  const out = await engine.execute(runId, { continueRun: true });
  const t = byId(out.tasks);
  assertEquals(dispatcher.calls.map((c) => c.taskId).sort(), ["long", "tail"]);
  assertEquals([t.get("bad")!.state, t.get("bad")!.attempts], ["failed", 1]);
  assertEquals(t.get("after")!.state, "skipped");
  assertEquals([t.get("long")!.state, t.get("long")!.attempts], ["completed", 2]);
  assertEquals(t.get("tail")!.state, "completed");
  assertEquals(out.state, "failed");
  assertEquals(out.error?.code, "WORKFLOW_FAILED");
  // resume (the user's) is different: the failed task gets a new chance
  const again = setup({ store });
  again.dispatcher.on("bad", () => "ran again");
  const resumed = await again.engine.execute(runId);
  assertEquals(resumed.state, "completed");
  assertEquals(byId(resumed.tasks).get("bad")!.result, "ran again");
});

Deno.test("continuing a fail_fast run stops it; its timeout counts from the run's start", async () => {
  const store = new MemoryStore();
  const ff = await interruptedRun(store, interruptedWorkflow(), Date.now());
  const first = setup({ store });
  const out = await first.engine.execute(ff, { continueRun: true });
  assertEquals(first.dispatcher.calls, [], "nothing new starts after a fail_fast failure");
  assertEquals(out.state, "failed");
  assertEquals(byId(out.tasks).get("long")!.state, "skipped");
  const late = await interruptedRun(
    store,
    interruptedWorkflow({ onFailure: "continue", timeoutMs: 5_000 }),
    Date.now() - 10_000,
  );
  const second = setup({ store });
  second.dispatcher.on(
    "long",
    (_p, ctx) =>
      new Promise((_, reject) =>
        ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason))
      ),
  );
  const timedOut = await second.engine.execute(late, { continueRun: true });
  assertEquals(timedOut.state, "failed");
  assertEquals(timedOut.error?.code, "WORKFLOW_TIMEOUT");
});

Deno.test("a resume held up after its claim, while another process took the run over, runs and writes nothing", async () => {
  const clock = new FakeClock();
  const base = new MemoryStore();
  // a store whose task listing can be held: the claiming process stopped right after its claim
  let held: Promise<void> | undefined;
  let release = () => {};
  const store = new Proxy(base, {
    get(target, key) {
      const value = Reflect.get(target, key, target);
      if (key === "listTasks") {
        return async (...args: Parameters<Store["listTasks"]>) => {
          const wait = held;
          held = undefined; // (only the first listing after the claim)
          if (wait) await wait;
          return await target.listTasks(...args);
        };
      }
      return typeof value === "function" ? value.bind(target) : value;
    },
  }) as Store;
  const engines = ["A", "B"].map((owner) => {
    const dispatcher = new FakeDispatcher().on("work", () => owner);
    const engine = new Engine({ dispatcher, store, clock, owner, heartbeatMs: 2000 });
    return { dispatcher, engine };
  });
  const [a, b] = engines as [(typeof engines)[0], (typeof engines)[0]];
  const run = await a.engine.createRun(wf([task("t", { method: "work" })]), { state: "queued" });
  held = new Promise((r) => (release = r));
  const first = a.engine.execute(run.id);
  await clock.advance(7_000); // past the 6 s after which others count A as gone
  const second = await b.engine.execute(run.id);
  assertEquals(second.state, "completed");
  release();
  const lost = await first;
  assertEquals(lost.lost, true);
  assertEquals(lost.state, "interrupted");
  assert(lost.error?.message.includes("process B took it over"), lost.error?.message);
  assertEquals(a.dispatcher.calls.length, 0, "A started nothing");
  await assertStored(base, run.id, ["completed", "B"], "B");
});

Deno.test("an owner is judged by its own lease: a resumer with a shorter one does not take over its live run", async () => {
  const clock = new FakeClock();
  const store = new MemoryStore();
  const { dispatcher, finish } = heldWork("A");
  // A heartbeats every 2 s and promised a 20 s lease; B would call a 1 s silence dead
  const a = new Engine({
    dispatcher,
    store,
    clock,
    owner: "A",
    heartbeatMs: 2000,
    staleAfterMs: 20_000,
  });
  const b = new Engine({
    dispatcher: new FakeDispatcher().on("work", () => "B"),
    store,
    clock,
    owner: "B",
    heartbeatMs: 300,
    staleAfterMs: 1000,
  });
  const run = await a.createRun(wf([task("t", { method: "work" })]), { state: "queued" });
  const first = a.execute(run.id);
  await clock.advance(1_500); // 1.5 s since A's claim: past B's 1 s, inside A's 20 s
  assertEquals((await store.getRun(run.id))?.leaseMs, 20_000);
  await assertRejects(() => b.execute(run.id), GleitzeitError, "is being executed by A");
  finish();
  const done = await first;
  assertEquals(done.state, "completed");
  await assertStored(store, run.id, ["completed", "A"], "A");
});

Deno.test("a write the store refuses (the run was taken over meanwhile) loses the run: nothing more is written or started", async () => {
  const clock = new FakeClock();
  const store = new MemoryStore();
  const { dispatcher, finish } = heldWork("A");
  const events: EngineEvent[] = [];
  const a = new Engine({
    dispatcher,
    store,
    clock,
    owner: "A",
    heartbeatMs: 2000,
    onEvent: (e) => events.push(e),
  });
  const run = await a.createRun(
    wf([task("t", { method: "work" }), task("u", { method: "work", dependencies: ["t"] })]),
    { state: "queued" },
  );
  const first = a.execute(run.id);
  await clock.advance(100);
  // another process takes the run over while A, not silent at all, still counts it as its own
  // (that process judged A gone by a clock running ahead, say)
  assertEquals(await store.claimRun(run.id, "B", clock.now(), Number.MAX_SAFE_INTEGER), true);
  finish();
  const outcome = await first;
  assertEquals(outcome.lost, true);
  assertEquals(outcome.state, "interrupted");
  assert(outcome.error?.message.includes("process B took it over"), outcome.error?.message);
  const stored = await store.getRun(run.id);
  assertEquals([stored?.state, stored?.owner], ["running", "B"]);
  assertEquals((await store.getRunTask(run.id, "t"))?.state, "running", "A's result not written");
  assertEquals(dispatcher.calls.map((c) => c.taskId), ["t"], "u never started");
  // nothing reported as done that the store never got: t started, then the run's end
  assertEquals(events.map((e) => e.type), ["run_started", "task_started", "run_finished"]);
});

Deno.test("taking over with answers the previous owner never recorded: those attempts are recorded, not run again", async () => {
  const store = new MemoryStore();
  const dispatcher = new FakeDispatcher().on("work", (_p, ctx) => `ran ${ctx.taskId}`);
  const engine = new Engine({ dispatcher, store, owner: "B", heartbeatMs: 60_000 });
  const run = await engine.createRun(
    wf([
      task("t", { method: "work" }),
      task("u", { method: "work" }),
      task("v", { method: "work", dependencies: ["t"], params: { x: "${t.result}" } }),
    ]),
    { state: "queued" },
  );
  // A owned it and started t and u, then died (its heartbeat long stale)
  assertEquals(await store.claimRun(run.id, "A", 1, 0), true);
  await store.startAttempt(run.id, "t", 1, 2, "A", "A");
  await store.startAttempt(run.id, "u", 1, 2, "A", "A");
  const asked: string[] = [];
  const out = await engine.execute(run.id, {
    continueRun: true,
    recover: (previous) => {
      asked.push(previous);
      return Promise.resolve([
        { taskId: "t", attempt: 1, result: { result: "A's t" } },
        { taskId: "u", attempt: 7, result: "not this attempt" },
      ]);
    },
  });
  assertEquals(asked, ["A"]);
  assertEquals(out.state, "completed", JSON.stringify(out.error));
  const tasks = byId(out.tasks);
  assertEquals([tasks.get("t")!.result, tasks.get("t")!.attempts], [{ result: "A's t" }, 1]);
  assertEquals([tasks.get("u")!.result, tasks.get("u")!.attempts], ["ran u", 2]);
  assertEquals(tasks.get("v")!.result, "ran v");
  assertEquals(dispatcher.calls.map((c) => c.taskId).sort(), ["u", "v"]);
  assertEquals(dispatcher.calls.find((c) => c.taskId === "v")!.params, { x: "A's t" });
});

Deno.test("an attempt left running by a dead owner ends, on record, at the owner's last sign of life", async () => {
  const clock = new FakeClock();
  const store = new MemoryStore();
  const dispatcher = new FakeDispatcher();
  const engine = new Engine({ dispatcher, store, clock, owner: "B", heartbeatMs: 2_000 });
  const run = await engine.createRun(wf([task("t")]), { state: "queued" });
  const t0 = clock.now();
  assertEquals(await store.claimRun(run.id, "A", t0 + 100, 0), true);
  await store.startAttempt(run.id, "t", 1, t0 + 200, "A", "A");
  await store.updateRun(run.id, { state: "running", heartbeatAt: t0 + 4_000 }, "A");
  await clock.advance(60_000); // A died long ago
  const out = await engine.execute(run.id);
  assertEquals(out.state, "completed");
  const attempts = await store.listAttempts(run.id, "t");
  assertEquals(attempts.map((a) => [a.attempt, a.state, a.finishedAt]), [
    [1, "interrupted", t0 + 4_000],
    [2, "completed", t0 + 60_000],
  ]);
  // with why: the owner that stopped
  assertEquals(attempts[0]!.error?.code, "LEASE_EXPIRED");
  assert(/process A stopped before this attempt ended/.test(attempts[0]!.error!.message));
});

/** Engine B, and a run of these tasks that dead owner A claimed at t0 + 100. */
async function deadOwnersRun(...ids: string[]) {
  const clock = new FakeClock();
  const store = new MemoryStore();
  const engine = new Engine({
    dispatcher: new FakeDispatcher(),
    store,
    clock,
    owner: "B",
    heartbeatMs: 2_000,
  });
  const run = await engine.createRun(wf(ids.map((id) => task(id))), { state: "queued" });
  const t0 = clock.now();
  assertEquals(await store.claimRun(run.id, "A", t0 + 100, 0), true);
  return { clock, store, engine, run, t0 };
}

Deno.test("a dead owner's last sign of life is also a task it ended after its last heartbeat", async () => {
  const { clock, store, engine, run, t0 } = await deadOwnersRun("a", "b");
  await store.startAttempt(run.id, "a", 1, t0 + 200, "A", "A");
  await store.startAttempt(run.id, "b", 1, t0 + 2_500, "A", "A");
  await store.updateRun(run.id, { state: "running", heartbeatAt: t0 + 2_000 }, "A");
  // a ended after A's last heartbeat, while b ran: A was alive then
  await store.finishTasks([{
    runId: run.id,
    taskId: "a",
    state: "completed",
    at: t0 + 3_000,
    attempt: 1,
    result: 1,
    ifOwner: "A",
  }]);
  await clock.advance(60_000);
  await engine.execute(run.id);
  const [b1] = await store.listAttempts(run.id, "b");
  assertEquals([b1!.state, b1!.startedAt, b1!.finishedAt], ["interrupted", t0 + 2_500, t0 + 3_000]);
  // as the CLI shows the run's end (its duration) while it is interrupted
  const stored = { ...(await store.getRun(run.id))!, heartbeatAt: t0 + 2_000 };
  const tasks = await store.listTasks({ runId: run.id });
  assertEquals(lastSignOfLife(stored, tasks), clock.now()); // (b's new attempt began now)
  assertEquals(lastSignOfLife(stored, tasks.filter((t) => t.taskId === "a")), t0 + 3_000);
  assertEquals(lastSignOfLife(stored, []), t0 + 2_000);
});

Deno.test("a failed run resumed is not on record as ended (or failed) while it runs again", async () => {
  const clock = new FakeClock();
  const store = new MemoryStore();
  let fail = true;
  let release = () => {};
  const dispatcher = new FakeDispatcher().on("ok", async () => {
    if (fail) throw new GleitzeitError("TASK_EXECUTION_FAILED", "boom");
    await new Promise<void>((r) => release = r);
    return 1;
  });
  const engine = new Engine({ dispatcher, store, clock, owner: "A", heartbeatMs: 2_000 });
  const run = await engine.createRun(wf([task("t")]));
  assertEquals((await engine.execute(run.id)).state, "failed");
  const failed = (await store.getRun(run.id))!;
  assert(failed.finishedAt !== undefined && failed.error !== undefined);
  fail = false;
  await clock.advance(5_000);
  const again = engine.execute(run.id);
  while (dispatcher.active === 0) await new Promise((r) => setTimeout(r, 1));
  // (killed now, its status would show an old end and error)
  const running = (await store.getRun(run.id))!;
  const [t] = await store.listTasks({ runId: run.id });
  assertEquals(
    [running.state, running.finishedAt, running.error, t!.state, t!.finishedAt],
    ["running", undefined, undefined, "running", undefined],
  );
  release();
  assertEquals((await again).state, "completed");
});

Deno.test("at a takeover, answers other workers gave the dead owner later are not its sign of life", async () => {
  const { clock, store, engine, run, t0 } = await deadOwnersRun("t", "u");
  await store.startAttempt(run.id, "t", 1, t0 + 200, "W", "A"); // a worker executes t
  await store.startAttempt(run.id, "u", 1, t0 + 300, "A", "A"); // A executes u itself
  await store.updateRun(run.id, { state: "running", heartbeatAt: t0 + 1_000 }, "A");
  await clock.advance(30_000); // A died at ~1 s; W answered t at 25 s, on A's reply stream
  await engine.execute(run.id, {
    continueRun: true,
    ownerGone: "A",
    recover: () => Promise.resolve([{ taskId: "t", attempt: 1, result: 1, at: t0 + 25_000 }]),
  });
  const [u1] = await store.listAttempts(run.id, "u");
  assertEquals([u1!.state, u1!.finishedAt! - t0], ["interrupted", 1_000]);
  const [t1] = await store.listAttempts(run.id, "t");
  assertEquals([t1!.state, t1!.finishedAt! - t0], ["completed", 25_000]);
});

Deno.test("recovered answers: the first per attempt counts, recorded at the time it was given", async () => {
  const { clock, store, engine, run, t0 } = await deadOwnersRun("t");
  await store.startAttempt(run.id, "t", 1, t0 + 200, "A", "A");
  await clock.advance(60_000);
  const out = await engine.execute(run.id, {
    continueRun: true,
    recover: () =>
      Promise.resolve([
        { taskId: "t", attempt: 1, result: "first", at: t0 + 1_500 },
        { taskId: "t", attempt: 1, result: "second", at: t0 + 1_700 },
      ]),
  });
  const t = byId(out.tasks).get("t")!;
  assertEquals([t.state, t.result, t.attempts, t.finishedAt], [
    "completed",
    "first",
    1,
    t0 + 1_500,
  ]);
});

Deno.test("pidAlive: a live process is, a killed one its parent has not reaped (a zombie) is not", async () => {
  // a parent that forks a child, kills it, and does not reap it while it sleeps
  const parent = new Deno.Command("python3", {
    args: [
      "-c",
      "import os, signal, sys, time\npid = os.fork()\nif pid == 0:\n    time.sleep(60)\n" +
      "print(os.getpid(), pid, flush=True)\nos.kill(pid, signal.SIGKILL)\ntime.sleep(30)\n",
    ],
    stdout: "piped",
  }).spawn();
  try {
    const reader = parent.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!text.includes("\n")) text += (await reader.read()).value ?? "";
    const [self, child] = text.trim().split(" ").map(Number);
    assert(pidAlive(self!), "the sleeping parent is alive");
    let zombie = false;
    for (let i = 0; i < 100 && !zombie; i++) {
      zombie = Deno.readTextFileSync(`/proc/${child}/stat`).includes(") Z ");
      if (!zombie) await new Promise((r) => setTimeout(r, 20));
    }
    assert(zombie, "the killed child is a zombie");
    assertEquals(pidAlive(child!), false);
    reader.releaseLock();
  } finally {
    parent.kill("SIGKILL");
    await parent.status;
    await parent.stdout.cancel().catch(() => {});
  }
});

Deno.test("a wait for a provider's free place (ctx.onWaiting) does not count against the attempt's timeout; the time before and after it does", async () => {
  const { dispatcher, engine } = setup();
  // 300 ms waiting for a place, then 100 ms of work: within a timeout of 250 ms
  dispatcher.on("queued", async (_p, ctx) => {
    await new Promise((r) => setTimeout(r, 50));
    ctx.onWaiting?.(true);
    await new Promise((r) => setTimeout(r, 300));
    ctx.onWaiting?.(false);
    await new Promise((r) => setTimeout(r, 100));
    return "done";
  });
  // the same time, none of it said to be waiting: past the timeout
  dispatcher.on("plain", async () => {
    await new Promise((r) => setTimeout(r, 450));
    return "done";
  });
  // waiting, then work that alone is longer than the timeout
  dispatcher.on("long", async (_p, ctx) => {
    ctx.onWaiting?.(true);
    await new Promise((r) => setTimeout(r, 100));
    ctx.onWaiting?.(false);
    await new Promise((r) => setTimeout(r, 400));
    return "done";
  });
  const out = await engine.run(wf([
    task("queued", { method: "queued", timeoutMs: 250 }),
    task("plain", { method: "plain", timeoutMs: 250 }),
    task("long", { method: "long", timeoutMs: 250 }),
  ], { onFailure: "continue" }));
  const tasks = byId(out.tasks);
  assertEquals(tasks.get("queued")!.state, "completed");
  assertEquals(tasks.get("plain")!.error?.code, "TASK_TIMEOUT");
  assertEquals(tasks.get("long")!.error?.code, "TASK_TIMEOUT");
});
