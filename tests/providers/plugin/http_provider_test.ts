/** External providers that are services: JSON-RPC over HTTP POST against Deno.serve on 127.0.0.1. */

import { assertEquals, assertOk, rejects } from "../jsonrpc/assert.ts";
import { GleitzeitError } from "../../../src/core/errors.ts";
import { JsonRpcDispatcher } from "../../../src/providers/jsonrpc/dispatcher.ts";
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
