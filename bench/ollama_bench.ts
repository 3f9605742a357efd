/**
 * Overhead of an `llm/chat` call through OllamaProvider (and through the engine, as a one-task
 * workflow) against direct HTTP calls to the same server, in the same run, interleaved so
 * that server drift hits every variant alike. Prints medians and ratios.
 *
 *   deno run -A bench/ollama_bench.ts [--iterations N] [--url URL]
 *
 * Without `--url` it starts `../shared/ollama-test-server` (idempotent) and uses it.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Engine } from "../src/engine/engine.ts";
import { parseWorkflow } from "../src/loader/load_workflow.ts";
import { MemoryStore } from "../src/persistence/memory_store.ts";
import { LLM_PROTOCOL } from "../src/providers/ollama/llm_methods.ts";
import { OllamaProvider } from "../src/providers/ollama/ollama_provider.ts";
import { ProviderRegistry } from "../src/providers/registry.ts";
import { startTestServer } from "../tests/providers/ollama/test_server.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { iterations: { type: "string", default: "50" }, url: { type: "string" } },
});
const N = Number(values.iterations);
const url = values.url ?? await startTestServer();
const MODEL = "llama3.2";
const STORY = "Once upon a time, a little llama lived on a green hill. One day it found a shiny " +
  "stone and shared it with its friends. The end.";
/** A 4-token answer (overhead per call) and a 127-token one (overhead per streamed chunk). */
const PROMPTS: [string, string][] = [["ping", "pong"], ["Tell me a story", STORY]];

const provider = new OllamaProvider({ url });
const registry = new ProviderRegistry();
registry.registerProtocol(LLM_PROTOCOL);
registry.register(new OllamaProvider({ url }));
const engine = new Engine({ dispatcher: registry, store: new MemoryStore() });

function variantsFor(prompt: string): [string, () => Promise<string>][] {
  const chatParams = {
    model: MODEL,
    options: { temperature: 0 },
    messages: [{ role: "user", content: prompt }],
  };
  const post = (stream: boolean) =>
    fetch(`${url}/api/chat`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ...chatParams, stream }),
    });
  const workflow = parseWorkflow(
    JSON.stringify({
      name: "bench",
      tasks: [{ id: "chat", method: "llm/chat", parameters: chatParams }],
    }),
    "bench.json",
    registry,
  );
  return [
    // the smallest possible client
    ["direct fetch, stream:false", async () => (await (await post(false)).json()).message.content],
    // streamed NDJSON read to the end, as the provider reads it
    ["direct fetch, streamed", async () => {
      const text = await (await post(true)).text();
      return text.trim().split("\n").map((l) => JSON.parse(l).message?.content ?? "").join("");
    }],
    ["OllamaProvider.call", async () => {
      const ctx = {
        signal: new AbortController().signal,
        runId: "bench",
        taskId: "chat",
        attempt: 1,
        onProgress: () => {},
      };
      return ((await provider.call("llm/chat", chatParams, ctx)) as { response: string }).response;
    }],
    ["Engine.run (1-task workflow)", async () => {
      const outcome = await engine.run(workflow);
      if (outcome.state !== "completed") throw new Error(`run ${outcome.state}`);
      return (outcome.tasks[0].result as { response: string }).response;
    }],
  ];
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

console.log(`llm/chat on ${url} (${MODEL}, temperature 0), ${N} iterations, interleaved`);
for (const [prompt, expected] of PROMPTS) {
  const variants = variantsFor(prompt);
  for (const [name, fn] of variants) { // warm up and check the answer
    for (let i = 0; i < 3; i++) {
      const answer = await fn();
      if (answer !== expected) throw new Error(`${name} answered ${JSON.stringify(answer)}`);
    }
  }
  const times = new Map<string, number[]>(variants.map(([name]) => [name, []]));
  for (let i = 0; i < N; i++) {
    for (const [name, fn] of variants) {
      const t = performance.now();
      await fn();
      times.get(name)!.push(performance.now() - t);
    }
  }
  const base = median(times.get(variants[0][0])!);
  const streamed = median(times.get(variants[1][0])!);
  console.log(`\nprompt "${prompt}" (answer ${expected.length} tokens)`);
  for (const [name] of variants) {
    const m = median(times.get(name)!);
    console.log(
      `  ${name.padEnd(29)} median ${m.toFixed(2).padStart(7)} ms   ${
        (m / base).toFixed(3)
      } x direct stream:false   ${(m / streamed).toFixed(3)} x direct streamed`,
    );
  }
}
await engine.store.close();
