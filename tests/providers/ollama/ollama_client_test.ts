/**
 * Transport faults the test server cannot produce (a non-Ollama server, a malformed line, a
 * connection reset mid-body), through the injectable `fetch`. Everything else is tested
 * against the real test server.
 */

import assert from "node:assert/strict";
import { GleitzeitError } from "../../../src/core/errors.ts";
import { OllamaProvider } from "../../../src/providers/ollama/ollama_provider.ts";
import { testContext } from "./test_server.ts";

function providerAnswering(response: () => Response) {
  return new OllamaProvider({
    url: "http://ollama.invalid",
    fetch: () => Promise.resolve(response()),
  });
}

async function failure(p: OllamaProvider): Promise<GleitzeitError> {
  try {
    await p.call("llm/generate", { model: "m", prompt: "x" }, testContext());
  } catch (e) {
    assert.ok(e instanceof GleitzeitError);
    return e;
  }
  throw new Error("expected a rejection");
}

Deno.test("a plain 404 page is not a missing model: PROVIDER_ERROR naming the URL", async () => {
  const e = await failure(
    providerAnswering(() => new Response("404 page not found", { status: 404 })),
  );
  assert.equal(e.code, "PROVIDER_ERROR");
  assert.match(e.message, /is this an Ollama server\?/);
});

Deno.test("a malformed NDJSON line fails the task", async () => {
  const e = await failure(
    providerAnswering(() => new Response('{"response":"a","done":false}\nnot json\n')),
  );
  assert.equal(e.code, "TASK_EXECUTION_FAILED");
  assert.match(e.message, /malformed line/);
});

Deno.test("a connection that breaks mid-body is a retryable NETWORK_ERROR", async () => {
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(new TextEncoder().encode('{"response":"a","done":false}\n'));
      c.error(new TypeError("connection reset"));
    },
  });
  const e = await failure(providerAnswering(() => new Response(body)));
  assert.equal(e.code, "NETWORK_ERROR");
  assert.equal(e.retryable, true);
});

Deno.test("a line split across chunks is reassembled; the final line needs no newline", async () => {
  const parts = [
    '{"response":"po',
    'ng","done":false}\n{"response":"","done":true,',
    '"done_reason":"stop","eval_count":4}',
  ];
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      for (const p of parts) c.enqueue(new TextEncoder().encode(p));
      c.close();
    },
  });
  const p = providerAnswering(() => new Response(body));
  const r = await p.call("llm/generate", { model: "m", prompt: "x" }, testContext()) as {
    response: string;
    eval_count: number;
  };
  assert.equal(r.response, "pong");
  assert.equal(r.eval_count, 4);
});
