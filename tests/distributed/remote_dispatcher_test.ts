/**
 * RemoteDispatcher (src/distributed/work_queue.ts) against the real Redis: a coordinator's
 * attempts in flight when reading its replies fails for a moment.
 */

import { assert, assertEquals } from "../assert.ts";
import { dropKeys } from "./helpers.ts";
import { GleitzeitError } from "../../src/core/errors.ts";
import {
  ensureGroup,
  queueKeys,
  RemoteDispatcher,
  type RemoteDispatcherOptions,
} from "../../src/distributed/work_queue.ts";
import { RedisStore } from "../../src/persistence/redis_store.ts";

async function withDispatcher(
  fn: (d: RemoteDispatcher, store: RedisStore, kill: () => Promise<void>) => Promise<void>,
  wrap: (store: RedisStore) => RedisStore = (s) => s,
  options: RemoteDispatcherOptions = {},
): Promise<void> {
  const prefix = `gz-dispatch-test-${crypto.randomUUID().slice(0, 8)}:`;
  const store = await RedisStore.connect({ prefix });
  const reader = await store.sibling();
  await ensureGroup(store, queueKeys(prefix).tasks("echo/v1"));
  const owner = `test:${Deno.pid}:${crypto.randomUUID().slice(0, 6)}`;
  const d = new RemoteDispatcher(wrap(store), reader, owner, { giveUpMs: 1_000, ...options });
  // the dispatcher's reply reader loses its connection: its read fails once, then it reconnects
  const kill = async () => {
    const mine = String(await reader.command(["CLIENT", "ID"]));
    await store.command(["CLIENT", "KILL", "ID", mine]);
  };
  try {
    await fn(d, store, kill);
  } finally {
    await d.close();
    await dropKeys(store, prefix);
    await reader.close();
    await store.close();
  }
}

/** The reply stream and dispatch id of the one attempt on the tasks stream. */
async function dispatched(store: RedisStore): Promise<{ reply: string; id: string }> {
  const keys = queueKeys(store.prefix);
  const entries = await store.command(["XRANGE", keys.tasks("echo/v1"), "-", "+"]) as [
    string,
    string[],
  ][];
  const fields = entries[0]![1];
  return { reply: fields[fields.indexOf("reply") + 1]!, id: fields[fields.indexOf("d") + 1]! };
}

/**
 * A call of `d` (task `taskId`) whose signal the test aborts: `begun()` counts its onBegin
 * calls, `settled` is its outcome (or error).
 */
function abortable(d: RemoteDispatcher, taskId = "t") {
  const controller = new AbortController();
  let begun = 0;
  const settled = d.call("echo/v1", "echo", {}, {
    ...ctx(),
    taskId,
    signal: controller.signal,
    onBegin: () => {
      begun++;
    },
  }).then(() => "answered", (e) => e);
  return { controller, settled, begun: () => begun };
}

const ctx = () => ({
  signal: new AbortController().signal,
  runId: "run_t",
  taskId: "t",
  attempt: 1,
});

Deno.test("an attempt waits out a failed read of the replies and gets its answer", () =>
  withDispatcher(async (d, store, kill) => {
    const call = d.call("echo/v1", "echo", { x: 1 }, ctx());
    await new Promise((r) => setTimeout(r, 200));
    await kill();
    await new Promise((r) => setTimeout(r, 300));
    // the answer, as an executing worker sends it
    const keys = queueKeys(store.prefix);
    const entries = await store.command(["XRANGE", keys.tasks("echo/v1"), "-", "+"]) as [
      string,
      string[],
    ][];
    assertEquals(entries.length, 1);
    const fields = entries[0]![1];
    const reply = fields[fields.indexOf("reply") + 1]!;
    const d2 = fields[fields.indexOf("d") + 1]!;
    await store.command(["XADD", reply, "*", "d", d2, "ok", "1", "body", '{"x":1}']);
    assertEquals(await call, { x: 1 });
  }));

Deno.test("an attempt whose entry was lost while reads failed fails (retryable) instead of waiting for ever", () =>
  withDispatcher(async (d, store, kill) => {
    const call = d.call("echo/v1", "echo", { x: 1 }, ctx()).then(() => undefined, (e) => e);
    await new Promise((r) => setTimeout(r, 200));
    const keys = queueKeys(store.prefix);
    const entries = await store.command(["XRANGE", keys.tasks("echo/v1"), "-", "+"]) as [
      string,
      string[],
    ][];
    await store.command(["XDEL", keys.tasks("echo/v1"), entries[0]![0]]); // as a Redis that lost its data
    await kill();
    const e = await Promise.race([
      call,
      new Promise((r) => setTimeout(() => r("waiting"), 10_000)),
    ]);
    assert(e instanceof GleitzeitError, String(e));
    assertEquals(e.code, "PERSISTENCE_UNAVAILABLE");
    assertEquals(e.retryable, true);
  }));

Deno.test("an attempt withdrawn just as a worker began it (its notice not read yet) is on record as begun", () =>
  withDispatcher(async (d, store) => {
    // the reader is held up: the notice waits on the stream, unread
    await d.close();
    const { controller, settled: call, begun } = abortable(d);
    await new Promise((r) => setTimeout(r, 100));
    const keys = queueKeys(store.prefix);
    const { reply, id } = await dispatched(store);
    await store.command(["XADD", reply, "*", "d", id, "began", "1", "worker", "w"]);
    controller.abort(new GleitzeitError("TASK_CANCELLED", "withdrawn"));
    const e = await call;
    assert(e instanceof GleitzeitError && e.code === "TASK_CANCELLED", String(e));
    assertEquals(begun(), 1, "found begun, once");
    assertEquals(await store.command(["EXISTS", keys.cancel(id)]), 1, "and told to stop");
    // one withdrawn before any worker began it: not begun
    const other = abortable(d, "u");
    await new Promise((r) => setTimeout(r, 100));
    other.controller.abort(new GleitzeitError("TASK_CANCELLED", "withdrawn"));
    assert((await other.settled) instanceof GleitzeitError);
    assertEquals(other.begun(), 0);
  }));

Deno.test("a notice that an attempt began, read (and trimmed) while its abort sets the cancel flag, still puts it on record", () =>
  withDispatcher(async (d, store) => {
    const { controller, settled: call, begun } = abortable(d);
    await new Promise((r) => setTimeout(r, 100));
    const { reply, id } = await dispatched(store);
    controller.abort(new GleitzeitError("TASK_CANCELLED", "withdrawn"));
    await store.command(["XADD", reply, "*", "d", id, "began", "1", "worker", "w"]);
    await store.command(["XADD", reply, "*", "d", "other", "ok", "1", "body", "1"]);
    assert((await call) instanceof GleitzeitError);
    assertEquals(begun(), 1, "found begun");
  }, (store) =>
    // setting a cancel flag takes a while (a slow Redis): the reader goes on meanwhile
    new Proxy(store, {
      get(target, prop) {
        const value = Reflect.get(target, prop, target);
        if (prop === "command") {
          return async (args: string[]) => {
            if (args[0] === "SET" && String(args[1]).includes("cancel")) {
              await new Promise((r) => setTimeout(r, 300));
            }
            return await target.command(args);
          };
        }
        return typeof value === "function" ? value.bind(target) : value;
      },
    })));

/** Registers a live worker as `gleitzeit worker` does: its lease key, its key, the sorted set. */
async function liveWorker(
  store: RedisStore,
  owner: string,
  protocols: string[],
  unhealthy: string[],
): Promise<void> {
  const keys = queueKeys(store.prefix);
  await store.command(["SET", keys.lease(owner), "60000", "PX", "60000"]);
  await store.command([
    "SET",
    keys.worker(owner),
    JSON.stringify({ since: Date.now(), tasks: 0, runs: 0, protocols, unhealthy }),
    "EX",
    "60",
  ]);
  await store.command(["ZADD", keys.workers, String(Date.now() + 60_000), owner]);
}

/** `p`'s outcome, or "waiting" after `ms`. */
function within(p: Promise<unknown>, ms: number): Promise<unknown> {
  return Promise.race([p, new Promise((r) => setTimeout(() => r("waiting"), ms))]);
}

Deno.test("an attempt no live worker serves is withdrawn after the wait and fails, retryable; one a worker serves or read waits on", () =>
  withDispatcher(
    async (d, store) => {
      const keys = queueKeys(store.prefix);
      await liveWorker(store, "w-sick", ["echo/v1"], ["llm/v1"]);
      const call = (protocol: string, taskId: string) =>
        d.call(protocol, "m", {}, { ...ctx(), taskId }).then((v) => v, (e) => e);
      const sick = call("llm/v1", "a");
      const nobody = call("nosuch/v1", "b");
      const served = call("echo/v1", "c");
      const read = call("read/v1", "d");
      // a worker reads the read/v1 attempt (then it is that worker's: not withdrawn)
      await new Promise((r) => setTimeout(r, 100));
      await ensureGroup(store, keys.tasks("read/v1"));
      await store.command([
        "XREADGROUP",
        "GROUP",
        "workers",
        "w-other",
        "STREAMS",
        keys.tasks("read/v1"),
        ">",
      ]);

      const e1 = await within(sick, 10_000);
      assert(e1 instanceof GleitzeitError, String(e1));
      assertEquals([e1.code, e1.retryable], ["PROVIDER_UNHEALTHY", true]);
      assert(e1.message.includes("llm/v1") && e1.message.includes("w-sick"), e1.message);
      assert(e1.hint?.includes("gleitzeit provider health"), e1.hint);
      assertEquals(await store.command(["XLEN", keys.tasks("llm/v1")]), 0, "withdrawn");
      const e2 = await within(nobody, 10_000);
      assert(e2 instanceof GleitzeitError, String(e2));
      assertEquals([e2.code, e2.retryable], ["PROVIDER_UNAVAILABLE", true]);
      assert(e2.message.includes("no live worker serves nosuch/v1"), e2.message);

      // the others still wait, well past the wait
      assertEquals(await within(served, 2_000), "waiting");
      assertEquals(await within(read, 10), "waiting");
      assertEquals(await store.command(["XLEN", keys.tasks("echo/v1")]), 1);
      assertEquals(await store.command(["XLEN", keys.tasks("read/v1")]), 1);
      // and are answered as usual
      for (const protocol of ["echo/v1", "read/v1"]) {
        const entries = await store.command(["XRANGE", keys.tasks(protocol), "-", "+"]) as [
          string,
          string[],
        ][];
        const fields = entries[0]![1];
        const reply = fields[fields.indexOf("reply") + 1]!;
        const id = fields[fields.indexOf("d") + 1]!;
        await store.command(["XADD", reply, "*", "d", id, "ok", "1", "body", `"${protocol}"`]);
      }
      assertEquals(await within(served, 10_000), "echo/v1");
      assertEquals(await within(read, 10_000), "read/v1");
    },
    undefined,
    { unservedMs: 500 },
  ));

/** `store`, whose first `n` scripts containing `marker` run but whose replies are lost. */
function lostReplies(store: RedisStore, marker: string, n: number): RedisStore {
  let left = n;
  return new Proxy(store, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (prop === "command") {
        return async (args: string[]) => {
          const result = await target.command(args);
          if (args[0] === "EVAL" && String(args[1]).includes(marker) && left > 0) {
            left--;
            throw new Error("injected: the connection dropped before the reply");
          }
          return result;
        };
      }
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

Deno.test("an attempt whose withdrawal ran but whose reply was lost fails all the same (not waiting for ever)", () =>
  withDispatcher(
    async (d, store) => {
      const keys = queueKeys(store.prefix);
      const nobody = d.call("nosuch/v1", "m", {}, ctx()).then((v) => v, (e) => e);
      const e = await within(nobody, 15_000);
      assert(e instanceof GleitzeitError, `still ${String(e)}`);
      assertEquals([e.code, e.retryable], ["PROVIDER_UNAVAILABLE", true]);
      assertEquals(await store.command(["XLEN", keys.tasks("nosuch/v1")]), 0, "withdrawn");
    },
    (s) => lostReplies(s, "XPENDING", 1),
    { unservedMs: 300 },
  ));

Deno.test("a dispatch makes its stream's consumer group with the stream (every worker can look at its pending entries at once)", () =>
  withDispatcher(async (d, store) => {
    const keys = queueKeys(store.prefix);
    const controller = new AbortController();
    const call = d.call("fresh/v1", "m", {}, { ...ctx(), signal: controller.signal })
      .then((v) => v, (e) => e);
    let groups: unknown[] = [];
    const until = Date.now() + 10_000;
    while (groups.length === 0 && Date.now() < until) {
      if (await store.command(["EXISTS", keys.tasks("fresh/v1")]) === 1) {
        groups = await store.command(["XINFO", "GROUPS", keys.tasks("fresh/v1")]) as unknown[];
        break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    assertEquals(groups.length, 1, "one group, made with the stream");
    assertEquals(await store.command(["SISMEMBER", keys.taskStreams, "fresh/v1"]), 1);
    controller.abort(new GleitzeitError("TASK_CANCELLED", "done"));
    await call;
  }));

Deno.test("an attempt aborted before its entry was added to the stream is withdrawn all the same", () =>
  withDispatcher(async (d, store) => {
    const { controller, settled } = abortable(d);
    controller.abort(new GleitzeitError("TASK_TIMEOUT", "timed out")); // before the reply
    assertEquals((await settled as GleitzeitError).code, "TASK_TIMEOUT");
    const stream = queueKeys(store.prefix).tasks("echo/v1");
    // (the dispatch's reply comes after the abort: the entry goes once it is there)
    const until = Date.now() + 10_000;
    while (Date.now() < until && Number(await store.command(["XLEN", stream])) > 0) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assertEquals(Number(await store.command(["XLEN", stream])), 0, "left in the stream");
  }));
