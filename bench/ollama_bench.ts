/**
 * Overhead of an `llm/chat` task through the engine (and of the bare OllamaProvider call)
 * against direct HTTP calls to the same server, in the same run. The variants are interleaved
 * (one call of each per round, in a rotating order) so that server drift and a noisy machine
 * hit all of them alike; the report gives medians, the engine/direct ratios against both
 * baselines, and the client CPU per call (user + system of this process, `process.cpuUsage`),
 * which a busy machine disturbs much less than wall time.
 *
 *   deno run -A bench/ollama_bench.ts [--iterations N] [--url URL]
 *
 * Without `--url` it starts `../shared/ollama-test-server` (idempotent) and uses it.
 *
 * Baselines: `direct stream:false` is the smallest possible client (one JSON document);
 * `direct streamed` asks for the NDJSON stream the provider consumes and reads it whole with
 * `Response.text()` (no per-chunk work in JavaScript), then joins the lines. The provider
 * always streams (the idle timeout watches the connection, `onProgress` gets each token), so
 * `direct streamed` is the like-for-like baseline; the gap between the two baselines is the
 * server's cost of streaming, which no client can avoid.
 *
 * The engine runs each task as a one-task workflow on a MemoryStore (`store: memory`), with
 * one event listener attached (as the CLI has), so `task_progress` events are built for
 * every token.
 *
 * @module
 */

import process from "node:process";
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
  options: { iterations: { type: "string", default: "100" }, url: { type: "string" } },
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
let progressEvents = 0;
const engine = new Engine({
  dispatcher: registry,
  store: new MemoryStore(),
  onEvent: (e) => {
    if (e.type === "task_progress") progressEvents++;
  },
});

const DIRECT_FALSE = "direct fetch, stream:false";
const DIRECT_STREAMED = "direct fetch, streamed";
const PROVIDER = "OllamaProvider.call";
const ENGINE = "Engine.run (1-task workflow)";

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
  let tokens = 0;
  return [
    [DIRECT_FALSE, async () => (await (await post(false)).json()).message.content],
    [DIRECT_STREAMED, async () => {
      const text = await (await post(true)).text();
      return text.trim().split("\n").map((l) => JSON.parse(l).message?.content ?? "").join("");
    }],
    [PROVIDER, async () => {
      const ctx = {
        signal: new AbortController().signal,
        runId: "bench",
        taskId: "chat",
        attempt: 1,
        onProgress: () => void tokens++,
      };
      return ((await provider.call("llm/chat", chatParams, ctx)) as { response: string }).response;
    }],
    [ENGINE, async () => {
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
const pct = (r: number) => `${r >= 1 ? "+" : ""}${((r - 1) * 100).toFixed(1)}%`;

console.log(
  `llm/chat on ${url} (${MODEL}, temperature 0), ${N} rounds, variants interleaved in a ` +
    `rotating order; engine store: memory; load average ${Deno.loadavg().join(" ")}`,
);
for (const [prompt, expected] of PROMPTS) {
  const variants = variantsFor(prompt);
  for (const [name, fn] of variants) { // warm up and check the answer
    for (let i = 0; i < 5; i++) {
      const answer = await fn();
      if (answer !== expected) throw new Error(`${name} answered ${JSON.stringify(answer)}`);
    }
  }
  const times = new Map<string, number[]>(variants.map(([name]) => [name, []]));
  const cpu = new Map<string, number>(variants.map(([name]) => [name, 0]));
  progressEvents = 0;
  for (let i = 0; i < N; i++) {
    for (let k = 0; k < variants.length; k++) {
      const [name, fn] = variants[(i + k) % variants.length];
      const c = process.cpuUsage();
      const t = performance.now();
      await fn();
      times.get(name)!.push(performance.now() - t);
      const d = process.cpuUsage(c);
      cpu.set(name, cpu.get(name)! + d.user + d.system);
    }
  }
  const medianOf = (name: string) => median(times.get(name)!);
  /** Median of the per-round ratios (each round's calls ran back to back). */
  const paired = (a: string, b: string) =>
    median(times.get(a)!.map((t, i) => t / times.get(b)![i]));
  console.log(
    `\nprompt "${prompt}" (answer ${expected.length} tokens; ` +
      `${progressEvents / N} task_progress events per engine run)`,
  );
  console.log(`  ${"".padEnd(29)}  median ms   client CPU/call`);
  for (const [name] of variants) {
    console.log(
      `  ${name.padEnd(29)} ${medianOf(name).toFixed(3).padStart(8)}   ${
        (cpu.get(name)! / N / 1000).toFixed(3).padStart(8)
      } ms`,
    );
  }
  for (const [who, label] of [[ENGINE, "engine"], [PROVIDER, "provider"]]) {
    for (const base of [DIRECT_STREAMED, DIRECT_FALSE]) {
      const r = medianOf(who) / medianOf(base);
      console.log(
        `  ${label}/${base.replace("direct fetch, ", "direct ")}`.padEnd(36) +
          `${r.toFixed(3)} (${pct(r)}; paired per round ${pct(paired(who, base))}; ` +
          `+${(medianOf(who) - medianOf(base)).toFixed(3)} ms)`,
      );
    }
  }
}
await engine.store.close();
await provider.close();
await registry.close();
