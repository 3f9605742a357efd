/**
 * RemoteDispatcher (src/distributed/work_queue.ts) against the real Redis: a coordinator's
 * attempts in flight when reading its replies fails for a moment.
 */

import { assert, assertEquals } from "../assert.ts";
import { GleitzeitError } from "../../src/core/errors.ts";
import { ensureGroup, queueKeys, RemoteDispatcher } from "../../src/distributed/work_queue.ts";
import { RedisStore } from "../../src/persistence/redis_store.ts";

async function withDispatcher(
  fn: (d: RemoteDispatcher, store: RedisStore, kill: () => Promise<void>) => Promise<void>,
  wrap: (store: RedisStore) => RedisStore = (s) => s,
): Promise<void> {
  const prefix = `gz-dispatch-test-${crypto.randomUUID().slice(0, 8)}:`;
  const store = await RedisStore.connect({ prefix });
  const reader = await store.sibling();
  await ensureGroup(store, queueKeys(prefix).tasks);
  const owner = `test:${Deno.pid}:${crypto.randomUUID().slice(0, 6)}`;
  const d = new RemoteDispatcher(wrap(store), reader, owner, 1_000);
  // the dispatcher's reply reader loses its connection: its read fails once, then it reconnects
  const kill = async () => {
    const mine = String(await reader.command(["CLIENT", "ID"]));
    await store.command(["CLIENT", "KILL", "ID", mine]);
  };
  try {
    await fn(d, store, kill);
  } finally {
    await d.close();
    const left = await store.command(["KEYS", `${prefix}*`]) as string[];
    if (left.length > 0) await store.command(["DEL", ...left]);
    await reader.close();
    await store.close();
  }
}

/** The reply stream and dispatch id of the one attempt on the tasks stream. */
async function dispatched(store: RedisStore): Promise<{ reply: string; id: string }> {
  const keys = queueKeys(store.prefix);
  const entries = await store.command(["XRANGE", keys.tasks, "-", "+"]) as [string, string[]][];
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
    const entries = await store.command(["XRANGE", keys.tasks, "-", "+"]) as [string, string[]][];
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
    const entries = await store.command(["XRANGE", keys.tasks, "-", "+"]) as [string, string[]][];
    await store.command(["XDEL", keys.tasks, entries[0]![0]]); // as a Redis that lost its data
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
