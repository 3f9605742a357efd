import { deepStrictEqual, equal, ok, rejects } from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { GleitzeitError, WorkflowValidationError } from "../../src/core/errors.ts";
import { validateSchema } from "../../src/core/json_schema.ts";
import {
  formatIssues,
  loadWorkflowFile,
  parseWorkflow,
  workflowJsonSchema,
} from "../../src/loader/load_workflow.ts";
import { parse as parseYaml } from "yaml";
import { catalog, issuesOf, yaml } from "./catalog.ts";

// CI clones the repo next to shared/, so resolve from the repo root, not the cwd.
const SEEDS = fileURLToPath(new URL("../../../shared/seed-examples/", import.meta.url));

async function seedFiles(): Promise<string[]> {
  const files: string[] = [];
  try {
    for await (const e of Deno.readDir(SEEDS)) {
      if (/\.(ya?ml|json)$/.test(e.name)) files.push(join(SEEDS, e.name));
    }
  } catch (e) {
    throw new Error(`cannot read ${SEEDS}: shared/seed-examples must sit beside the repo (${e})`);
  }
  return files.sort();
}

Deno.test("every seed example loads and validates", async () => {
  const files = await seedFiles();
  ok(files.length >= 9, `expected the seed examples in ${SEEDS}, found ${files.length}`);
  for (const file of files) {
    const wf = await loadWorkflowFile(file, catalog);
    ok(wf.tasks.length > 0, file);
    equal(wf.sourcePath, file);
    equal(wf.baseDir, SEEDS.replace(/\/$/, ""));
    for (const t of wf.tasks) {
      ok(catalog.method(t.protocol, t.method), `${file}: ${t.id} ${t.protocol} ${t.method}`);
    }
  }
});

Deno.test("seed details: inferred protocols, derived ids, priorities, retry, timeouts", async () => {
  const dependent = await loadWorkflowFile(join(SEEDS, "dependent_workflow.yaml"), catalog);
  deepStrictEqual(dependent.tasks.map((t) => [t.id, t.protocol, t.priority, t.dependencies]), [
    ["generate_topic", "llm/v1", 3, []],
    ["write_outline", "llm/v1", 2, ["generate_topic"]],
    ["write_essay", "llm/v1", 1, ["write_outline"]],
  ]);
  equal(dependent.timeoutMs, 120_000);
  equal(dependent.version, "1.0");
  equal(dependent.tasks[1]!.name, "write_outline");

  const simple = await loadWorkflowFile(join(SEEDS, "simple_test.yaml"), catalog);
  deepStrictEqual(
    simple.tasks.map((t) => [t.id, t.name, t.protocol, t.priority]),
    [["echo_task", "Echo Task", "echo/v1", 75]],
  );

  const llm = await loadWorkflowFile(join(SEEDS, "llm_test.yaml"), catalog);
  equal(llm.tasks[0]!.id, "generate_text");
  equal(llm.tasks[0]!.priority, 50);
  deepStrictEqual(llm.tasks[0]!.retry, {
    maxAttempts: 2,
    backoff: "exponential",
    baseDelayMs: 5000,
    maxDelayMs: 60_000,
    jitter: true,
  });

  const mcp = await loadWorkflowFile(join(SEEDS, "mcp_test_workflow.yaml"), catalog);
  deepStrictEqual(mcp.tasks.map((t) => [t.id, t.protocol, t.method]), [
    ["health_check", "mcp/v1", "ping"],
    ["discover_tools", "mcp/v1", "tools/list"],
  ]);

  const mixed = await loadWorkflowFile(join(SEEDS, "mixed_workflow.yaml"), catalog);
  equal(mixed.tasks[1]!.protocol, "python/v1");
  equal(mixed.tasks[1]!.params.timeout, 30);
});

Deno.test("both dialects give the same workflow", () => {
  const older = parseWorkflow(
    yaml(
      "name: d",
      "tasks:",
      "  - id: one",
      "    protocol: python/v1",
      "    method: python/execute",
      "    params: {code: 'result = 1'}",
      "  - id: two",
      "    protocol: python/v1",
      "    method: python/execute",
      "    params: {code: 'result = 2'}",
      "    dependencies: [one]",
    ),
    "old.yaml",
    catalog,
  );
  const newer = parseWorkflow(
    yaml(
      "name: d",
      "tasks:",
      "  - id: one",
      "    method: python/execute",
      "    parameters: {code: 'result = 1'}",
      "  - id: two",
      "    method: python/execute",
      "    parameters: {code: 'result = 2'}",
      "    depends_on: [one]",
    ),
    "new.yaml",
    catalog,
  );
  deepStrictEqual(newer, older);
  deepStrictEqual(older.tasks[1]!.dependencies, ["one"]);
  equal(older.onFailure, "fail_fast");
  deepStrictEqual(older.params, {});
});

Deno.test("ids derive from names; names default to ids; dependencies may use names", () => {
  const wf = parseWorkflow(
    yaml(
      "name: n",
      "tasks:",
      "  - name: 'Fetch  the Data!'",
      "    method: echo",
      "  - id: explicit",
      "    method: echo",
      "  - name: Report",
      "    method: echo",
      "    dependencies: ['Fetch  the Data!', explicit, fetch_the_data]",
    ),
    "n.yaml",
    catalog,
  );
  deepStrictEqual(wf.tasks.map((t) => [t.id, t.name]), [
    ["fetch_the_data", "Fetch  the Data!"],
    ["explicit", "explicit"],
    ["report", "Report"],
  ]);
  deepStrictEqual(wf.tasks[2]!.dependencies, ["fetch_the_data", "explicit"]);
});

Deno.test("anchors under top-level x- keys merge into tasks with <<", () => {
  const wf = parseWorkflow(
    yaml(
      "name: m",
      "x-common: &common",
      "  method: echo",
      "  retry: 2",
      "  timeout: 5s",
      "tasks:",
      "  - id: a",
      "    <<: *common",
      "  - id: b",
      "    <<: *common",
      "    retry: 4",
    ),
    "m.yaml",
    catalog,
  );
  deepStrictEqual(wf.tasks.map((t) => [t.id, t.method, t.retry.maxAttempts, t.timeoutMs]), [
    ["a", "echo", 2, 5000],
    ["b", "echo", 4, 5000],
  ]);
  const inTask = issuesOf(yaml("name: m", "tasks:", "  - {id: a, method: echo, x-note: 1}"));
  deepStrictEqual(inTask.map((i) => i.path), ["tasks[0].x-note"]);
});

Deno.test("priorities: words and integers", () => {
  const wf = parseWorkflow(
    yaml(
      "name: p",
      "tasks:",
      "  - {id: a, method: echo, priority: urgent}",
      "  - {id: b, method: echo, priority: high}",
      "  - {id: c, method: echo, priority: normal}",
      "  - {id: d, method: echo, priority: low}",
      "  - {id: e, method: echo, priority: 7}",
      "  - {id: f, method: echo, priority: -3}",
      "  - {id: g, method: echo}",
    ),
    "p.yaml",
    catalog,
  );
  deepStrictEqual(wf.tasks.map((t) => t.priority), [100, 75, 50, 25, 7, -3, 50]);
});

Deno.test("retry: bare integer, full object, defaults", () => {
  const wf = parseWorkflow(
    yaml(
      "name: r",
      "tasks:",
      "  - {id: a, method: echo}",
      "  - {id: b, method: echo, retry: 4}",
      "  - id: c",
      "    method: echo",
      "    retry: {max_attempts: 3, backoff: linear, base_delay: 0.5, max_delay: 2m, jitter: false}",
      "  - {id: d, method: echo, retry: {max_attempts: 2, backoff: fixed, base_delay: 250ms}}",
    ),
    "r.yaml",
    catalog,
  );
  const base = {
    maxAttempts: 1,
    backoff: "exponential",
    baseDelayMs: 1000,
    maxDelayMs: 60_000,
    jitter: true,
  };
  deepStrictEqual(wf.tasks[0]!.retry, base);
  deepStrictEqual(wf.tasks[1]!.retry, { ...base, maxAttempts: 4 });
  deepStrictEqual(wf.tasks[2]!.retry, {
    maxAttempts: 3,
    backoff: "linear",
    baseDelayMs: 500,
    maxDelayMs: 120_000,
    jitter: false,
  });
  deepStrictEqual(wf.tasks[3]!.retry, {
    ...base,
    maxAttempts: 2,
    backoff: "fixed",
    baseDelayMs: 250,
  });
});

Deno.test("retry: an object without max_attempts is an error (the task would run once)", () => {
  const issues = issuesOf(yaml(
    "name: r",
    "tasks:",
    "  - {id: d, method: echo, retry: {backoff: fixed, base_delay: 250ms}}",
  ));
  deepStrictEqual(issues.map((i) => [i.path, i.line]), [["tasks[0].retry.max_attempts", 3]]);
  ok(/number of attempts.*runs once/.test(issues[0]!.message), issues[0]!.message);
});

Deno.test("retry: a misspelt key and the missing max_attempts are reported together", () => {
  const issues = issuesOf(yaml(
    "name: r",
    "tasks:",
    "  - {id: d, method: echo, retry: {backof: fixed}}",
  ));
  deepStrictEqual(issues.map((i) => i.path).sort(), [
    "tasks[0].retry.backof",
    "tasks[0].retry.max_attempts",
  ]);
  // max_attempts itself misspelt: only the misspelling, whose hint names the key
  const typo = issuesOf(yaml(
    "name: r",
    "tasks:",
    "  - {id: d, method: echo, retry: {max_attempt: 3}}",
  ));
  deepStrictEqual(typo.map((i) => i.path), ["tasks[0].retry.max_attempt"]);
  ok(/max_attempts/.test(typo[0]!.hint ?? ""), JSON.stringify(typo[0]));
});

Deno.test("a misspelt required key is said once: as the unknown key, not also as missing", () => {
  const issues = issuesOf(yaml(
    "name: m",
    "tasks:",
    "  - id: a",
    "    mehtod: python/execute",
    "    params: {code: 'result = 1'}",
    "  - {id: b}",
  ));
  deepStrictEqual(issues.map((i) => [i.path, i.message, i.hint]), [
    ["tasks[0].mehtod", "unknown key 'mehtod'", "did you mean 'method'?"],
    // (no misspelling there: missing it is)
    ["tasks[1].method", "is required", undefined],
  ]);
});

Deno.test("durations: seconds and unit strings, stored as milliseconds", () => {
  const wf = parseWorkflow(
    yaml(
      "name: t",
      "timeout: 1h",
      "max_parallel: 3",
      "on_failure: continue",
      "tasks:",
      "  - {id: a, method: echo, timeout: 30}",
      "  - {id: b, method: echo, timeout: 1.5}",
      "  - {id: c, method: echo, timeout: '30s'}",
      "  - {id: d, method: echo, timeout: 5m}",
      "  - {id: e, method: echo, timeout: 500ms}",
      "  - {id: f, method: echo, timeout: 1m30s}",
      "  - {id: g, method: echo, timeout: '45'}",
      "  - {id: h, method: echo, continue_on_failure: true}",
    ),
    "t.yaml",
    catalog,
  );
  equal(wf.timeoutMs, 3_600_000);
  equal(wf.maxParallel, 3);
  equal(wf.onFailure, "continue");
  deepStrictEqual(
    wf.tasks.map((t) => t.timeoutMs),
    [30_000, 1500, 30_000, 300_000, 500, 90_000, 45_000, undefined],
  );
  ok("timeoutMs" in wf.tasks[0]!);
  ok(!("timeoutMs" in wf.tasks[7]!));
  deepStrictEqual(wf.tasks.map((t) => t.continueOnFailure), [...Array(7).fill(false), true]);
});

Deno.test("references imply dependencies, by id or by name, without repeats", () => {
  const wf = parseWorkflow(
    yaml(
      "name: refs",
      "params: {topic: tea, n: 3}",
      "tasks:",
      "  - {id: list, method: python/execute, params: {code: 'result = [1]'}}",
      "  - {name: Stats, method: python/execute, params: {code: 'result = 2'}}",
      "  - id: use",
      "    method: python/execute",
      "    dependencies: [list]",
      "    params:",
      "      code: 'print(x)'",
      "      context:",
      "        a: '${list.result[0]}'",
      "        b: 'mean ${Stats.result.mean} and ${stats.result} on ${params.topic}'",
      "        c: ['${list.result}', {d: '${params.n}'}]",
    ),
    "refs.yaml",
    catalog,
  );
  deepStrictEqual(wf.tasks[2]!.dependencies, ["list", "stats"]);
  deepStrictEqual(wf.params, { topic: "tea", n: 3 });
  // params are kept as written; the engine substitutes them
  equal((wf.tasks[2]!.params.context as Record<string, unknown>).a, "${list.result[0]}");
});

Deno.test("JSON input loads, with positions in issues", () => {
  const text = JSON.stringify(
    {
      name: "json",
      params: { who: "world" },
      tasks: [
        { id: "a", method: "echo", params: { msg: "hi ${params.who}" } },
        { id: "b", protocol: "echo/v1", method: "echo", depends_on: ["a"], priority: "low" },
      ],
    },
    null,
    "\t",
  );
  const wf = parseWorkflow(text, "wf.json", catalog);
  deepStrictEqual(wf.tasks.map((t) => [t.id, t.protocol, t.dependencies, t.priority]), [
    ["a", "echo/v1", [], 50],
    ["b", "echo/v1", ["a"], 25],
  ]);

  const bad =
    '{\n  "name": "j",\n  "tasks": [\n    {"id": "a", "method": "echo", "prioity": 1}\n  ]\n}\n';
  try {
    parseWorkflow(bad, "bad.json", catalog);
    throw new Error("expected a validation error");
  } catch (e) {
    ok(e instanceof WorkflowValidationError);
    deepStrictEqual(formatIssues(e), [
      "bad.json:4:35: tasks[0].prioity: unknown key 'prioity' (did you mean 'priority'?)",
    ]);
  }
  // a missing comma is told in JSON's words, not YAML's
  try {
    parseWorkflow(
      '{"name": "j", "tasks": [\n  {"id": "a", "method": "echo"}\n  {"id": "b", "method": "echo"}\n]}\n',
      "comma.json",
      catalog,
    );
    throw new Error("expected a validation error");
  } catch (e) {
    ok(e instanceof WorkflowValidationError);
    deepStrictEqual(e.issues.map((i) => [i.line, i.message]), [
      [3, "not valid JSON: Expected ',' or ']' after array element"],
    ]);
  }
});

Deno.test("sandbox settings are kept as written", () => {
  const wf = parseWorkflow(
    yaml(
      "name: s",
      "sandbox: bwrap",
      "tasks:",
      "  - id: a",
      "    method: python/execute",
      "    params: {code: 'result = 1'}",
      "    sandbox:",
      "      mode: basic",
      "      network: ['api.example.com:443', '127.0.0.1:11434', 'localhost:8080']",
      "      read: [./data]",
      "      write: [/tmp/out]",
      "      memory_mb: 512",
      "      cpu_seconds: 10",
      "      timeout: 2m",
      "  - {id: b, method: echo, sandbox: {network: false}}",
      "  - {id: c, method: echo, sandbox: none}",
      "  - {id: d, method: echo}",
    ),
    "s.yaml",
    catalog,
  );
  equal(wf.sandbox, "bwrap");
  deepStrictEqual(wf.tasks[0]!.sandbox, {
    mode: "basic",
    network: ["api.example.com:443", "127.0.0.1:11434", "localhost:8080"],
    read: ["./data"],
    write: ["/tmp/out"],
    memory_mb: 512,
    cpu_seconds: 10,
    timeout: "2m",
  });
  deepStrictEqual(wf.tasks[1]!.sandbox, { network: false });
  equal(wf.tasks[2]!.sandbox, "none");
  ok(!("sandbox" in wf.tasks[3]!));
});

Deno.test("informational keys are allowed; version keeps its written form", () => {
  const wf = parseWorkflow(
    yaml(
      "name: i",
      "version: 1.0",
      "wait_for_completion: true",
      "metadata: {owner: ops}",
      "tasks:",
      "  - {id: a, method: echo, metadata: {note: x}, description: says hi}",
    ),
    "i.yaml",
    catalog,
  );
  equal(wf.version, "1.0");
  ok(!("metadata" in wf));
});

Deno.test("loadWorkflowFile: sourcePath, baseDir, missing file and directory errors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = join(dir, "wf.yaml");
    await Deno.writeTextFile(file, yaml("name: f", "tasks:", "  - {id: a, method: echo}"));
    const wf = await loadWorkflowFile(file, catalog);
    equal(wf.sourcePath, file);
    equal(wf.baseDir, dir);

    await rejects(loadWorkflowFile(join(dir, "nope.yaml"), catalog), (e: unknown) => {
      ok(e instanceof GleitzeitError);
      equal(e.code, "WORKFLOW_FILE_ERROR");
      equal(e.exitCode, 2);
      ok(e.message.includes("not found"), e.message);
      ok(e.hint?.includes(join(dir, "nope.yaml")), e.hint);
      return true;
    });
    await rejects(loadWorkflowFile(dir, catalog), (e: unknown) => {
      ok(e instanceof GleitzeitError);
      equal(e.code, "WORKFLOW_FILE_ERROR");
      ok(e.hint !== undefined);
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// Keywords of JSON Schema draft 2020-12 (core, applicator, validation, meta-data, format).
const KEYWORDS = new Set([
  "$schema",
  "$id",
  "$ref",
  "$defs",
  "$comment",
  "$anchor",
  "$dynamicRef",
  "$dynamicAnchor",
  "type",
  "enum",
  "const",
  "properties",
  "additionalProperties",
  "patternProperties",
  "propertyNames",
  "required",
  "items",
  "prefixItems",
  "contains",
  "anyOf",
  "oneOf",
  "allOf",
  "not",
  "if",
  "then",
  "else",
  "minimum",
  "maximum",
  "exclusiveMinimum",
  "exclusiveMaximum",
  "multipleOf",
  "minLength",
  "maxLength",
  "pattern",
  "minItems",
  "maxItems",
  "uniqueItems",
  "minProperties",
  "maxProperties",
  "title",
  "description",
  "default",
  "examples",
  "format",
  "deprecated",
  "readOnly",
  "writeOnly",
  "dependentRequired",
  "dependentSchemas",
]);
const SCHEMA_MAPS = new Set(["properties", "$defs", "patternProperties", "dependentSchemas"]);

function checkSchemaNode(node: unknown, where: string): void {
  if (typeof node === "boolean") return;
  ok(node !== null && typeof node === "object" && !Array.isArray(node), `${where} is a schema`);
  for (const [key, value] of Object.entries(node as Record<string, unknown>)) {
    ok(KEYWORDS.has(key), `${where}: '${key}' is not a JSON Schema 2020-12 keyword`);
    if (SCHEMA_MAPS.has(key)) {
      for (const [k, v] of Object.entries(value as object)) {
        checkSchemaNode(v, `${where}.${key}.${k}`);
      }
    } else if (["anyOf", "oneOf", "allOf", "prefixItems"].includes(key)) {
      ok(Array.isArray(value), `${where}.${key} is a list`);
      (value as unknown[]).forEach((v, i) => checkSchemaNode(v, `${where}.${key}[${i}]`));
    } else if (
      ["items", "additionalProperties", "propertyNames", "not", "contains"].includes(key)
    ) {
      checkSchemaNode(value, `${where}.${key}`);
    } else if (key === "pattern") {
      new RegExp(value as string, "u");
    } else if (key === "required") {
      ok(Array.isArray(value) && value.every((v) => typeof v === "string"), `${where}.required`);
    }
  }
}

Deno.test("workflowJsonSchema is a JSON Schema 2020-12 document that seeds satisfy", async () => {
  const schema = workflowJsonSchema();
  const roundTrip = JSON.parse(JSON.stringify(schema));
  deepStrictEqual(roundTrip, schema);
  equal(schema.$schema, "https://json-schema.org/draft/2020-12/schema");
  checkSchemaNode(schema, "$");
  const props = schema.properties as Record<string, Record<string, unknown>>;
  equal(props.tasks!.type, "array");
  ok(Array.isArray(schema.required) && schema.required.includes("tasks"));
  const taskProps = (props.tasks!.items as { properties: Record<string, unknown> }).properties;
  for (
    const key of [
      "id",
      "name",
      "protocol",
      "method",
      "params",
      "parameters",
      "dependencies",
      "depends_on",
      "priority",
      "timeout",
      "retry",
      "continue_on_failure",
      "sandbox",
    ]
  ) {
    ok(key in taskProps, `task property ${key}`);
  }
  for (const file of await seedFiles()) {
    const data = parseYaml(await Deno.readTextFile(file));
    deepStrictEqual(validateSchema(schema, data), [], file);
  }
  const wrong = { name: "x", tasks: [{ method: "echo", prioity: 1 }] };
  ok(validateSchema(schema, wrong).length > 0, "an unknown key fails the schema");
});
