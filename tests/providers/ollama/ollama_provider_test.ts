/**
 * OllamaProvider against the real `../shared/ollama-test-server` (tiny real model at
 * temperature 0, vision stand-in): answers, streaming, generate/complete/vision, embed,
 * format, health, image paths and what is sent on the wire.
 */

import assert from "node:assert/strict";
import { type LlmResult, OllamaProvider } from "../../../src/providers/ollama/ollama_provider.ts";
import {
  deadPort,
  recordedRequests,
  rejects,
  startTestServer,
  testContext,
} from "./test_server.ts";

const url = await startTestServer();
const provider = new OllamaProvider({ url });
const FIXTURES = new URL("../../fixtures/", import.meta.url).pathname;
const QUADRANTS =
  "The image is 64x64 pixels. Main colors: red (25%), green (25%), blue (25%), yellow (25%). " +
  "Quadrants: top-left red, top-right green, bottom-left blue, bottom-right yellow.";

function chat(content: string, extra: Record<string, unknown> = {}) {
  return { model: "llama3.2", temperature: 0, messages: [{ role: "user", content }], ...extra };
}

Deno.test("llm/chat: ping -> pong with token counts, durations and the message", async () => {
  const ctx = testContext();
  const r = await provider.call("llm/chat", chat("ping"), ctx) as LlmResult;
  assert.equal(r.response, "pong");
  assert.equal(r.model, "llama3.2");
  assert.equal(r.done_reason, "stop");
  assert.equal(r.eval_count, 4); // one token per byte
  assert.ok(r.prompt_eval_count > 0);
  assert.deepEqual(r.message, { role: "assistant", content: "pong" });
  for (
    const k of [
      "total_duration_ms",
      "load_duration_ms",
      "prompt_eval_duration_ms",
      "eval_duration_ms",
    ] as const
  ) {
    assert.equal(typeof r[k], "number", k);
    assert.ok(r[k] >= 0, k);
  }
  assert.ok(r.total_duration_ms >= r.eval_duration_ms);
  assert.equal(r.data, undefined);
});

Deno.test("llm/chat: streams every text chunk to onProgress, in order", async () => {
  const ctx = testContext();
  const r = await provider.call("llm/chat", chat("Tell me a story"), ctx) as LlmResult;
  assert.equal(
    r.response,
    "Once upon a time, a little llama lived on a green hill. One day it found a shiny stone " +
      "and shared it with its friends. The end.",
  );
  assert.ok(ctx.chunks.length > 20, `only ${ctx.chunks.length} chunks`);
  assert.equal(ctx.chunks.join(""), r.response);
});

Deno.test("llm/chat: exact answers at temperature 0, system prompts and history", async () => {
  const cases: [string, string][] = [
    ["What is 2+3?", "5"],
    ["What is 4 plus 5?", "9"],
    ["Capital of France?", "Paris."],
    ["Say hello", "Hello! I am a tiny test model."],
    ["What is love?", "I do not know."],
  ];
  for (const [q, a] of cases) {
    const r = await provider.call("llm/chat", chat(q), testContext()) as LlmResult;
    assert.equal(r.response, a, q);
  }
  const r = await provider.call("llm/chat", {
    model: "llama3.2",
    options: { temperature: 0 },
    messages: [
      { role: "system", content: "You are terse." },
      { role: "user", content: "Hi" },
      { role: "assistant", content: "Hello! I am a tiny test model." },
      { role: "user", content: "What is 2+3?" },
    ],
  }, testContext()) as LlmResult;
  assert.equal(r.response, "5");
});

Deno.test("llm/generate and its alias llm/complete; system; max_tokens -> length", async () => {
  const g = await provider.call(
    "llm/generate",
    { model: "llama3.2", prompt: "What is 2+3?", temperature: 0 },
    testContext(),
  ) as LlmResult;
  assert.equal(g.response, "5");
  assert.equal(g.message, undefined);
  const c = await provider.call(
    "llm/complete",
    { model: "llama3.2", prompt: "ping", system: "Answer briefly.", temperature: 0 },
    testContext(),
  ) as LlmResult;
  assert.equal(c.response, "pong");
  const ctx = testContext();
  const cut = await provider.call(
    "llm/generate",
    { model: "llama3.2", prompt: "Tell me a story", temperature: 0, max_tokens: 5 },
    ctx,
  ) as LlmResult;
  assert.equal(cut.response, "Once ");
  assert.equal(cut.done_reason, "length");
  assert.equal(cut.eval_count, 5);
  assert.deepEqual(ctx.chunks, ["O", "n", "c", "e", " "]);
});

Deno.test("llm/vision: a PNG path relative to the workflow directory", async () => {
  const ctx = testContext({ baseDir: FIXTURES });
  const r = await provider.call(
    "llm/vision",
    { model: "llava:latest", prompt: "Describe this image.", images: ["quadrants.png"] },
    ctx,
  ) as LlmResult;
  assert.equal(r.response, QUADRANTS);
  assert.equal(r.model, "llava:latest");
  assert.equal(ctx.chunks.join(""), QUADRANTS);
});

Deno.test("llm/vision: base64, a data: URL, an absolute path inside, two images", async () => {
  const bytes = await Deno.readFile(`${FIXTURES}quadrants.png`);
  const b64 = btoa(String.fromCharCode(...bytes));
  const ctx = () => testContext({ baseDir: FIXTURES });
  for (const image of [b64, `data:image/png;base64,${b64}`, `${FIXTURES}quadrants.png`]) {
    const r = await provider.call(
      "llm/vision",
      { model: "llava", prompt: "Describe", images: [image] },
      ctx(),
    ) as LlmResult;
    assert.equal(r.response, QUADRANTS, image.slice(0, 40));
  }
  const two = await provider.call(
    "llm/vision",
    { model: "llava", prompt: "Compare", images: ["./quadrants.png", b64] },
    ctx(),
  ) as LlmResult;
  assert.equal(two.response, `Image 1: ${QUADRANTS} Image 2: ${QUADRANTS}`);
});

Deno.test("llm/vision: format json gives the stand-in's structured answer in data", async () => {
  const r = await provider.call(
    "llm/vision",
    { model: "llava", prompt: "Describe", images: ["quadrants.png"], format: "json" },
    testContext({ baseDir: FIXTURES }),
  ) as LlmResult;
  assert.deepEqual(r.data, {
    width: 64,
    height: 64,
    colors: ["red", "green", "blue", "yellow"].map((name) => ({ name, percent: 25 })),
    quadrants: { top_left: "red", top_right: "green", bottom_left: "blue", bottom_right: "yellow" },
  });
});

Deno.test("llm/chat: images in a message are resolved like llm/vision's", async () => {
  const r = await provider.call("llm/chat", {
    model: "llava",
    messages: [{ role: "user", content: "What is in it?", images: ["quadrants.png"] }],
  }, testContext({ baseDir: FIXTURES })) as LlmResult;
  assert.equal(r.response, QUADRANTS);
});

Deno.test("images: paths that leave the workflow directory are refused before any request", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const workflowDir = `${dir}/wf`;
    await Deno.mkdir(workflowDir);
    await Deno.writeFile(`${dir}/secret.png`, await Deno.readFile(`${FIXTURES}quadrants.png`));
    await Deno.symlink(`${dir}/secret.png`, `${workflowDir}/link.png`);
    for (
      const image of ["../secret.png", `${dir}/secret.png`, "link.png", "sub/../../secret.png"]
    ) {
      const e = await rejects(provider.call(
        "llm/vision",
        { model: "llava", prompt: "x", images: [image] },
        testContext({ baseDir: workflowDir }),
      ));
      assert.equal(e.code, "TASK_PARAMETER_ERROR", image);
      assert.equal(e.retryable, false);
      assert.match(e.message, /outside the workflow directory|not found/, image);
      if (image !== "sub/../../secret.png") assert.match(e.message, /outside the workflow/);
    }
    const missing = await rejects(provider.call(
      "llm/vision",
      { model: "llava", prompt: "x", images: ["nope.png"] },
      testContext({ baseDir: workflowDir }),
    ));
    assert.equal(missing.code, "TASK_PARAMETER_ERROR");
    assert.match(missing.message, /image file not found: nope\.png/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("llm/embed: one string and a list, 64-dim L2-normalised vectors", async () => {
  const one = await provider.call(
    "llm/embed",
    { model: "llama3.2", input: "hello" },
    testContext(),
  ) as { embeddings: number[][]; model: string; prompt_eval_count: number };
  assert.equal(one.model, "llama3.2");
  assert.equal(one.embeddings.length, 1);
  assert.equal(one.embeddings[0].length, 64);
  const norm = Math.hypot(...one.embeddings[0]);
  assert.ok(Math.abs(norm - 1) < 1e-6, `norm ${norm}`);
  assert.ok(one.prompt_eval_count > 0);
  const two = await provider.call(
    "llm/embed",
    { model: "llama3.2", input: ["hello", "pong"] },
    testContext(),
  ) as { embeddings: number[][] };
  assert.equal(two.embeddings.length, 2);
  assert.deepEqual(two.embeddings[0], one.embeddings[0]);
  assert.notDeepEqual(two.embeddings[1], one.embeddings[0]);
});

Deno.test("format: json and a JSON Schema put the parsed object in data", async () => {
  const j = await provider.call(
    "llm/chat",
    chat("Reply with JSON", { format: "json" }),
    testContext(),
  ) as LlmResult;
  assert.deepEqual(j.data, { answer: "ok", count: 3 });
  assert.equal(j.response, '{"answer": "ok", "count": 3}');
  const schema = {
    type: "object",
    properties: { answer: { type: "string" }, count: { type: "integer" } },
    required: ["answer", "count"],
  };
  const s = await provider.call(
    "llm/generate",
    { model: "llama3.2", prompt: "Give me JSON", temperature: 0, format: schema },
    testContext(),
  ) as LlmResult;
  const data = s.data as { answer: unknown; count: unknown };
  assert.equal(typeof data.answer, "string");
  assert.equal(typeof data.count, "number");
});

Deno.test("format: an answer cut by max_tokens is a TASK_RESULT_ERROR with a hint", async () => {
  const e = await rejects(provider.call(
    "llm/chat",
    chat("Reply with JSON", { format: "json", max_tokens: 4 }),
    testContext(),
  ));
  assert.equal(e.code, "TASK_RESULT_ERROR");
  assert.match(e.hint ?? "", /max_tokens/);
});

Deno.test("request log: options, keep_alive, num_ctx, format and images as Ollama expects", async () => {
  const marker = `marker-${crypto.randomUUID()}`;
  const schema = { type: "object", properties: { answer: { type: "string" } } };
  await provider.call("llm/chat", {
    model: "llama3.2",
    messages: [{ role: "system", content: marker }, { role: "user", content: "Reply with JSON" }],
    temperature: 0,
    max_tokens: 64,
    top_p: 0.5,
    num_ctx: 256,
    keep_alive: "10m",
    format: schema,
    options: { seed: 42, top_k: 10, top_p: 0.25 },
    stream: false,
    timeout: 30,
  }, testContext());
  await provider.call("llm/vision", {
    model: "llava",
    prompt: marker,
    images: ["quadrants.png"],
    keep_alive: 0,
  }, testContext({ baseDir: FIXTURES }));

  const chats = (await recordedRequests(url, "/api/chat")).filter((r) =>
    JSON.stringify(r.body).includes(marker)
  );
  assert.equal(chats.length, 1);
  const body = chats[0].body!;
  assert.equal(chats[0].headers["content-type"], "application/json");
  assert.deepEqual(body, {
    model: "llama3.2",
    stream: true, // always streamed internally, whatever `stream` says
    format: schema,
    keep_alive: "10m",
    options: { temperature: 0, num_predict: 64, top_p: 0.25, num_ctx: 256, seed: 42, top_k: 10 },
    messages: [{ role: "system", content: marker }, { role: "user", content: "Reply with JSON" }],
  });

  const gens = (await recordedRequests(url, "/api/generate")).filter((r) =>
    r.body?.prompt === marker
  );
  assert.equal(gens.length, 1);
  const png = await Deno.readFile(`${FIXTURES}quadrants.png`);
  assert.deepEqual(gens[0].body, {
    model: "llava",
    stream: true,
    keep_alive: 0,
    prompt: marker,
    images: [btoa(String.fromCharCode(...png))], // plain base64, no data: prefix
  });
});

Deno.test("health: server version and model names", async () => {
  const h = await provider.health();
  assert.equal(h.healthy, true);
  assert.equal(h.details?.version, "0.33.0");
  const models = h.details?.models as string[];
  assert.ok(models.includes("llama3.2:latest"), models.join());
  assert.ok(models.includes("llava:latest"));
  assert.match(h.message ?? "", /0\.33\.0/);
});

Deno.test("health: a server that is down is unhealthy, with the hint", async () => {
  const down = new OllamaProvider({ url: `http://127.0.0.1:${deadPort()}` });
  const h = await down.health();
  assert.equal(h.healthy, false);
  assert.equal(h.details?.code, "PROVIDER_UNAVAILABLE");
  assert.match(
    h.message ?? "",
    /is Ollama running at http:\/\/127\.0\.0\.1:\d+\? \(ollama serve; elsewhere: --ollama-url or GLEITZEIT_OLLAMA_URL\)/,
  );
});

Deno.test("provider: id, protocol, unknown method", async () => {
  assert.equal(provider.id, `ollama@${url}`);
  assert.equal(provider.protocol, "llm/v1");
  assert.equal(new OllamaProvider().url, "http://localhost:11434");
  const e = await rejects(provider.call("llm/translate", { model: "x" }, testContext()));
  assert.equal(e.code, "METHOD_NOT_SUPPORTED");
});

Deno.test("llm/chat with tools: the tool call is in message.tool_calls", async () => {
  const tools = [{
    type: "function",
    function: {
      name: "get_weather",
      description: "Weather of a city",
      parameters: {
        type: "object",
        properties: { city: { type: "string" } },
        required: ["city"],
      },
    },
  }];
  const r = await provider.call(
    "llm/chat",
    chat("What is the weather in Oslo?", { tools }),
    testContext(),
  ) as LlmResult;
  const calls = r.message?.tool_calls as { function: { name: string; arguments: unknown } }[];
  assert.equal(calls.length, 1);
  assert.equal(calls[0].function.name, "get_weather");
  assert.deepEqual(calls[0].function.arguments, { city: "Oslo" });
});
