/** External providers that are services: JSON-RPC over HTTP POST against Deno.serve on 127.0.0.1. */

import { assertEquals, assertOk, rejects } from "../jsonrpc/assert.ts";
import { GleitzeitError } from "../../../src/core/errors.ts";
import { JsonRpcDispatcher } from "../../../src/providers/jsonrpc/dispatcher.ts";
import { silentServer } from "../jsonrpc/spec_server.ts";
import { calcEntry, ctx, registryWith } from "./helpers.ts";

const number = { type: "number" };
const pair = { type: "object", properties: { a: number, b: number }, required: ["a", "b"] };

function calcService(): Deno.HttpServer<Deno.NetAddr> {
  const d = new JsonRpcDispatcher({
    describe: () => ({
      methods: [
        { name: "calc/add", params: pair },
        { name: "calc/sleep", params: { type: "object" } },
        { name: "calc/busy", params: { type: "object" } },
      ],
    }),
    "calc/add": (p) => (p as { a: number; b: number }).a + (p as { a: number; b: number }).b,
    "calc/sleep": async (p) => {
      await new Promise((r) => setTimeout(r, (p as { seconds: number }).seconds * 1000));
      return { value: (p as { value?: unknown }).value ?? null, pid: "http" };
    },
    "calc/busy": () => {
      throw new GleitzeitError("PROVIDER_OVERLOADED", "try later");
    },
  });
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, d.httpHandler());
}

Deno.test("HTTP provider: describe, calls, errors with code and retryable flag, health, server down", async () => {
  const server = calcService();
  const url = `http://127.0.0.1:${server.addr.port}/rpc`;
  const registry = await registryWith({
    providers: [{ id: "calc-http", protocol: "calc/v1", url, describe: true }],
  });
  try {
    assertOk(registry.method("calc/v1", "calc/add"));
    assertEquals(await registry.call("calc/v1", "calc/add", { a: 20, b: 22 }, ctx()), 42);
    const busy = await rejects(registry.call("calc/v1", "calc/busy", {}, ctx())) as GleitzeitError;
    assertEquals([busy.code, busy.retryable, busy.rpcCode], ["PROVIDER_OVERLOADED", true, -30004]);
    // no health method: any JSON-RPC answer to `ping` (here: Method not found) means alive
    const [h] = await registry.health("calc-http");
    assertEquals(h!.report.healthy, true);
    assertEquals(registry.stats()[1]!.info as { transport: string; url: string }, {
      transport: "http",
      url,
      running: true,
    });
  } finally {
    await server.shutdown();
  }
  try {
    const down = await rejects(
      registry.call("calc/v1", "calc/add", { a: 1, b: 1 }, ctx()),
    ) as GleitzeitError;
    assertEquals([down.code, down.retryable], ["PROVIDER_UNAVAILABLE", true]);
    const [h] = await registry.health("calc-http");
    assertEquals(h!.report.healthy, false);
    assertEquals(registry.stats().find((s) => s.id === "calc-http")!.status, "unhealthy");
  } finally {
    await registry.close();
  }
});

Deno.test("HTTP and stdio providers of one protocol are balanced together", async () => {
  const server = calcService();
  const url = `http://127.0.0.1:${server.addr.port}/rpc`;
  const registry = await registryWith({
    providers: [
      calcEntry({ id: "calc-local" }),
      { id: "calc-remote", protocol: "calc/v1", url, describe: true },
    ],
  });
  try {
    const results = await Promise.all(
      Array.from(
        { length: 20 },
        (_, i) => registry.call("calc/v1", "calc/sleep", { seconds: 0.02, value: i }, ctx()),
      ),
    ) as { pid: unknown }[];
    const remote = results.filter((r) => r.pid === "http").length;
    assertOk(remote >= 5 && remote <= 15, `remote served ${remote} of 20`);
  } finally {
    await registry.close();
    await server.shutdown();
  }
});

Deno.test("HTTP provider whose describe fails at start (down): its protocol is declared all the same, any method unchecked; its calls fail as it does, and work once it is up", async () => {
  const { ProviderRegistry } = await import("../../../src/providers/registry.ts");
  const { registerConfiguredProviders } = await import("../../../src/config/providers_config.ts");
  // a port nothing listens on, for now
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = probe.addr.port;
  probe.close();
  const registry = new ProviderRegistry();
  const report = await registerConfiguredProviders(registry, {
    providers: [{
      id: "calc-http",
      protocol: "calc/v1",
      url: `http://127.0.0.1:${port}/rpc`,
      describe: true,
    }],
  }, { baseDir: "." });
  try {
    assertEquals(report.failed.map((f) => [f.id, f.error.code]), [[
      "calc-http",
      "PROVIDER_UNAVAILABLE",
    ]]);
    assertEquals(report.protocols, ["calc/v1"]);
    // a workflow's method and params pass validation: the provider decides when called
    assertOk(registry.method("calc/v1", "calc/add"));
    assertEquals(registry.validateParams("calc/v1", "calc/add", { a: "not checked" }), []);
    assertEquals(registry.inferProtocol("calc/add"), { protocol: "calc/v1" });
    const down = await rejects(registry.call("calc/v1", "calc/add", { a: 1, b: 2 }, ctx()));
    assertEquals((down as GleitzeitError).code, "PROVIDER_UNAVAILABLE");
    // up on that port now: the same registry's calls reach it
    const d = new JsonRpcDispatcher({ "calc/add": (p) => (p as { a: number }).a + 40 });
    const server = Deno.serve({ hostname: "127.0.0.1", port, onListen: () => {} }, d.httpHandler());
    try {
      assertEquals(await registry.call("calc/v1", "calc/add", { a: 2 }, ctx()), 42);
    } finally {
      await server.shutdown();
    }
  } finally {
    await registry.close();
  }
});

Deno.test("describe calls at the start go out all at once: three providers that never answer cost one timeout, not three", async () => {
  const { ProviderRegistry } = await import("../../../src/providers/registry.ts");
  const { registerConfiguredProviders } = await import("../../../src/config/providers_config.ts");
  const hole = silentServer();
  const url = `http://127.0.0.1:${hole.port}/`;
  const registry = new ProviderRegistry();
  try {
    const started = performance.now();
    const report = await registerConfiguredProviders(registry, {
      providers: ["a", "b", "c"].map((id) => ({
        id,
        protocol: `${id}/v1`,
        url,
        describe: true,
        timeout_ms: 1000,
      })),
    }, { baseDir: "." });
    const took = performance.now() - started;
    assertEquals(report.failed.map((f) => f.error.code), Array(3).fill("PROVIDER_TIMEOUT"));
    assertOk(took < 2500, `the three took ${took} ms: one after the other`);
  } finally {
    await registry.close();
    await hole.close();
  }
});
