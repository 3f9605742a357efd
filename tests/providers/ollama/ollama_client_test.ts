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

/** A byte stream (as `fetch` bodies are) that delivers `parts` as separate chunks. */
function byteBody(parts: Uint8Array[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    type: "bytes",
    start(c) {
      for (const p of parts) c.enqueue(p.slice());
      c.close();
    },
  });
}

Deno.test("byte bodies: characters and lines split anywhere, CRLF, blank and very long lines", async () => {
  const enc = new TextEncoder();
  const long = "ü".repeat(50_000); // 100 KB of two-byte characters: longer than one read
  const text = [
    JSON.stringify({ response: "grüß ", done: false }),
    "",
    "  ",
    JSON.stringify({ response: "🦙", done: false }) + "\r",
    JSON.stringify({ response: long, done: false }),
    JSON.stringify({ response: "", done: true, done_reason: "stop", eval_count: 3 }),
  ].join("\n");
  const bytes = enc.encode(text);
  // cut every few bytes, so cuts fall inside multi-byte characters and beside newlines
  const parts: Uint8Array[] = [];
  for (let i = 0; i < 203; i += 7) parts.push(bytes.subarray(i, i + 7));
  parts.push(bytes.subarray(203));
  const seen: string[] = [];
  const p = providerAnswering(() => new Response(byteBody(parts)));
  const r = await p.call("llm/generate", { model: "m", prompt: "x" }, {
    ...testContext(),
    onProgress: (c) => seen.push(c),
  }) as { response: string; eval_count: number };
  assert.equal(r.response, `grüß 🦙${long}`);
  assert.deepEqual(seen, ["grüß ", "🦙", long]);
  assert.equal(r.eval_count, 3);
});

Deno.test("byte bodies: a JSON line that is not an object is a malformed line", async () => {
  const body = byteBody([new TextEncoder().encode('{"response":"a","done":false}\n[1]\n')]);
  const e = await failure(providerAnswering(() => new Response(body)));
  assert.equal(e.code, "TASK_EXECUTION_FAILED");
  assert.match(e.message, /malformed line/);
});

Deno.test("an {error} line with a status below 500 (some versions stream an error before any content) says what that status would: not retryable", async () => {
  const e = await failure(
    providerAnswering(() =>
      new Response('{"error":"invalid option: num_ctx must be positive","status":400}\n')
    ),
  );
  assert.equal(e.code, "TASK_PARAMETER_ERROR");
  assert.equal(e.retryable, false);
  // without a status: a runner that failed mid-answer, retryable as a 500 is
  const crash = await failure(
    providerAnswering(() =>
      new Response('{"response":"a","done":false}\n{"error":"an error was encountered"}\n')
    ),
  );
  assert.equal(crash.code, "PROVIDER_ERROR");
  assert.equal(crash.retryable, true);
});

Deno.test("a document that is not an object cut short (a proxy's HTML page, an array) is no dropped connection: not retryable", async () => {
  const embed = (body: string) =>
    providerAnswering(() => new Response(body)).call(
      "llm/embed",
      { model: "m", input: "x" },
      testContext(),
    ).then(() => assert.fail("expected a rejection"), (e: GleitzeitError) => e);
  const html = await embed("<html><body>502 Bad Gateway</body></html>");
  assert.equal(html.code, "TASK_EXECUTION_FAILED");
  assert.equal(html.retryable, false);
  const cut = await embed('{"embeddings":[[0.1,0.');
  assert.equal(cut.code, "NETWORK_ERROR");
  assert.equal(cut.retryable, true);
});
