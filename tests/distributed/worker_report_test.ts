/**
 * Worker (src/distributed/worker.ts) against the real Redis: what it answers for an attempt
 * when Redis fails for a moment, and when it is stopped.
 */

import { assert, assertEquals } from "../assert.ts";
import { endWorker } from "./helpers.ts";
import { ensureGroup, parseEntries, queueKeys } from "../../src/distributed/work_queue.ts";
import { REPORT_OWN, Worker } from "../../src/distributed/worker.ts";
import { RedisStore } from "../../src/persistence/redis_store.ts";
import { ECHO_PROTOCOL, EchoProvider } from "../../src/providers/echo/echo_provider.ts";
import { ProviderRegistry, type RegistryOptions } from "../../src/providers/registry.ts";
import type { CallContext, HealthReport } from "../../src/providers/provider.ts";

/** An echo provider that counts its calls. */
class CountingEcho extends EchoProvider {
  calls = 0;
  override call(method: string, params: Record<string, unknown>, ctx: CallContext) {
    this.calls++;
    return super.call(method, params, ctx);
  }
}

/** `store`, whose first `n` scripts containing `marker` fail as a dropped Redis would. */
function failingScripts(store: RedisStore, marker: string, n: number): RedisStore {
  let left = n;
  return new Proxy(store, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (prop === "command") {
        return (args: string[]) => {
          if (args[0] === "EVAL" && String(args[1]).includes(marker) && left > 0) {
            left--;
            return Promise.reject(new Error("injected: the connection dropped"));
          }
          return target.command(args);
        };
      }
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/** An echo provider whose `delay` answers after `seconds`, whatever its signal says. */
class Stubborn extends EchoProvider {
  override call(method: string, params: Record<string, unknown>, ctx: CallContext) {
    if (method !== "delay") return super.call(method, params, ctx);
    return new Promise((r) => setTimeout(() => r({ done: true }), Number(params.seconds) * 1000));
  }
}

/** A counting echo provider whose health the test sets. */
class Flaky extends CountingEcho {
  healthy = true;
  health(): Promise<HealthReport> {
    return Promise.resolve({ healthy: this.healthy, message: "flaky" });
  }
}

interface Harness {
  store: RedisStore;
  worker: Worker;
  log: string[];
  /**
   * Puts an attempt on the echo/v1 tasks stream (or `stream`), as a coordinator does; returns
   * its reply stream.
   */
  dispatch(method: string, params: Record<string, unknown>, stream?: string): Promise<string>;
  answers(reply: string): Promise<Record<string, string>[]>;
}

async function withWorker(
  provider: EchoProvider,
  wrap: (s: RedisStore) => RedisStore,
  fn: (h: Harness) => Promise<void>,
  registryOptions: RegistryOptions = { healthIntervalMs: 0 },
  options: {
    concurrency?: number;
    before?: (store: RedisStore) => Promise<void>;
    leaseMs?: number;
  } = {},
): Promise<void> {
  const prefix = `gz-report-test-${crypto.randomUUID().slice(0, 8)}:`;
  const store = await RedisStore.connect({ prefix });
  const keys = queueKeys(prefix);
  const registry = new ProviderRegistry(registryOptions);
  registry.registerProtocol(ECHO_PROTOCOL);
  registry.register(provider);
  const log: string[] = [];
  await options.before?.(store);
  const worker = new Worker({
    store: wrap(store),
    registry,
    concurrency: options.concurrency ?? 1,
    leaseMs: options.leaseMs ?? 1_000, // its own idle entries are looked at again after this
    log: (line) => log.push(line),
  });
  const running = worker.start();
  let seq = 0;
  try {
    await ensureGroup(store, keys.tasks("echo/v1"));
    await fn({
      store,
      worker,
      log,
      async dispatch(method, params, stream = keys.tasks("echo/v1")) {
        const reply = keys.replies("test-coordinator");
        const job = {
          protocol: "echo/v1",
          method,
          params,
          ctx: { runId: "run_r", taskId: "t", attempt: 1 },
        };
        await store.command([
          "XADD",
          stream,
          "*",
          "d",
          `run_r/t/1/${++seq}`,
          "reply",
          reply,
          "job",
          JSON.stringify(job),
        ]);
        return reply;
      },
      async answers(reply) {
        return parseEntries(await store.command(["XRANGE", reply, "-", "+"]))
          .filter((e) => e.fields.ok !== undefined).map((e) => e.fields);
      },
    });
  } finally {
    await endWorker(worker, running, registry, store, prefix);
  }
}

async function waitFor(what: string, check: () => Promise<boolean>, ms = 15_000) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

Deno.test("an answer that could not be sent is sent later; the attempt is not executed again", async () => {
  const echo = new CountingEcho();
  await withWorker(echo, (st) => failingScripts(st, "'ok', ARGV[2]", 1), async (h) => {
    const reply = await h.dispatch("echo", { x: 1 });
    await waitFor("the answer", async () => (await h.answers(reply)).length > 0);
    const [answer] = await h.answers(reply);
    assertEquals([answer!.d, answer!.ok, answer!.body], ["run_r/t/1/1", "1", '{"x":1}']);
    assertEquals(echo.calls, 1, "executed once");
    assert(h.log.some((l) => l.includes("sent again later")), h.log.join("\n"));
    assert(h.log.some((l) => l.includes("answered run_r/t attempt 1")), h.log.join("\n"));
    const keys = queueKeys(h.store.prefix);
    const pending = await h.store.command([
      "XPENDING",
      keys.tasks("echo/v1"),
      "workers",
    ]) as unknown[];
    assertEquals(pending[0], 0, "its entry is acknowledged");
  });
});

Deno.test("an answer that could not be sent goes out once Redis answers again, not a lease later", async () => {
  const echo = new CountingEcho();
  // the answer and its first two tries again fail (~0.25 s, then ~0.5 s later)
  await withWorker(
    echo,
    (st) => failingScripts(st, "'ok', ARGV[2]", 3),
    async (h) => {
      const reply = await h.dispatch("echo", { x: 2 });
      // (a look at its own idle entries would send it only after the 60 s lease)
      await waitFor("the answer", async () => (await h.answers(reply)).length > 0, 10_000);
      const [answer] = await h.answers(reply);
      assertEquals([answer!.ok, answer!.body], ["1", '{"x":2}']);
      assertEquals(echo.calls, 1, "executed once");
      assert(
        h.log.some((l) => l.includes("answered run_r/t attempt 1 (the answer could not be sent")),
        h.log.join("\n"),
      );
      const pending = await h.store.command([
        "XPENDING",
        queueKeys(h.store.prefix).tasks("echo/v1"),
        "workers",
      ]) as unknown[];
      assertEquals(pending[0], 0, "its entry is acknowledged");
    },
    undefined,
    { leaseMs: 60_000 },
  );
});

Deno.test("a kept answer is not sent for an entry another worker has taken over meanwhile", async () => {
  const prefix = `gz-report-test-${crypto.randomUUID().slice(0, 8)}:`;
  const store = await RedisStore.connect({ prefix });
  const stream = `${prefix}own-test`;
  const reply = `${prefix}own-test-reply`;
  try {
    await store.command(["XGROUP", "CREATE", stream, "workers", "$", "MKSTREAM"]);
    const id = String(await store.command(["XADD", stream, "*", "d", "x"]));
    // taken by worker "a", then over by "b"
    await store.command([
      "XREADGROUP",
      "GROUP",
      "workers",
      "a",
      "COUNT",
      "1",
      "STREAMS",
      stream,
      ">",
    ]);
    await store.command(["XCLAIM", stream, "workers", "b", "0", id]);
    const send = (owner: string) =>
      store.command([
        "EVAL",
        REPORT_OWN,
        "2",
        reply,
        stream,
        "x",
        "1",
        "{}",
        owner,
        "60",
        "workers",
        id,
      ]);
    assertEquals(Number(await send("a")), -2, "no longer a's");
    assertEquals(await store.command(["XLEN", reply]), 0, "nothing answered");
    assertEquals(Number(await send("b")), 1, "b's: answered, acknowledged and removed");
    assertEquals(await store.command(["XLEN", reply]), 1);
    assertEquals(await store.command(["XLEN", stream]), 0);
    // once answered, pending with no one: not answered again
    assertEquals(Number(await send("b")), -1, "answered already");
    assertEquals(await store.command(["XLEN", reply]), 1);
  } finally {
    await store.command(["DEL", stream, reply]);
    await store.close();
  }
});

Deno.test("Redis failing for an attempt's first look does not end the worker; the attempt runs once Redis answers", async () => {
  const echo = new CountingEcho();
  await withWorker(echo, (st) => failingScripts(st, "'began'", 1), async (h) => {
    const reply = await h.dispatch("echo", { x: 2 });
    // looked at again once idle for the worker's lease (1 s)
    await waitFor("the answer", async () => (await h.answers(reply)).length > 0);
    assertEquals((await h.answers(reply))[0]!.ok, "1");
    assertEquals(echo.calls, 1);
    assert(h.log.some((l) => l.includes("tried again later")), h.log.join("\n"));
  });
});

Deno.test("a worker stopped while an attempt finishes anyway keeps its answer (not 'stopped')", async () => {
  await withWorker(new Stubborn(), (st) => st, async (h) => {
    const reply = await h.dispatch("delay", { seconds: 0.4 });
    await waitFor(
      "the attempt to start",
      () => Promise.resolve(h.log.some((l) => l.includes("executing "))),
    );
    await h.worker.stop();
    const [answer] = await h.answers(reply);
    assertEquals([answer?.ok, answer?.body], ["1", '{"done":true}'], JSON.stringify(answer));
  });
});

Deno.test("an attempt left in the older single tasks stream (an upgrade) is executed and answered", async () => {
  const echo = new CountingEcho();
  await withWorker(echo, (st) => st, async (h) => {
    const keys = queueKeys(h.store.prefix);
    const reply = await h.dispatch("echo", { old: true }, keys.legacyTasks);
    await waitFor("the answer", async () => (await h.answers(reply)).length > 0);
    const [answer] = await h.answers(reply);
    assertEquals([answer!.ok, answer!.body], ["1", '{"old":true}']);
    assertEquals(echo.calls, 1);
    assertEquals(await h.store.command(["XLEN", keys.legacyTasks]), 0, "drained");
  });
});

Deno.test("a worker takes no attempts of a protocol while its provider is unhealthy, and takes them again once it recovers", async () => {
  const echo = new Flaky();
  await withWorker(echo, (st) => st, async (h) => {
    const keys = queueKeys(h.store.prefix);
    const registered = async () =>
      JSON.parse(String(await h.store.command(["GET", keys.worker(h.worker.owner)])));
    await waitFor(
      "the worker to register",
      async () => (await registered())?.protocols.includes("echo/v1") === true,
    );
    // the worker is idle, blocked reading the echo/v1 stream, when its provider turns unhealthy
    echo.healthy = false;
    await waitFor(
      "the worker to say it takes no echo/v1 tasks",
      async () => (await registered()).unhealthy.includes("echo/v1"),
      10_000,
    );
    assert(!(await registered()).protocols.includes("echo/v1"));
    assert(h.log.some((l) => l.includes("not taking echo/v1 tasks")), h.log.join("\n"));
    const reply = await h.dispatch("echo", { x: 3 });
    await new Promise((r) => setTimeout(r, 2000));
    assertEquals(await h.answers(reply), [], "not taken while unhealthy");
    assertEquals(echo.calls, 0);
    const pending = await h.store.command(["XPENDING", keys.tasks("echo/v1"), "workers"]);
    assertEquals((pending as unknown[])[0], 0, "not even read");
    echo.healthy = true;
    await waitFor("the answer", async () => (await h.answers(reply)).length > 0, 10_000);
    assertEquals((await h.answers(reply))[0]!.ok, "1");
    assertEquals(echo.calls, 1);
    assert(h.log.some((l) => l.includes("taking echo/v1 tasks")), h.log.join("\n"));
  }, { healthIntervalMs: 100, unhealthyIntervalMs: 100 });
});

/** An echo provider that records the most `delay` calls it ran at once. */
class Overlap extends CountingEcho {
  now = 0;
  most = 0;
  override async call(method: string, params: Record<string, unknown>, ctx: CallContext) {
    this.now++;
    this.most = Math.max(this.most, this.now);
    try {
      return await super.call(method, params, ctx);
    } finally {
      this.now--;
    }
  }
}

/** Puts an echo attempt on `stream` as a coordinator would; returns its reply stream. */
async function addAttempt(
  store: RedisStore,
  stream: string,
  d: string,
  method: string,
  params: Record<string, unknown>,
): Promise<string> {
  const reply = queueKeys(store.prefix).replies("test-coordinator");
  const job = {
    protocol: "echo/v1",
    method,
    params,
    ctx: { runId: "run_r", taskId: d, attempt: 1 },
  };
  await store.command(["XADD", stream, "*", "d", d, "reply", reply, "job", JSON.stringify(job)]);
  return reply;
}

Deno.test("a dead worker's attempt is taken over although another protocol's stream has no consumer group", async () => {
  const echo = new CountingEcho();
  await withWorker(echo, (st) => st, async (h) => {
    const keys = queueKeys(h.store.prefix);
    // echo/v1: an attempt a worker read and then died with (no lease key of it)
    await ensureGroup(h.store, keys.tasks("echo/v1"));
    const reply = await addAttempt(h.store, keys.tasks("echo/v1"), "run_r/lost/1/1", "echo", {});
    await h.store.command([
      "XREADGROUP",
      "GROUP",
      "workers",
      "dead-worker",
      "COUNT",
      "1",
      "STREAMS",
      keys.tasks("echo/v1"),
      ">",
    ]);
    // a stream no worker has read yet, listed among the protocols' streams, without a group
    // (sorted before echo/v1, so that looking at it comes first)
    await h.store.command(["XADD", keys.tasks("a/v1"), "*", "d", "x", "job", "{}"]);
    await h.store.command(["SADD", keys.taskStreams, "a/v1"]);
    await waitFor("the lost attempt's answer", async () => (await h.answers(reply)).length > 0);
    const [answer] = await h.answers(reply);
    assertEquals(answer!.ok, "0");
    assertEquals(JSON.parse(answer!.body!).code, "LEASE_EXPIRED", answer!.body);
    assertEquals(echo.calls, 0, "answered as lost, not executed");
    assert(!h.log.some((l) => l.includes("NOGROUP")), h.log.join("\n"));
  });
});

Deno.test("a worker reading several streams never executes more attempts than its concurrency", async () => {
  const echo = new Overlap();
  const replies: string[] = [];
  await withWorker(
    echo,
    (st) => st,
    async (h) => {
      const keys = queueKeys(h.store.prefix);
      let held = 0; // the most entries of both streams pending for it at one moment
      await waitFor("every answer", async () => {
        const [a, b] = await h.store.command([
          "EVAL",
          "return {redis.call('XPENDING', KEYS[1], 'workers')[1], " +
          "redis.call('XPENDING', KEYS[2], 'workers')[1]}",
          "2",
          keys.legacyTasks,
          keys.tasks("echo/v1"),
        ]) as [number, number];
        held = Math.max(held, a + b);
        const all = await Promise.all([...new Set(replies)].map((r) => h.answers(r)));
        return all.flat().length === 6;
      }, 30_000);
      assert(held <= 2, `held ${held} entries at once`);
      assertEquals(echo.calls, 6);
      assertEquals(echo.most, 2, "two at a time, not more");
    },
    undefined,
    {
      concurrency: 2,
      // waiting before the worker starts: in the older single stream and in echo/v1's
      before: async (store) => {
        const keys = queueKeys(store.prefix);
        for (const stream of [keys.legacyTasks, keys.tasks("echo/v1")]) {
          await ensureGroup(store, stream);
          for (let i = 0; i < 3; i++) {
            replies.push(
              await addAttempt(store, stream, `run_r/${stream}${i}/1/1`, "delay", {
                seconds: 0.5,
              }),
            );
          }
        }
      },
    },
  );
});
