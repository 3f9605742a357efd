/**
 * Registry mechanics with in-process providers: least-in-flight then round-robin balancing,
 * queueing under limits (and cancelling a queued call), health probes that take a provider
 * out and bring it back, aliases, stats, timers stopped by close().
 */

import { assertEquals, assertOk, rejects } from "../jsonrpc/assert.ts";
import { GleitzeitError } from "../../../src/core/errors.ts";
import type { CallContext, HealthReport, Provider } from "../../../src/providers/provider.ts";
import { ProviderRegistry, type RegistryOptions } from "../../../src/providers/registry.ts";
import { ctx } from "./helpers.ts";

class Worker implements Provider {
  readonly protocol = "work/v1";
  served = 0;
  active = 0;
  peak = 0;
  healthy = true;
  probes = 0;
  failNext?: GleitzeitError;
  constructor(readonly id: string, private delayMs = 0) {}
  async call(_m: string, params: Record<string, unknown>, c: CallContext): Promise<unknown> {
    if (this.failNext) {
      const e = this.failNext;
      this.failNext = undefined;
      throw e;
    }
    this.active++;
    this.peak = Math.max(this.peak, this.active);
    try {
      const ms = typeof params.ms === "number" ? params.ms : this.delayMs;
      if (ms > 0) {
        await new Promise<void>((resolve, reject) => {
          const t = setTimeout(resolve, ms);
          c.signal.addEventListener("abort", () => (clearTimeout(t), reject(c.signal.reason)), {
            once: true,
          });
        });
      }
      this.served++;
      return { by: this.id };
    } finally {
      this.active--;
    }
  }
  health(): Promise<HealthReport> {
    this.probes++;
    return Promise.resolve({ healthy: this.healthy });
  }
}

function registry(options: RegistryOptions = {}): ProviderRegistry {
  const r = new ProviderRegistry(options);
  r.registerProtocol({
    protocol: "work/v1",
    methods: [{ name: "work", params: { type: "object" } }],
  });
  return r;
}

Deno.test("registry: sequential calls alternate (round robin), concurrent ones go to the least busy", async () => {
  const r = registry();
  const a = new Worker("a", 0), b = new Worker("b", 0), c = new Worker("c", 0);
  r.register(a);
  r.register(b);
  r.register(c);
  const seq: string[] = [];
  for (let i = 0; i < 6; i++) {
    seq.push(((await r.call("work/v1", "work", {}, ctx())) as { by: string }).by);
  }
  assertEquals(seq, ["a", "b", "c", "a", "b", "c"]);
  // a is busy with a long call: the next two go elsewhere
  const long = r.call("work/v1", "work", { ms: 100 }, ctx());
  await new Promise((res) => setTimeout(res, 0));
  const busy = r.stats().find((s) => s.inFlight === 1)!.id;
  const next = await Promise.all([
    r.call("work/v1", "work", { ms: 10 }, ctx()),
    r.call("work/v1", "work", { ms: 10 }, ctx()),
  ]) as { by: string }[];
  assertOk(next.every((n) => n.by !== busy), `${busy} was busy, got ${next.map((n) => n.by)}`);
  await long;
  await r.close();
});

Deno.test("registry: a concurrency limit queues calls (FIFO); a queued call can be cancelled", async () => {
  const r = registry();
  const w = new Worker("w", 30);
  r.register(w, { maxConcurrency: 1 });
  const order: number[] = [];
  const calls = [0, 1, 2, 3].map((i) =>
    r.call("work/v1", "work", {}, ctx()).then(() => order.push(i))
  );
  const ac = new AbortController();
  const cancelled = r.call("work/v1", "work", {}, ctx(ac.signal));
  await new Promise((res) => setTimeout(res, 0));
  assertEquals(r.stats()[0]!.queued, 4);
  ac.abort();
  const err = await rejects(cancelled) as GleitzeitError;
  assertEquals(err.code, "TASK_CANCELLED");
  await Promise.all(calls);
  assertEquals(order, [0, 1, 2, 3]);
  assertEquals([w.peak, w.served], [1, 4]);
  assertEquals(r.stats()[0]!.queued, 0);
  await r.close();
});

Deno.test("registry: a rate limit shared by two providers holds both", async () => {
  const r = registry();
  const { RateLimiter } = await import("../../../src/providers/rate_limiter.ts");
  const shared = new RateLimiter({ requests: 3, perSeconds: 0.2 });
  r.register(new Worker("a"), { rateLimit: shared });
  r.register(new Worker("b"), { rateLimit: shared });
  const t0 = performance.now();
  const times = await Promise.all(
    Array.from(
      { length: 7 },
      () => r.call("work/v1", "work", {}, ctx()).then(() => performance.now() - t0),
    ),
  );
  times.sort((x, y) => x - y);
  assertOk(
    // 3 per 0.2 s window: the lower bounds hold on any machine; the upper ones only say each
    // group fits its own window (a loaded event loop may be late, but not a whole window)
    times[2]! < 190 && times[3]! >= 190 && times[5]! < 390 && times[6]! >= 390,
    times.join(" "),
  );
  assertEquals(r.stats()[0]!.rateLimit, { requests: 3, perSeconds: 0.2 });
  await r.close();
});

Deno.test("registry: periodic probes take an unhealthy provider out and bring it back", async () => {
  const r = registry({ healthIntervalMs: 40, unhealthyIntervalMs: 40 });
  const a = new Worker("a"), b = new Worker("b");
  r.register(a);
  r.register(b);
  b.healthy = false;
  await until(() => r.stats()[1]!.status === "unhealthy", "a probe finds b unhealthy");
  assertEquals(r.stats().map((s) => s.status), ["healthy", "unhealthy"]);
  for (let i = 0; i < 6; i++) await r.call("work/v1", "work", {}, ctx());
  assertEquals([a.served, b.served], [6, 0]);
  const probesWhileDown = b.probes;
  b.healthy = true;
  await until(() => r.stats()[1]!.status === "healthy", "a probe brings b back");
  assertOk(b.probes > probesWhileDown, "kept probing the unhealthy one");
  assertEquals(r.stats().map((s) => s.status), ["healthy", "healthy"]);
  for (let i = 0; i < 4; i++) await r.call("work/v1", "work", {}, ctx());
  assertOk(b.served >= 2, `b is back in rotation (${b.served})`);
  await r.close();
  const probes = a.probes;
  await new Promise((res) => setTimeout(res, 100));
  assertEquals(a.probes, probes, "close() stopped the probes");
});

Deno.test("registry: a provider that reports itself unavailable is taken out until a probe passes", async () => {
  const r = registry({ unhealthyIntervalMs: 30 });
  const a = new Worker("a"), b = new Worker("b");
  r.register(a);
  r.register(b);
  a.healthy = false;
  a.failNext = new GleitzeitError("PROVIDER_UNAVAILABLE", "a died");
  const err = await rejects(r.call("work/v1", "work", {}, ctx())) as GleitzeitError;
  assertEquals([err.code, err.retryable], ["PROVIDER_UNAVAILABLE", true]);
  assertEquals(r.stats().find((s) => s.id === "a")!.status, "unhealthy");
  for (let i = 0; i < 4; i++) await r.call("work/v1", "work", {}, ctx());
  assertEquals(a.served, 0);
  a.healthy = true;
  await until(() => r.stats().find((s) => s.id === "a")!.status === "healthy", "a probe passes");
  await r.close();
});

Deno.test("registry: health(id), not-started providers, aliases, unknown ids", async () => {
  const r = registry();
  let started = 0;
  r.registerFactory("work/v1", () => {
    started++;
    return Promise.resolve([new Worker("lazy")]);
  }, { ids: ["lazy"] });
  assertEquals(r.stats().map((s) => [s.id, s.status, s.methods]), [["lazy", "not_started", [
    "work",
  ]]]);
  assertEquals((await r.health()).map((h) => [h.id, h.report.healthy]), [["lazy", false]]);
  assertEquals(started, 0);
  assertEquals((await r.health("lazy")).map((h) => [h.id, h.report.healthy]), [["lazy", true]]);
  assertEquals(started, 1);
  r.registerAlias("work/latest", "work/v1");
  assertEquals(await r.call("work/latest", "work", {}, ctx()), { by: "lazy" });
  assertEquals((await rejects(r.health("ghost")) as GleitzeitError).code, "PROVIDER_NOT_FOUND");
  await r.close();
  assertEquals(
    (await rejects(r.call("work/v1", "work", {}, ctx())) as GleitzeitError).code,
    "PROVIDER_UNAVAILABLE",
  );
});

Deno.test("registry: protocolHealth lists a protocol unhealthy while all its providers are, healthy once one recovers", async () => {
  const r = registry({ unhealthyIntervalMs: 30 });
  r.registerProtocol({
    protocol: "lazy/v1",
    methods: [{ name: "go", params: { type: "object" } }],
  });
  r.registerFactory("lazy/v1", () => Promise.resolve([]), { ids: ["never"] });
  r.registerAlias("work/latest", "work/v1");
  assertEquals(
    r.protocolHealth(),
    { healthy: ["lazy/v1"], unhealthy: [], reasons: {} },
    "not started: healthy",
  );
  const a = new Worker("a"), b = new Worker("b");
  r.register(a);
  r.register(b);
  assertEquals(r.protocolHealth().healthy, ["lazy/v1", "work/latest", "work/v1"]);
  a.healthy = false;
  b.healthy = false;
  await r.health();
  const sick = r.protocolHealth();
  assertEquals([sick.healthy, sick.unhealthy], [["lazy/v1"], ["work/latest", "work/v1"]]);
  assertEquals(Object.keys(sick.reasons).sort(), ["work/latest", "work/v1"], "with reasons");
  b.healthy = true; // the registry probes it again by itself
  await until(() => r.protocolHealth().healthy.includes("work/v1"), "b recovers");
  assertEquals(r.protocolHealth().unhealthy, [], "one healthy provider is enough");
  await r.close();
});

Deno.test("registry: only a configuration error makes a protocol unservable; a plain failure to make providers counts as unhealthy", async () => {
  const r = registry();
  for (const protocol of ["conf/v1", "plain/v1"]) {
    r.registerProtocol({ protocol, methods: [{ name: "go", params: { type: "object" } }] });
  }
  r.registerFactory("conf/v1", () => {
    throw new GleitzeitError("PROVIDER_NOT_FOUND", "conf/v1 is ambiguous: a or b");
  });
  r.registerFactory("plain/v1", () => {
    throw new Error("out of file descriptors"); // (might pass: no configuration error)
  });
  // a family whose factory makes nothing: every protocol of it not served otherwise
  r.registerFactory("fam/*", (p) => Promise.reject(new GleitzeitError("PROVIDER_NOT_FOUND", p)), {
    unknown: new GleitzeitError("PROVIDER_NOT_FOUND", "no server of that name (configured: a)"),
  });
  // (a family whose factory may make providers says nothing)
  r.registerFactory("any/*", () => Promise.reject(new Error("not now")));
  await r.startAll().catch(() => {});
  const unservable = r.unservable();
  assertEquals(Object.keys(unservable).sort(), ["conf/v1", "fam/*"]);
  assertEquals(unservable["conf/v1"]!.code, "PROVIDER_NOT_FOUND");
  assertEquals(unservable["fam/*"]!.message, "no server of that name (configured: a)");
  const health = r.protocolHealth();
  assertOk(health.unhealthy.includes("plain/v1"), JSON.stringify(health));
  assertOk(!health.healthy.includes("plain/v1"), JSON.stringify(health));
  await r.close();
});

/** Polls `cond` (probes run on timers: a loaded machine runs them late, not never). */
async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out waiting until ${what}`);
    await new Promise((res) => setTimeout(res, 10));
  }
}

Deno.test("registry: a call aborted while its providers start is rejected then, and takes no place later", async () => {
  const r = registry();
  const w = new Worker("w", 0);
  r.registerFactory(
    "work/v1",
    () => new Promise((res) => setTimeout(() => res([w]), 100)),
    { ids: ["w"] },
  );
  const gone = new AbortController();
  const call = r.call("work/v1", "work", {}, ctx(gone.signal));
  setTimeout(() => gone.abort(new GleitzeitError("TASK_CANCELLED", "gone")), 20);
  const e = await rejects(call);
  assertOk(e instanceof GleitzeitError && e.message === "gone", String(e));
  // the provider takes its next call as usual: nothing of the aborted one holds a place
  assertEquals(await r.call("work/v1", "work", {}, ctx()), { by: "w" });
  assertEquals(w.served, 1);
  assertEquals(r.stats().find((s) => s.id === "w")?.queued, 0);
  await r.close();
});
