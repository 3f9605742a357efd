/**
 * A worker's --concurrency holds however its slots are filled (real Worker, real Redis): new
 * entries taken from the streams, and its own idle entries it starts again (#reclaim), never
 * add up to more than its free slots; and an attempt is taken by one idle worker, not fought
 * over by all of them.
 */

import { assert, assertEquals } from "../assert.ts";
import { dropKeys, endWorker } from "./helpers.ts";
import {
  ensureGroup,
  listWorkers,
  queueKeys,
  RemoteDispatcher,
} from "../../src/distributed/work_queue.ts";
import { Worker } from "../../src/distributed/worker.ts";
import { RedisStore } from "../../src/persistence/redis_store.ts";
import { ECHO_PROTOCOL, EchoProvider } from "../../src/providers/echo/echo_provider.ts";
import type { CallContext } from "../../src/providers/provider.ts";
import { ProviderRegistry } from "../../src/providers/registry.ts";

/** Echo whose `delay` holds its slot for a while, counting how many run at once. */
class Counting extends EchoProvider {
  inFlight = 0;
  maxInFlight = 0;
  done = 0;
  override async call(method: string, params: Record<string, unknown>, ctx: CallContext) {
    if (method !== "delay") return super.call(method, params, ctx);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      await new Promise((r) => setTimeout(r, 1500));
      return { done: true };
    } finally {
      this.inFlight--;
      this.done++;
    }
  }
}

Deno.test("a worker starting its own idle entries again while new ones arrive never executes more attempts than its concurrency", async () => {
  const prefix = `gz-slots-test-${crypto.randomUUID().slice(0, 8)}:`;
  const store = await RedisStore.connect({ prefix });
  const keys = queueKeys(prefix);
  const stream = keys.tasks("echo/v1");
  const owner = `slots-w-${crypto.randomUUID().slice(0, 6)}`;
  let seq = 0;
  const add = async () => {
    const job = {
      protocol: "echo/v1",
      method: "delay",
      params: { seconds: 1 },
      ctx: { runId: "run_s", taskId: `t${seq}`, attempt: 1 },
    };
    await store.command([
      "XADD",
      stream,
      "*",
      "d",
      `run_s/t${seq}/1/${++seq}`,
      "reply",
      keys.replies("slots-coordinator"),
      "job",
      JSON.stringify(job),
    ]);
  };
  await ensureGroup(store, stream);
  await store.command(["SADD", keys.taskStreams, "echo/v1"]);
  // two entries this worker (its owner name) read and never started: pending, idle past its
  // lease when it starts, so that its first upkeep starts them again
  await add();
  await add();
  await store.command([
    "XREADGROUP",
    "GROUP",
    "workers",
    owner,
    "COUNT",
    "2",
    "STREAMS",
    stream,
    ">",
  ]);
  await new Promise((r) => setTimeout(r, 1200));
  // While that upkeep looks at the stream's pending entries, two new entries arrive (and the
  // look takes a while: several streams, a slow round trip): the task reader takes them into
  // the same free slots unless the upkeep holds them.
  let arrived = false;
  const slowed = new Proxy(store, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (prop === "command") {
        return async (args: string[]) => {
          if (args[0] === "XPENDING" && args[1] === stream && !arrived) {
            arrived = true;
            await add();
            await add();
            await new Promise((r) => setTimeout(r, 700));
          }
          return await target.command(args);
        };
      }
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  const registry = new ProviderRegistry({ healthIntervalMs: 0 });
  registry.registerProtocol(ECHO_PROTOCOL);
  const provider = new Counting();
  registry.register(provider);
  const worker = new Worker({ store: slowed, registry, concurrency: 2, leaseMs: 1000, owner });
  const running = worker.start();
  try {
    const until = Date.now() + 60_000;
    while (provider.done < 4 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    assert(arrived, "the upkeep never looked at the pending entries");
    assertEquals(provider.done, 4, "not all four attempts ran");
    assert(
      provider.maxInFlight <= 2,
      `executed ${provider.maxInFlight} attempts at once with --concurrency 2`,
    );
  } finally {
    await endWorker(worker, running, registry, store, prefix);
  }
});

/** `store`, and every connection made from it, counting the commands sent on them. */
function counted(store: RedisStore, counter: { n: number }): RedisStore {
  return new Proxy(store, {
    get(target, prop) {
      if (prop === "command") {
        return (args: string[]) => {
          counter.n++;
          return target.command(args);
        };
      }
      if (prop === "sibling") {
        return async () => counted(await target.sibling(), counter);
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/** Commands the idle workers (`n` of them) send per attempt of a stream of attempts. */
async function commandsPerAttempt(n: number): Promise<number> {
  const prefix = `gz-herd-test-${crypto.randomUUID().slice(0, 8)}:`;
  const store = await RedisStore.connect({ prefix });
  const reader = await store.sibling();
  const counter = { n: 0 };
  const workers: { worker: Worker; running: Promise<void>; registry: ProviderRegistry }[] = [];
  const dispatcher = new RemoteDispatcher(store, reader, `herd-coord:${Deno.pid}:x`);
  try {
    for (let i = 0; i < n; i++) {
      const registry = new ProviderRegistry({ healthIntervalMs: 0 });
      registry.registerProtocol(ECHO_PROTOCOL);
      registry.register(new EchoProvider());
      const worker = new Worker({
        store: counted(await store.sibling(), counter),
        registry,
        concurrency: 4,
        leaseMs: 60_000,
      });
      workers.push({ worker, running: worker.start(), registry });
    }
    const until = Date.now() + 30_000;
    while ((await listWorkers(store)).length < n && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const N = 60;
    const before = counter.n;
    const outcomes: Promise<unknown>[] = [];
    for (let i = 0; i < N; i++) {
      outcomes.push(dispatcher.call("echo/v1", "echo", { i }, {
        signal: new AbortController().signal,
        runId: "run_h",
        taskId: `t${i}`,
        attempt: 1,
      }));
      await new Promise((r) => setTimeout(r, 5)); // one at a time: the workers idle between
    }
    await Promise.all(outcomes);
    return (counter.n - before) / N;
  } finally {
    await dispatcher.close();
    for (const w of workers) {
      await w.worker.stop();
      await w.running;
      await w.registry.close();
    }
    await dropKeys(store, prefix);
    await reader.close();
    await store.close();
  }
}

Deno.test("an attempt is taken by one idle worker: the workers' Redis commands per attempt do not grow with the number of idle workers", async () => {
  const one = await commandsPerAttempt(1);
  const six = await commandsPerAttempt(6);
  // (the idle workers' reads that time out, one a second each, add a little)
  assert(
    six <= one + 2,
    `${six.toFixed(1)} commands per attempt with 6 idle workers, ${one.toFixed(1)} with one`,
  );
});
