/** Every example workflow loads and validates; every one that needs no LLM or server also runs. */
import { assertEquals } from "./assert.ts";
import { createRegistry } from "../src/app.ts";
import { resolveConfig } from "../src/config/config.ts";
import { loadWorkflowFile } from "../src/loader/load_workflow.ts";
import { gleitzeit, scratch } from "./cli/helpers.ts";

const EXAMPLES = new URL("../examples/", import.meta.url).pathname;

async function* yamlFiles(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const path = `${dir}${e.name}`;
    if (e.isDirectory) yield* yamlFiles(`${path}/`);
    else if (/\.ya?ml$/.test(e.name) && !e.name.startsWith("config")) yield path;
  }
}

const files: string[] = [];
for await (const f of yamlFiles(EXAMPLES)) files.push(f);
files.sort();

Deno.test("every example workflow loads and validates", async () => {
  const config = await resolveConfig({ config: "/dev/null" }, () => undefined);
  const registry = await createRegistry(config);
  for (const f of files) {
    if (f.includes("/providers/")) continue; // needs the providers declared in its config (tested there)
    await loadWorkflowFile(f, registry);
  }
});

/** Examples that need only built-in local providers (echo, python). */
const LOCAL = [
  "hello_python.yaml",
  "typed_chain.yaml",
  "fan_out_fan_in.yaml",
  "retry_and_timeout.yaml",
  "python_script.yaml",
];

const EXPECTED: Record<string, (r: Record<string, unknown>) => void> = {
  "hello_python.yaml": (r) =>
    assertEquals(r.summary, { message: "HELLO, WORLD! (5 letters in the name)" }),
  "typed_chain.yaml": (r) =>
    assertEquals((r.report as { result: unknown }).result, "Oslo: 4 readings from 2.5 to 5.5"),
  "fan_out_fan_in.yaml": (r) =>
    assertEquals((r.total as { result: unknown }).result, { sum: 2470, count: 20 }),
  "retry_and_timeout.yaml": (r) => assertEquals(Object.keys(r), ["after"]),
  "python_script.yaml": (r) =>
    assertEquals(
      (r.report as { result: unknown }).result,
      "12 words, most common: the, fox, quick",
    ),
};

Deno.test("example python_script.yaml runs in the default sandbox (its read grant and script)", async () => {
  const { env } = await scratch();
  const r = await gleitzeit(["--json", "run", `${EXAMPLES}python_script.yaml`], { env });
  assertEquals(r.code, 0, r.stderr);
  EXPECTED["python_script.yaml"]!(JSON.parse(r.stdout).results);
});

for (const name of LOCAL) {
  Deno.test(`example ${name} runs`, async () => {
    const { env } = await scratch();
    const r = await gleitzeit(["--json", "run", `${EXAMPLES}${name}`, "--sandbox", "none"], {
      env,
    });
    assertEquals(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    EXPECTED[name]!(report.results);
  });
}

Deno.test("example retry_and_timeout.yaml, as its comments say, in the default sandbox", async () => {
  const { env } = await scratch();
  const r = await gleitzeit(["--json", "run", `${EXAMPLES}retry_and_timeout.yaml`], { env });
  assertEquals(r.code, 0, r.stderr);
  const attempts = Object.fromEntries(
    JSON.parse(r.stdout).tasks.map((t: { id: string; attempts: number }) => [t.id, t.attempts]),
  );
  assertEquals(attempts, { unreachable_service: 3, too_slow: 2, after: 1 });
});

Deno.test("docs/workflow.schema.json is the schema `gleitzeit workflow schema` prints", async () => {
  const { workflowJsonSchema } = await import("../src/loader/load_workflow.ts");
  const stored = JSON.parse(
    await Deno.readTextFile(new URL("../docs/workflow.schema.json", import.meta.url)),
  );
  assertEquals(
    stored,
    workflowJsonSchema(),
    "regenerate: ./gleitzeit workflow schema > docs/workflow.schema.json",
  );
});

Deno.test("the README's workflow example is valid", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const at = readme.indexOf("## A workflow");
  const start = readme.indexOf("```yaml\n", at) + "```yaml\n".length;
  const text = readme.slice(start, readme.indexOf("```", start));
  const { parseWorkflow } = await import("../src/loader/load_workflow.ts");
  const registry = await createRegistry(
    await resolveConfig({ config: "/dev/null" }, () => undefined),
  );
  const wf = parseWorkflow(text, "README.md", registry);
  assertEquals(wf.tasks.map((t) => [t.id, t.dependencies]), [
    ["numbers", []],
    ["stats", ["numbers"]],
    ["report", ["stats"]],
  ]);
});
