/**
 * A worker without bubblewrap and Python tasks (real Worker, real Python, real Redis): tasks
 * that ask for `sandbox: basic` or `none` do not need bubblewrap and run there; tasks that need
 * it (bwrap, asked for or the worker's default) are not taken there.
 */

import { assert, assertEquals } from "../assert.ts";
import { dropKeys, endWorker } from "./helpers.ts";
import { GleitzeitError } from "../../src/core/errors.ts";
import { registerConfiguredProviders } from "../../src/config/providers_config.ts";
import { queueKeys, RemoteDispatcher } from "../../src/distributed/work_queue.ts";
import { Worker } from "../../src/distributed/worker.ts";
import { RedisStore } from "../../src/persistence/redis_store.ts";
import { PYTHON_PROTOCOL } from "../../src/providers/python/python_methods.ts";
import { PythonProvider } from "../../src/providers/python/python_provider.ts";
import { ProviderRegistry } from "../../src/providers/registry.ts";
import { ECHO_PROTOCOL, EchoProvider } from "../../src/providers/echo/echo_provider.ts";
import type { HealthReport } from "../../src/providers/provider.ts";

Deno.test("a worker without bubblewrap runs Python tasks that ask for sandbox basic or none; those that need bubblewrap wait for another worker", async () => {
  const prefix = `gz-routes-test-${crypto.randomUUID().slice(0, 8)}:`;
  const store = await RedisStore.connect({ prefix });
  const reader = await store.sibling();
  const registry = new ProviderRegistry({ healthIntervalMs: 0 });
  registry.registerProtocol(PYTHON_PROTOCOL);
  registry.register(new PythonProvider({ bwrapPath: "/nonexistent/bwrap", poolSize: 0 }));
  const log: string[] = [];
  const worker = new Worker({
    store,
    registry,
    concurrency: 2,
    leaseMs: 1_000,
    log: (line) => log.push(line),
  });
  const running = worker.start();
  // a coordinator of the same configuration (its registry says where each call goes)
  const d = new RemoteDispatcher(store, reader, `coord:${Deno.pid}:x`, {
    unservedMs: 1_000,
    routeOf: (protocol, ctx) => registry.routeOf(protocol, ctx),
  });
  const call = (taskId: string, sandbox?: { workflow?: unknown; task?: unknown }) =>
    d.call("python/v1", "python/execute", { code: `result = "${taskId}"` }, {
      signal: new AbortController().signal,
      runId: "run_p",
      taskId,
      attempt: 1,
      ...(sandbox ? { sandbox } : {}),
    }).then((v) => v, (e) => e);
  try {
    const [basic, none, fromWorkflow, plain, bwrap] = await Promise.all([
      call("basic", { task: "basic" }),
      call("none", { task: { mode: "none" } }),
      call("wf", { workflow: "basic" }),
      call("plain"),
      call("bwrap", { workflow: "basic", task: "bwrap" }),
    ]);
    assertEquals((basic as { result: unknown }).result, "basic", String(basic));
    assertEquals((none as { result: unknown }).result, "none", String(none));
    assertEquals((fromWorkflow as { result: unknown }).result, "wf", String(fromWorkflow));
    for (const e of [plain, bwrap]) {
      assert(e instanceof GleitzeitError, String(e));
      assertEquals(e.code, "PROVIDER_UNHEALTHY", e.message);
      assert(e.message.includes(worker.owner), e.message);
    }
    assert(
      !log.some((l) => l.includes("run_p/plain") || l.includes("run_p/bwrap")),
      log.join("\n"),
    );
  } finally {
    await d.close();
    await worker.stop();
    await running;
    await registry.close();
    await dropKeys(store, prefix);
    await reader.close();
    await store.close();
  }
});

/** A Worker on `registry` until `fn` ends; what it registered, for `fn`. */
async function withRegistered(
  registry: ProviderRegistry,
  fn: (registered: () => Promise<Record<string, unknown>>) => Promise<void>,
  leaseMs = 1_000,
): Promise<void> {
  const prefix = `gz-routes-test-${crypto.randomUUID().slice(0, 8)}:`;
  const store = await RedisStore.connect({ prefix });
  const worker = new Worker({ store, registry, concurrency: 1, leaseMs });
  let ready!: () => void;
  const started = new Promise<void>((r) => (ready = r));
  const running = worker.start(ready);
  try {
    await started;
    await fn(async () =>
      JSON.parse(String(await store.command(["GET", queueKeys(prefix).worker(worker.owner)])))
    );
  } finally {
    await endWorker(worker, running, registry, store, prefix);
  }
}

Deno.test("mcp/v1 that cannot be served (two MCP servers: ambiguous; the only one broken) is not taken as healthy", async () => {
  const broken = { command: "/nonexistent/mcp-server", args: [] };
  for (const names of [["a", "b"], ["only"]]) {
    const registry = new ProviderRegistry({ healthIntervalMs: 100, unhealthyIntervalMs: 100 });
    await registerConfiguredProviders(registry, {
      mcp_servers: names.map((name) => ({ name, ...broken })),
    }, { baseDir: Deno.cwd() });
    await withRegistered(registry, async (registered) => {
      const first = await registered();
      const protocols = first.protocols as string[];
      const unhealthy = first.unhealthy as string[];
      assert(!protocols.includes("mcp/v1"), `${names}: ${JSON.stringify(first)}`);
      assert(unhealthy.includes("mcp/v1"), `${names}: ${JSON.stringify(first)}`);
      const reason = (first.reasons as Record<string, string>)["mcp/v1"] ?? "";
      if (names.length > 1) assert(reason.includes("ambiguous"), reason);
      // ambiguous is a configuration error (its tasks fail at once); a broken server is not
      const unservable = (first.unservable ?? {}) as Record<string, { code: string }>;
      if (names.length > 1) assertEquals(unservable["mcp/v1"]?.code, "PROVIDER_NOT_FOUND");
      else assertEquals(unservable["mcp/v1"], undefined, `${names}`);
      // (and any MCP server not configured: mcp/nosuch)
      assertEquals(unservable["mcp/*"]?.code, "PROVIDER_NOT_FOUND", `${names}`);
      // and stays so (probes come and go)
      await new Promise((r) => setTimeout(r, 500));
      assert(!((await registered()).protocols as string[]).includes("mcp/v1"));
    });
  }
});

Deno.test("a worker registers the new reason of a protocol that stays unhealthy for another reason", async () => {
  class Sick extends EchoProvider {
    reason = "first reason";
    health(): Promise<HealthReport> {
      return Promise.resolve({ healthy: false, message: this.reason });
    }
  }
  const registry = new ProviderRegistry({ healthIntervalMs: 100, unhealthyIntervalMs: 100 });
  registry.registerProtocol(ECHO_PROTOCOL);
  const sick = new Sick();
  registry.register(sick);
  // (a long lease: its regular registration, every third of it, does not come meanwhile)
  await withRegistered(registry, async (registered) => {
    const reason = async () => ((await registered()).reasons as Record<string, string>)["echo/v1"];
    assertEquals(await reason(), "first reason");
    sick.reason = "second reason";
    const until = Date.now() + 10_000;
    while (Date.now() < until && await reason() !== "second reason") {
      await new Promise((r) => setTimeout(r, 100));
    }
    assertEquals(await reason(), "second reason", "system status shows a stale reason");
  }, 60_000);
});
