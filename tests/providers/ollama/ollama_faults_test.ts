/**
 * OllamaProvider's error paths, cancellation and per-host limit against the real test server's
 * fault-injection models. Runs on its own server port because it changes the server's limits
 * (`/_test/config`) and watches its scheduler, which other test files must not disturb.
 */

import assert from "node:assert/strict";
import { GleitzeitError } from "../../../src/core/errors.ts";
import { type LlmResult, OllamaProvider } from "../../../src/providers/ollama/ollama_provider.ts";
import {
  deadPort,
  recordedRequests,
  rejects,
  resetServerConfig,
  serverConfig,
  setServerConfig,
  startTestServer,
  stopTestServer,
  testContext,
  waitFor,
} from "./test_server.ts";

const PORT = 11451;
const url = await startTestServer(PORT);

function chat(model: string, content = "ping") {
  return { model, temperature: 0, messages: [{ role: "user", content }] };
}

async function idle(): Promise<boolean> {
  const c = await serverConfig(url);
  return c.runners.llama.active === 0 && c.runners.llama.queued === 0;
}

Deno.test("fault-slow: no header within firstByteTimeoutMs -> PROVIDER_TIMEOUT, slot freed", async () => {
  const p = new OllamaProvider({ url, firstByteTimeoutMs: 300 });
  const started = performance.now();
  const e = await rejects(p.call("llm/chat", chat("fault-slow:5s"), testContext()));
  assert.equal(e.code, "PROVIDER_TIMEOUT");
  assert.equal(e.retryable, true);
  assert.equal(e.details.phase, "first_byte");
  assert.match(e.message, /within 300 ms/);
  assert.ok(performance.now() - started < 4_000, "the request was not aborted");
  await waitFor(idle, 3_000, "the server to free the slot");
  // the default budget is generous: the same model answers when given the time
  const ok = new OllamaProvider({ url });
  const r = await ok.call("llm/chat", chat("fault-slow:300ms"), testContext()) as LlmResult;
  assert.equal(r.response, "pong");
});

Deno.test("fault-stall: silence between chunks beyond idleTimeoutMs -> PROVIDER_TIMEOUT", async () => {
  const p = new OllamaProvider({ url, idleTimeoutMs: 300 });
  const ctx = testContext();
  const e = await rejects(p.call("llm/chat", chat("fault-stall:5s"), ctx));
  assert.equal(e.code, "PROVIDER_TIMEOUT");
  assert.equal(e.retryable, true);
  assert.equal(e.details.phase, "idle");
  assert.deepEqual(ctx.chunks, ["p"]); // the first chunk arrived, then nothing
  await waitFor(idle, 3_000, "the server to free the slot");
  const ok = await new OllamaProvider({ url, idleTimeoutMs: 2_000 }).call(
    "llm/chat",
    chat("fault-stall:300ms"),
    testContext(),
  ) as LlmResult;
  assert.equal(ok.response, "pong");
});

Deno.test("fault-midstream-error: the {error} line fails the task with the server's message, retryable as a 500 is (a runner that failed mid-answer)", async () => {
  const p = new OllamaProvider({ url });
  const ctx = testContext();
  const e = await rejects(p.call("llm/chat", chat("fault-midstream-error"), ctx));
  assert.equal(e.code, "PROVIDER_ERROR");
  assert.equal(e.retryable, true);
  assert.equal(e.message, "an error was encountered while running the model");
  assert.equal(ctx.chunks.length, 2);
  const g = await rejects(
    p.call("llm/generate", { model: "fault-midstream-error", prompt: "ping" }, testContext()),
  );
  assert.equal(g.code, "PROVIDER_ERROR");
  assert.equal(g.retryable, true);
});

Deno.test("fault-no-done: a stream that ends without done fails the task, retryable (a dropped connection)", async () => {
  const p = new OllamaProvider({ url });
  const e = await rejects(p.call("llm/chat", chat("fault-no-done"), testContext()));
  assert.equal(e.code, "NETWORK_ERROR");
  assert.equal(e.retryable, true);
  assert.match(e.message, /ended without done/);
  // /api/embed answers one document; the fault model cuts it in half
  const embed = await rejects(
    p.call("llm/embed", { model: "fault-no-done", input: "x" }, testContext()),
  );
  assert.equal(embed.code, "NETWORK_ERROR");
  assert.equal(embed.retryable, true);
  assert.match(embed.message, /invalid JSON/);
});

Deno.test("fault-500: PROVIDER_ERROR with the server's message, retryable (runner crash)", async () => {
  const p = new OllamaProvider({ url });
  for (const method of ["llm/chat", "llm/embed"]) {
    const params = method === "llm/embed" ? { model: "fault-500", input: "x" } : chat("fault-500");
    const e = await rejects(p.call(method, params, testContext()));
    assert.equal(e.code, "PROVIDER_ERROR");
    assert.equal(e.retryable, true);
    assert.match(e.message, /llama runner process has terminated: exit status 2/);
    assert.equal(e.details.status, 500);
  }
});

Deno.test("500 for a bad option is PROVIDER_ERROR but not retryable", async () => {
  const p = new OllamaProvider({ url });
  const e = await rejects(p.call("llm/chat", {
    ...chat("llama3.2"),
    options: { stop: "x" },
  }, testContext()));
  assert.equal(e.code, "PROVIDER_ERROR");
  assert.equal(e.retryable, false);
  assert.match(e.message, /option "stop" must be of type array/);
});

Deno.test("unknown model: MODEL_NOT_FOUND, not retryable, hint ollama pull MODEL", async () => {
  const p = new OllamaProvider({ url });
  for (
    const [method, params] of [
      ["llm/chat", chat("no-such-model:7b")],
      ["llm/generate", { model: "no-such-model:7b", prompt: "x" }],
      ["llm/embed", { model: "no-such-model:7b", input: "x" }],
    ] as const
  ) {
    const e = await rejects(p.call(method, params, testContext()));
    assert.equal(e.code, "MODEL_NOT_FOUND", method);
    assert.equal(e.retryable, false);
    assert.equal(e.hint, "ollama pull no-such-model:7b");
  }
});

Deno.test("400 from the server (bad keep_alive) is a TASK_PARAMETER_ERROR", async () => {
  const p = new OllamaProvider({ url });
  const e = await rejects(
    p.call("llm/chat", { ...chat("llama3.2"), keep_alive: "10" }, testContext()),
  );
  assert.equal(e.code, "TASK_PARAMETER_ERROR");
  assert.match(e.message, /missing unit in duration/);
});

Deno.test("server down: PROVIDER_UNAVAILABLE, retryable, hint names the URL", async () => {
  const down = `http://127.0.0.1:${deadPort()}`;
  const p = new OllamaProvider({ url: down });
  const e = await rejects(p.call("llm/chat", chat("llama3.2"), testContext()));
  assert.equal(e.code, "PROVIDER_UNAVAILABLE");
  assert.equal(e.retryable, true);
  assert.equal(
    e.hint,
    `is Ollama running at ${down}? (ollama serve; elsewhere: --ollama-url or GLEITZEIT_OLLAMA_URL)`,
  );
});

Deno.test("503 when the server's queue is full: PROVIDER_OVERLOADED, retryable", async () => {
  await setServerConfig(url, { max_queue: 0 });
  try {
    const p = new OllamaProvider({ url, maxConcurrent: 3 }); // let the server see them all
    const calls = [
      p.call("llm/chat", chat("fault-slow:500ms"), testContext()),
      p.call("llm/chat", chat("llama3.2"), testContext()),
      p.call("llm/chat", chat("llama3.2"), testContext()),
    ];
    const settled = await Promise.allSettled(calls);
    const overloaded = settled.filter((s) =>
      s.status === "rejected" && s.reason instanceof GleitzeitError &&
      s.reason.code === "PROVIDER_OVERLOADED"
    ) as PromiseRejectedResult[];
    assert.ok(overloaded.length >= 1, JSON.stringify(settled.map((s) => s.status)));
    assert.equal(overloaded[0].reason.retryable, true);
    assert.match(overloaded[0].reason.message, /server busy/);
    assert.equal(settled[0].status, "fulfilled");
  } finally {
    await resetServerConfig(url);
  }
});

Deno.test("cancellation aborts the HTTP request; the rejection is the signal's reason", async () => {
  const p = new OllamaProvider({ url });
  // while waiting for the first byte
  const ctx = testContext();
  const pending = p.call("llm/chat", chat("fault-slow:10s"), ctx);
  await waitFor(async () => (await serverConfig(url)).runners.llama.active === 1, 3_000, "start");
  const reason = new Error("cancelled by the user");
  ctx.controller.abort(reason);
  await assert.rejects(pending, (e) => e === reason);
  await waitFor(idle, 3_000, "the server to free the slot");

  // mid-stream
  const ctx2 = testContext();
  const pending2 = p.call("llm/chat", chat("fault-stall:10s"), ctx2);
  await waitFor(() => ctx2.chunks.length > 0, 3_000, "the first chunk");
  const reason2 = new GleitzeitError("TASK_CANCELLED", "stop");
  ctx2.controller.abort(reason2);
  await assert.rejects(pending2, (e) => e === reason2);
  await waitFor(idle, 3_000, "the server to free the slot");
  assert.deepEqual(p.concurrency, { limit: 1, active: 0, queued: 0 });

  // already aborted: no request at all
  const ctx3 = testContext();
  ctx3.controller.abort(reason);
  await assert.rejects(p.call("llm/chat", chat("llama3.2"), ctx3), (e) => e === reason);
});

Deno.test("per-host limit 1: five concurrent calls run one at a time, in FIFO order", async () => {
  const p = new OllamaProvider({ url, maxConcurrent: 1 });
  const seen: { active: number; queued: number }[] = [];
  let polling = true;
  const poller = (async () => {
    while (polling) {
      const c = await serverConfig(url);
      seen.push({ active: c.runners.llama.active, queued: c.runners.llama.queued });
    }
  })();
  const finished: number[] = [];
  const calls = [0, 1, 2, 3, 4].map((i) =>
    p.call("llm/chat", chat("fault-slow:100ms", `What is ${i}+1?`), testContext())
      .then((r) => {
        finished.push(i);
        return (r as LlmResult).response;
      })
  );
  await waitFor(() => p.concurrency.queued === 4, 1_000, "four calls to queue");
  assert.deepEqual(p.concurrency, { limit: 1, active: 1, queued: 4 });
  const answers = await Promise.all(calls);
  polling = false;
  await poller;
  assert.deepEqual(answers, ["1", "2", "3", "4", "5"]);
  assert.deepEqual(finished, [0, 1, 2, 3, 4]);
  assert.ok(seen.some((s) => s.active === 1), "the poller never saw a call running");
  assert.ok(seen.every((s) => s.active <= 1 && s.queued === 0), JSON.stringify(seen));
  assert.deepEqual(p.concurrency, { limit: 1, active: 0, queued: 0 });

  // with a limit of 3 the server does see them together
  const wide = new OllamaProvider({ url, maxConcurrent: 3 });
  const wideCalls = [0, 1, 2].map(() =>
    wide.call("llm/chat", chat("fault-slow:300ms"), testContext())
  );
  await waitFor(async () => (await serverConfig(url)).runners.llama.queued === 2, 3_000, "queue");
  await Promise.all(wideCalls);
});

Deno.test("a cancelled queued call leaves the queue and is never sent", async () => {
  const p = new OllamaProvider({ url, maxConcurrent: 1 });
  const marker = crypto.randomUUID();
  const a = p.call("llm/chat", chat("fault-slow:300ms", `What is 1+1? ${marker}a`), testContext());
  const ctxB = testContext();
  const b = p.call("llm/chat", chat("llama3.2", `What is 2+2? ${marker}b`), ctxB);
  const c = p.call("llm/chat", chat("llama3.2", "What is 3+3?"), testContext());
  await waitFor(() => p.concurrency.queued === 2, 1_000, "two calls to queue");
  assert.deepEqual(p.concurrency, { limit: 1, active: 1, queued: 2 });
  const reason = new Error("cancelled while queued");
  ctxB.controller.abort(reason);
  await assert.rejects(b, (e) => e === reason);
  assert.deepEqual(p.concurrency, { limit: 1, active: 1, queued: 1 });
  assert.equal(((await a) as LlmResult).eval_count > 0, true);
  assert.equal(((await c) as LlmResult).response, "6");
  const sent = (await recordedRequests(url, "/api/chat")).filter((r) =>
    JSON.stringify(r.body).includes(marker)
  );
  assert.equal(sent.length, 1, "the cancelled call reached the server");
});

Deno.test("close() rejects waiting calls and aborts running ones", async () => {
  const p = new OllamaProvider({ url });
  const running = p.call("llm/chat", chat("fault-slow:5s"), testContext());
  const waiting = p.call("llm/chat", chat("llama3.2"), testContext());
  await waitFor(async () => (await serverConfig(url)).runners.llama.active === 1, 3_000, "start");
  await p.close();
  for (const settled of await Promise.allSettled([running, waiting])) {
    assert.equal(settled.status, "rejected");
    const e = (settled as PromiseRejectedResult).reason;
    assert.ok(e instanceof GleitzeitError);
    assert.equal(e.code, "PROVIDER_UNAVAILABLE");
  }
  await waitFor(idle, 3_000, "the server to free the slot");
});

Deno.test("a call waiting for the host's free place says so (ctx.onWaiting), so that the wait does not count against its timeout", async () => {
  const p = new OllamaProvider({ url, maxConcurrent: 1 });
  const first = testContext();
  const second = testContext();
  const said: [string, boolean][] = [];
  first.onWaiting = (w) => said.push(["first", w]);
  second.onWaiting = (w) => said.push(["second", w]);
  const a = p.call("llm/chat", chat("fault-slow:300ms"), first);
  const b = p.call("llm/chat", chat("fault-slow:300ms"), second);
  assert.equal(((await a) as LlmResult).response, "pong");
  assert.equal(((await b) as LlmResult).response, "pong");
  // the first had its place at once; the second waited for it, then had it
  assert.deepEqual(said, [["second", true], ["second", false]]);
  await p.close();
});

Deno.test("params.timeout is the call's own limit: past it, TASK_TIMEOUT and the request aborted", async () => {
  const p = new OllamaProvider({ url });
  const started = performance.now();
  const e = await rejects(
    p.call("llm/chat", { ...chat("fault-slow:5s"), timeout: 0.5 }, testContext()),
  );
  assert.equal(e.code, "TASK_TIMEOUT");
  assert.match(e.message, /exceeded its timeout of 0\.5s/);
  assert.ok(performance.now() - started < 4_000, "the request was not aborted");
  await waitFor(idle, 3_000, "the server to free the slot");
  // written as a task's own timeout may be: a duration
  const d = await rejects(
    p.call("llm/chat", { ...chat("fault-slow:5s"), timeout: "500ms" }, testContext()),
  );
  assert.equal(d.code, "TASK_TIMEOUT");
  assert.match(d.message, /exceeded its timeout of 0\.5s/);
  await waitFor(idle, 3_000, "the server to free the slot");
  // within it, the answer
  const r = await p.call("llm/chat", { ...chat("fault-slow:100ms"), timeout: 5 }, testContext());
  assert.equal((r as LlmResult).response, "pong");
  await p.close();
});

Deno.test({
  name: "stop the dedicated test server",
  fn: () => stopTestServer(PORT),
  sanitizeResources: false,
  sanitizeOps: false,
});
