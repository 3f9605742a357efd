/**
 * The LLM examples (examples/llm_chain.yaml, llm_python_mix.yaml, vision.yaml) run through the
 * composed application (config -> registry -> engine) against the real test server, asserting
 * the exact texts the tiny model gives at temperature 0.
 */

import assert from "node:assert/strict";
import { createApp } from "../../../src/app.ts";
import { resolveConfig } from "../../../src/config/config.ts";
import { loadWorkflowFile } from "../../../src/loader/load_workflow.ts";
import { startTestServer } from "./test_server.ts";

const url = await startTestServer();
const EXAMPLES = new URL("../../../examples/", import.meta.url).pathname;

async function runExample(file: string): Promise<Record<string, unknown>> {
  const home = await Deno.makeTempDir();
  const env = (name: string) => (name === "HOME" ? home : undefined);
  const app = await createApp(await resolveConfig({ ollamaUrl: url }, env));
  try {
    const workflow = await loadWorkflowFile(`${EXAMPLES}${file}`, app.registry);
    const outcome = await app.engine.run(workflow);
    const failed = outcome.tasks.filter((t) => t.state !== "completed");
    assert.equal(outcome.state, "completed", JSON.stringify(failed, null, 2));
    return Object.fromEntries(outcome.tasks.map((t) => [t.taskId, t.result]));
  } finally {
    await app.close();
    await Deno.remove(home, { recursive: true });
  }
}

const text = (r: unknown) => (r as { response: string }).response;

Deno.test("examples/llm_chain.yaml: each answer feeds the next prompt", async () => {
  const r = await runExample("llm_chain.yaml");
  assert.equal(text(r.add), "5");
  assert.equal(text(r.add_more), "9");
  assert.equal(text(r.capital), "Tokyo.");
  assert.equal(text(r.greet), "Hello! I am a tiny test model.");
});

Deno.test("examples/llm_python_mix.yaml: LLM -> Python -> LLM -> Python", async () => {
  const r = await runExample("llm_python_mix.yaml");
  assert.equal(text(r.ask), "5");
  assert.deepEqual((r.compute as { result: unknown }).result, {
    number: 5,
    half_up: 3,
    square: 25,
  });
  assert.equal(text(r.ask_again), "7");
  assert.deepEqual((r.check as { result: unknown }).result, { ok: true, answers: ["5", "7"] });
});

Deno.test("examples/vision.yaml: a PNG path relative to the workflow", async () => {
  const r = await runExample("vision.yaml");
  assert.equal(
    text(r.describe),
    "The image is 64x64 pixels. Main colors: red (25%), green (25%), blue (25%), yellow (25%). " +
      "Quadrants: top-left red, top-right green, bottom-left blue, bottom-right yellow.",
  );
  assert.deepEqual((r.colours as { result: unknown }).result, {
    mentioned: ["red", "yellow", "green", "blue"],
    structured: ["red", "green", "blue", "yellow"],
  });
});
