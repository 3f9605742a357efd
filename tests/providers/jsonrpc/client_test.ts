/** The JSON-RPC client and messages: validation, null results, correlation, timeouts, cancellation, errors, HTTP. */

import { assertEquals, assertOk, rejects } from "./assert.ts";
import { GleitzeitError } from "../../../src/core/errors.ts";
import { JsonRpcClient } from "../../../src/providers/jsonrpc/client.ts";
import { HttpTransport } from "../../../src/providers/jsonrpc/http_transport.ts";
import {
  isResponse,
  requestProblem,
  responseProblem,
} from "../../../src/providers/jsonrpc/messages.ts";
import { fromRpcError, toRpcError } from "../../../src/providers/jsonrpc/rpc_errors.ts";
import { LoopbackTransport, silentServer, specDispatcher } from "./spec_server.ts";

function gz(e: unknown): GleitzeitError {
  if (!(e instanceof GleitzeitError)) throw new Error(`expected a GleitzeitError, got ${e}`);
  return e;
}

Deno.test("messages: a null result is legal; exactly one of result and error", () => {
  assertOk(isResponse({ jsonrpc: "2.0", id: 1, result: null }));
  assertOk(
    isResponse({ jsonrpc: "2.0", id: null, error: { code: -32700, message: "Parse error" } }),
  );
  assertEquals(
    responseProblem({ jsonrpc: "2.0", id: 1, result: 1, error: { code: 1, message: "x" } }),
    `a response must have exactly one of "result" and "error"`,
  );
  assertEquals(
    responseProblem({ jsonrpc: "2.0", id: 1 }),
    `a response must have exactly one of "result" and "error"`,
  );
  assertOk(responseProblem({ jsonrpc: "1.0", id: 1, result: 1 }));
  assertOk(responseProblem({ jsonrpc: "2.0", id: 1, error: { code: 1.5, message: "x" } }));
  assertOk(responseProblem({ jsonrpc: "2.0", id: {}, result: 1 }));
  assertEquals(requestProblem({ jsonrpc: "2.0", method: "m" }), undefined);
  assertEquals(
    requestProblem({ jsonrpc: "2.0", method: "m", params: "x" }),
    `"params" must be an array or an object`,
  );
});

Deno.test("client: null result, out-of-order responses correlated by id", async () => {
  const client = new JsonRpcClient(new LoopbackTransport(specDispatcher()));
  assertEquals(await client.call("nothing"), null);
  const order: string[] = [];
  const slow = client.call("sleep", { ms: 60, value: "slow" }).then((v) => (order.push("slow"), v));
  const fast = client.call("sleep", { ms: 5, value: "fast" }).then((v) => (order.push("fast"), v));
  assertEquals(await Promise.all([slow, fast]), ["slow", "fast"]);
  assertEquals(order, ["fast", "slow"]);
});

Deno.test("client: per-call timeout fails as PROVIDER_TIMEOUT (retryable)", async () => {
  const client = new JsonRpcClient(new LoopbackTransport(specDispatcher()), { timeoutMs: 1000 });
  const err = gz(await rejects(client.call("sleep", { ms: 300, value: 1 }, { timeoutMs: 30 })));
  assertEquals(err.code, "PROVIDER_TIMEOUT");
  assertEquals(err.retryable, true);
  assertEquals(client.pending, 0);
  await new Promise((r) => setTimeout(r, 300)); // the late answer is ignored
});

Deno.test("client: cancellation through AbortSignal; the signal's GleitzeitError reason is kept", async () => {
  const client = new JsonRpcClient(new LoopbackTransport(specDispatcher()));
  const ac = new AbortController();
  const p = client.call("sleep", { ms: 200, value: 1 }, { signal: ac.signal });
  setTimeout(() => ac.abort(), 10);
  assertEquals(gz(await rejects(p)).code, "TASK_CANCELLED");
  const ac2 = new AbortController();
  const p2 = client.call("sleep", { ms: 200, value: 1 }, { signal: ac2.signal });
  ac2.abort(new GleitzeitError("TASK_TIMEOUT", "attempt timed out"));
  assertEquals(gz(await rejects(p2)).code, "TASK_TIMEOUT");
  assertEquals(
    gz(await rejects(client.call("nothing", undefined, { signal: ac.signal }))).code,
    "TASK_CANCELLED",
  );
  await new Promise((r) => setTimeout(r, 250));
});

Deno.test("errors: code and retryable flag survive the wire both ways", async () => {
  const client = new JsonRpcClient(new LoopbackTransport(specDispatcher()), { name: "peer" });
  const a = gz(
    await rejects(client.call("fail", { code: "PROVIDER_OVERLOADED", message: "busy" })),
  );
  assertEquals([a.code, a.retryable, a.rpcCode, a.details.why], [
    "PROVIDER_OVERLOADED",
    true,
    -30004,
    "asked",
  ]);
  assertEquals(a.message, "peer: busy");
  const b = gz(
    await rejects(
      client.call("fail", { code: "TASK_EXECUTION_FAILED", retryable: true, message: "flaky" }),
    ),
  );
  assertEquals([b.code, b.retryable], ["TASK_EXECUTION_FAILED", true]);
  // a foreign server error: unknown number, retryable in data
  const c = fromRpcError({
    code: -32001,
    message: "db down",
    data: { retryable: true, table: "x" },
  });
  assertEquals([c.code, c.retryable, c.details.rpcCode], ["PROVIDER_ERROR", true, -32001]);
  assertEquals(toRpcError(c).code, -32001);
  // a standard code without data
  const d = fromRpcError({ code: -32602, message: "Invalid params" });
  assertEquals([d.code, d.retryable], ["INVALID_PARAMS", false]);
  // and back
  const wire = toRpcError(
    new GleitzeitError("PROVIDER_UNAVAILABLE", "gone", { hint: "restart it" }),
  );
  assertEquals(wire, {
    code: -30001,
    message: "gone",
    data: { code: "PROVIDER_UNAVAILABLE", message: "gone", retryable: true, hint: "restart it" },
  });
  assertEquals(fromRpcError(wire).hint, "restart it");
});

Deno.test("HTTP transport: calls, batches, notifications and errors against Deno.serve on 127.0.0.1", async () => {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    specDispatcher().httpHandler(),
  );
  const url = `http://127.0.0.1:${server.addr.port}/rpc`;
  const client = new JsonRpcClient(new HttpTransport({ url, name: "http-peer" }), {
    timeoutMs: 5000,
  });
  try {
    assertEquals(await client.call("subtract", [42, 23]), 19);
    assertEquals(await client.call("nothing"), null);
    await client.notify("update", [1, 2, 3]);
    const out = await client.batch([
      { method: "sum", params: [1, 2, 4] },
      { method: "notify_hello", params: [7], notification: true },
      { method: "foobar" },
    ]);
    assertEquals(out[0], { ok: true, result: 7 });
    assertEquals(out[1]!.ok ? "" : out[1]!.error.code, "METHOD_NOT_FOUND");
    const e = gz(
      await rejects(client.call("fail", { code: "PROVIDER_OVERLOADED", message: "busy" })),
    );
    assertEquals([e.code, e.retryable], ["PROVIDER_OVERLOADED", true]);
    const ac = new AbortController();
    const p = client.call("sleep", { ms: 500, value: 1 }, { signal: ac.signal });
    setTimeout(() => ac.abort(), 20);
    assertEquals(gz(await rejects(p)).code, "TASK_CANCELLED");
  } finally {
    await client.close();
    await server.shutdown();
  }
  // the server is gone: retryable PROVIDER_UNAVAILABLE
  const client2 = new JsonRpcClient(new HttpTransport({ url }));
  const err = gz(await rejects(client2.call("subtract", [1, 1])));
  assertEquals([err.code, err.retryable], ["PROVIDER_UNAVAILABLE", true]);
});

Deno.test("HTTP transport: a call's timeout ends its POST; a server that accepts and never answers fails it in time", async () => {
  // answers after 3 s; the call's timeout is 300 ms
  const slow = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const body = await req.json();
    await new Promise((r) => setTimeout(r, 3000));
    return Response.json({ jsonrpc: "2.0", id: body.id, result: "late" });
  });
  const hole = silentServer();
  try {
    for (const port of [slow.addr.port, hole.port]) {
      const client = new JsonRpcClient(new HttpTransport({ url: `http://127.0.0.1:${port}/` }), {
        name: "peer",
      });
      const started = performance.now();
      const err = gz(await rejects(client.call("m", undefined, { timeoutMs: 300 })));
      const took = performance.now() - started;
      assertEquals(err.code, "PROVIDER_TIMEOUT");
      assertOk(took < 2500, `it waited ${took} ms`);
      await client.close();
    }
  } finally {
    await hole.close();
    await slow.shutdown();
  }
});

Deno.test("client: an answer to a call that is not a valid response fails that call at once, saying why", async () => {
  const answers: unknown[] = [];
  const transport = {
    answersInline: false,
    handler: (_: unknown) => {},
    onMessage(h: (payload: unknown) => void) {
      this.handler = h;
    },
    onClose() {},
    send(payload: unknown) {
      const id = (payload as { id: number }).id;
      const answer = answers.shift();
      queueMicrotask(() => this.handler({ ...(answer as object), id }));
      return Promise.resolve();
    },
    close: () => Promise.resolve(),
  };
  const client = new JsonRpcClient(transport, { name: "peer", timeoutMs: 5000 });
  answers.push({ jsonrpc: "2.0", result: 1, error: { code: 1, message: "x" } });
  const started = performance.now();
  const err = gz(await rejects(client.call("m")));
  assertOk(performance.now() - started < 1000);
  assertEquals([err.code, err.retryable], ["PROVIDER_ERROR", false]);
  assertOk(err.message.includes(`exactly one of "result" and "error"`), err.message);
  answers.push({ jsonrpc: "2.0", result: 2 });
  assertEquals(await client.call("m"), 2);
});
