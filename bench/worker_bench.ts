/**
 * Workers benchmark (a script, not a test): a fan-out of N no-op echo/v1 tasks executed through
 * `gleitzeit worker`'s path (runs queue -> coordinating worker -> tasks stream -> executing
 * workers -> reply stream), beside, in the same run on the same Redis:
 *
 *   raw stream trip   per task: XADD, XREADGROUP, XADD reply, XACK, XDEL, XREAD reply, each
 *                     command awaited in turn, as many in flight as the workers' slots (a plain
 *                     hand-off through streams, no store writes, no engine)
 *   local engine      the same workflow run by the Engine in one process on the Redis store
 *
 *   deno run -A bench/worker_bench.ts [--tasks 500] [--workers 2] [--concurrency 16] [--reps 3]
 *
 * Ratios are tasks/s of the workers path over each baseline (medians of interleaved rounds).
 *
 * @module
 */

import { echoWorkflow } from "./echo_workflow.ts";
import { Engine } from "../src/engine/engine.ts";
import { Worker } from "../src/distributed/worker.ts";
import { enqueueRun } from "../src/distributed/work_queue.ts";
import { RedisStore } from "../src/persistence/redis_store.ts";
import { ECHO_PROTOCOL, EchoProvider } from "../src/providers/echo/echo_provider.ts";
import { ProviderRegistry } from "../src/providers/registry.ts";

function arg(name: string, fallback: number): number {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Number(Deno.args[i + 1]) : fallback;
}
const N = arg("--tasks", 500);
const WORKERS = arg("--workers", 2);
const CONCURRENCY = arg("--concurrency", 16);
const REPS = arg("--reps", 3);
const URL = "redis://127.0.0.1:6379";

function registry(): ProviderRegistry {
  const r = new ProviderRegistry({ healthIntervalMs: 0 });
  r.registerProtocol(ECHO_PROTOCOL);
  r.register(new EchoProvider());
  return r;
}

async function cleanup(store: RedisStore): Promise<void> {
  let cursor = "0";
  do {
    const [next, keys] = await store.command([
      "SCAN",
      cursor,
      "MATCH",
      `${store.prefix}*`,
      "COUNT",
      "1000",
    ]) as [string, string[]];
    cursor = next;
    if (keys.length > 0) await store.command(["UNLINK", ...keys]);
  } while (cursor !== "0");
}

/** Raw hand-off through streams, `inFlight` messages at a time. */
async function rawTrip(prefix: string, n: number, inFlight: number): Promise<number> {
  const [a, b, c] = await Promise.all(
    [0, 1, 2].map(() => RedisStore.connect({ url: URL, prefix })),
  );
  const tasks = `${prefix}raw:tasks`;
  const replies = `${prefix}raw:replies`;
  await a!.command(["XGROUP", "CREATE", tasks, "g", "0", "MKSTREAM"]);
  let done = 0;
  let sent = 0;
  const t0 = performance.now();
  const consumer = (async () => {
    while (done < n) {
      const raw = await b!.command([
        "XREADGROUP",
        "GROUP",
        "g",
        "c",
        "COUNT",
        "64",
        "BLOCK",
        "100",
        "STREAMS",
        tasks,
        ">",
      ]) as [string, [string, string[]][]][] | null;
      for (const [id, fields] of raw?.[0]?.[1] ?? []) {
        await b!.command(["XADD", replies, "*", "d", fields[1]!]);
        await b!.command(["XACK", tasks, "g", id]);
        await b!.command(["XDEL", tasks, id]);
      }
    }
  })();
  let last = "0-0";
  const send = () => a!.command(["XADD", tasks, "*", "d", String(sent++)]);
  for (let i = 0; i < Math.min(inFlight, n); i++) await send();
  while (done < n) {
    const raw = await c!.command([
      "XREAD",
      "COUNT",
      "256",
      "BLOCK",
      "100",
      "STREAMS",
      replies,
      last,
    ]) as
      | [string, [string, string[]][]][]
      | null;
    for (const [id] of raw?.[0]?.[1] ?? []) {
      last = id;
      done++;
      if (sent < n) await send();
    }
  }
  const ms = performance.now() - t0;
  await consumer;
  await cleanup(a!);
  await Promise.all([a!, b!, c!].map((s) => s.close()));
  return n / (ms / 1000);
}

async function localEngine(prefix: string, n: number): Promise<number> {
  const store = await RedisStore.connect({ url: URL, prefix });
  const reg = registry();
  const engine = new Engine({ dispatcher: reg, store, maxConcurrency: CONCURRENCY * WORKERS });
  const t0 = performance.now();
  const outcome = await engine.run(
    echoWorkflow(n, { name: "bench-fan-out", params: (i) => ({ i }) }),
  );
  const ms = performance.now() - t0;
  if (outcome.state !== "completed") throw new Error(`local run ${outcome.state}`);
  await cleanup(store);
  await reg.close();
  await store.close();
  return n / (ms / 1000);
}

async function viaWorkers(prefix: string, n: number): Promise<number> {
  const stores = await Promise.all(
    Array.from({ length: WORKERS + 1 }, () => RedisStore.connect({ url: URL, prefix })),
  );
  const [submitStore, ...workerStores] = stores;
  const regs = workerStores.map(() => registry());
  const workers = workerStores.map((store, i) =>
    new Worker({ store, registry: regs[i]!, concurrency: CONCURRENCY, leaseMs: 30_000 })
  );
  const loops = workers.map((w) => w.start());
  const engine = new Engine({ dispatcher: registry(), store: submitStore! });
  const t0 = performance.now();
  const run = await engine.createRun(
    echoWorkflow(n, { name: "bench-fan-out", params: (i) => ({ i }) }),
    { state: "queued" },
  );
  await enqueueRun(submitStore!, run.id);
  for (;;) {
    const r = await submitStore!.getRun(run.id);
    if (r && ["completed", "failed", "cancelled"].includes(r.state)) {
      if (r.state !== "completed") throw new Error(`run ${r.state}`);
      break;
    }
    await new Promise((res) => setTimeout(res, 5));
  }
  const ms = performance.now() - t0;
  await Promise.all(workers.map((w) => w.stop()));
  await Promise.all(loops);
  await cleanup(submitStore!);
  await Promise.all(regs.map((r) => r.close()));
  await Promise.all(stores.map((s) => s.close()));
  return n / (ms / 1000);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const raw: number[] = [];
const local: number[] = [];
const workers: number[] = [];
const vsRaw: number[] = [];
const vsLocal: number[] = [];
for (let rep = 0; rep < REPS; rep++) {
  const tag = `gz-bench-${crypto.randomUUID().slice(0, 8)}:`;
  const r = await rawTrip(`${tag}raw:`, N, CONCURRENCY * WORKERS);
  const l = await localEngine(`${tag}local:`, N);
  const w = await viaWorkers(`${tag}workers:`, N);
  raw.push(r);
  local.push(l);
  workers.push(w);
  vsRaw.push(w / r);
  vsLocal.push(w / l);
}
const f = (x: number) => x.toFixed(0).padStart(8);
console.log(
  `workers benchmark: ${N} echo tasks, ${WORKERS} workers x ${CONCURRENCY}, ${REPS} rounds (medians)`,
);
console.log(`raw stream trip (${CONCURRENCY * WORKERS} in flight)  ${f(median(raw))} tasks/s`);
console.log(`local engine on Redis               ${f(median(local))} tasks/s`);
console.log(`through workers                     ${f(median(workers))} tasks/s`);
console.log(`workers / raw stream trip   = ${median(vsRaw).toFixed(2)}x`);
console.log(`workers / local engine      = ${median(vsLocal).toFixed(2)}x`);
