/**
 * Every request/response example of the JSON-RPC 2.0 specification (section 7), sent as
 * raw text to our dispatcher and, where the example is well-formed, through our client
 * too. Each example's exact response is checked.
 */

import { assertEquals, assertStrictEquals } from "./assert.ts";
import { JsonRpcClient } from "../../../src/providers/jsonrpc/client.ts";
import { GleitzeitError } from "../../../src/core/errors.ts";
import { LoopbackTransport, notified, specDispatcher } from "./spec_server.ts";

interface Example {
  name: string;
  request: string;
  /** Expected response as JSON text, or undefined when nothing is returned. */
  response: string | undefined;
}

const EXAMPLES: Example[] = [
  {
    name: "rpc call with positional parameters (1)",
    request: `{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}`,
    response: `{"jsonrpc": "2.0", "result": 19, "id": 1}`,
  },
  {
    name: "rpc call with positional parameters (2)",
    request: `{"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2}`,
    response: `{"jsonrpc": "2.0", "result": -19, "id": 2}`,
  },
  {
    name: "rpc call with named parameters (1)",
    request:
      `{"jsonrpc": "2.0", "method": "subtract", "params": {"subtrahend": 23, "minuend": 42}, "id": 3}`,
    response: `{"jsonrpc": "2.0", "result": 19, "id": 3}`,
  },
  {
    name: "rpc call with named parameters (2)",
    request:
      `{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 42, "subtrahend": 23}, "id": 4}`,
    response: `{"jsonrpc": "2.0", "result": 19, "id": 4}`,
  },
  {
    name: "a notification (update)",
    request: `{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}`,
    response: undefined,
  },
  {
    name: "a notification (foobar, unknown method)",
    request: `{"jsonrpc": "2.0", "method": "foobar"}`,
    response: undefined,
  },
  {
    name: "rpc call of non-existent method",
    request: `{"jsonrpc": "2.0", "method": "foobar", "id": "1"}`,
    response:
      `{"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "1"}`,
  },
  {
    name: "rpc call with invalid JSON",
    request: `{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]`,
    response: `{"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": null}`,
  },
  {
    name: "rpc call with invalid Request object",
    request: `{"jsonrpc": "2.0", "method": 1, "params": "bar"}`,
    response:
      `{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}`,
  },
  {
    name: "rpc call Batch, invalid JSON",
    request: `[
  {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
  {"jsonrpc": "2.0", "method"
]`,
    response: `{"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": null}`,
  },
  {
    name: "rpc call with an empty Array",
    request: `[]`,
    response:
      `{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}`,
  },
  {
    name: "rpc call with an invalid Batch (but not empty)",
    request: `[1]`,
    response: `[
  {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}
]`,
  },
  {
    name: "rpc call with invalid Batch",
    request: `[1,2,3]`,
    response: `[
  {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null},
  {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null},
  {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}
]`,
  },
  {
    name: "rpc call Batch",
    request: `[
        {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
        {"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "get_data", "id": "9"}
    ]`,
    response: `[
        {"jsonrpc": "2.0", "result": 7, "id": "1"},
        {"jsonrpc": "2.0", "result": 19, "id": "2"},
        {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null},
        {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "5"},
        {"jsonrpc": "2.0", "result": ["hello", 5], "id": "9"}
    ]`,
  },
  {
    name: "rpc call Batch (all notifications)",
    request: `[
        {"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}
    ]`,
    response: undefined,
  },
];

for (const ex of EXAMPLES) {
  Deno.test(`JSON-RPC 2.0 spec example: ${ex.name}`, async () => {
    const answer = await specDispatcher().handleText(ex.request);
    if (ex.response === undefined) {
      assertStrictEquals(answer, undefined);
    } else {
      assertEquals(JSON.parse(answer!), JSON.parse(ex.response));
    }
  });
}

Deno.test("spec examples: notifications reach their methods and are never answered", async () => {
  notified.length = 0;
  const d = specDispatcher();
  await d.handleText(`{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}`);
  await d.handleText(`[
        {"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}
    ]`);
  assertEquals(notified, [
    { method: "update", params: [1, 2, 3, 4, 5] },
    { method: "notify_sum", params: [1, 2, 4] },
    { method: "notify_hello", params: [7] },
  ]);
});

Deno.test("spec examples through the client: calls, named params, notifications, errors", async () => {
  const transport = new LoopbackTransport(specDispatcher());
  const client = new JsonRpcClient(transport, { name: "spec" });
  assertEquals(await client.call("subtract", [42, 23]), 19);
  assertEquals(await client.call("subtract", [23, 42]), -19);
  assertEquals(await client.call("subtract", { subtrahend: 23, minuend: 42 }), 19);
  assertEquals(await client.call("subtract", { minuend: 42, subtrahend: 23 }), 19);
  await client.notify("update", [1, 2, 3, 4, 5]);
  await client.notify("foobar");
  assertEquals(transport.sent[4], { jsonrpc: "2.0", method: "update", params: [1, 2, 3, 4, 5] });
  assertEquals(transport.sent[5], { jsonrpc: "2.0", method: "foobar" });
  const err = await client.call("foobar").then(() => undefined, (e) => e);
  if (!(err instanceof GleitzeitError)) throw new Error(`expected a GleitzeitError, got ${err}`);
  assertEquals(err.code, "METHOD_NOT_FOUND");
  assertEquals(err.rpcCode, -32601);
  assertEquals(err.retryable, false);
  assertEquals(client.pending, 0);
});

Deno.test("spec examples through the client: the batch, with ids correlated", async () => {
  const transport = new LoopbackTransport(specDispatcher());
  const client = new JsonRpcClient(transport, { name: "spec" });
  const out = await client.batch([
    { method: "sum", params: [1, 2, 4] },
    { method: "notify_hello", params: [7], notification: true },
    { method: "subtract", params: [42, 23] },
    { method: "foo.get", params: { name: "myself" } },
    { method: "get_data" },
  ]);
  assertEquals(out.length, 4);
  assertEquals(out[0], { ok: true, result: 7 });
  assertEquals(out[1], { ok: true, result: 19 });
  assertEquals(out[2]!.ok, false);
  if (!out[2]!.ok) assertEquals(out[2]!.error.code, "METHOD_NOT_FOUND");
  assertEquals(out[3], { ok: true, result: ["hello", 5] });
  const sent = transport.sent[0] as { id?: number }[];
  assertEquals(sent.length, 5);
  assertEquals("id" in sent[1]!, false);
  // all-notification batch: nothing comes back and nothing is awaited
  assertEquals(
    await client.batch([
      { method: "notify_sum", params: [1, 2, 4], notification: true },
      { method: "notify_hello", params: [7], notification: true },
    ]),
    [],
  );
});
