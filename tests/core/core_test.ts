import { assert, assertEquals, assertThrows } from "../assert.ts";
import { codeFromNumber, ERROR_CODES, formatPath, GleitzeitError } from "../../src/core/errors.ts";
import { findCycle, topologicalOrder } from "../../src/core/graph.ts";
import { type JsonSchema, validateSchema } from "../../src/core/json_schema.ts";
import { parseReference, referencesIn, substitute } from "../../src/core/references.ts";
import { retryDelayMs, type RetryPolicy } from "../../src/core/retry.ts";

const policy = (p: Partial<RetryPolicy>): RetryPolicy => ({
  maxAttempts: 5,
  backoff: "exponential",
  baseDelayMs: 1000,
  maxDelayMs: 60_000,
  jitter: false,
  ...p,
});

Deno.test("retry delays: fixed, linear, exponential, capped; jitter stays within [d/2, d]", () => {
  assertEquals([1, 2, 3].map((n) => retryDelayMs(policy({ backoff: "fixed" }), n)), [
    1000,
    1000,
    1000,
  ]);
  assertEquals([1, 2, 3].map((n) => retryDelayMs(policy({ backoff: "linear" }), n)), [
    1000,
    2000,
    3000,
  ]);
  assertEquals(
    [1, 2, 3, 4, 5].map((n) => retryDelayMs(policy({ maxDelayMs: 5000 }), n)),
    [1000, 2000, 4000, 5000, 5000],
  );
  const j = policy({ jitter: true, maxDelayMs: 5000 });
  assertEquals(retryDelayMs(j, 4, () => 0), 2500);
  assertEquals(retryDelayMs(j, 4, () => 1), 5000);
  for (let i = 0; i < 100; i++) {
    const d = retryDelayMs(j, 3, Math.random);
    assert(d >= 2000 && d <= 4000, `jittered delay ${d} outside [2000, 4000]`);
  }
});

Deno.test("graph: the cycle is printed as a path; topological order keeps file order", () => {
  const deps: Record<string, string[]> = { a: ["c"], b: ["a"], c: ["b"], d: [] };
  const cycle = findCycle(Object.keys(deps), (id) => deps[id]!)!;
  assertEquals(cycle[0], cycle[cycle.length - 1]);
  assertEquals(new Set(cycle), new Set(["a", "b", "c"]));
  assertEquals(findCycle(["x", "y"], (id) => (id === "y" ? ["x"] : [])), undefined);
  assertEquals(topologicalOrder(["c", "a", "b"], (id) => (id === "b" ? ["c"] : [])), [
    "c",
    "a",
    "b",
  ]);
  // a 10,000-deep chain neither overflows the stack nor takes long
  const n = 10_000;
  const ids = Array.from({ length: n }, (_, i) => `t${i}`);
  const chainDeps = (id: string) => (id === "t0" ? [] : [`t${Number(id.slice(1)) - 1}`]);
  assertEquals(findCycle(ids, chainDeps), undefined);
  assertEquals(topologicalOrder([...ids].reverse(), chainDeps)[n - 1], `t${n - 1}`);
});

Deno.test("references: parsing, typed whole values, JSON when embedded, missing keys named", () => {
  assertEquals(parseReference("stats.result.items[0]"), {
    expr: "stats.result.items[0]",
    root: "stats",
    path: ["result", "items", 0],
  });
  assertEquals(parseReference('t["a key"]').path, ["a key"]);
  assertThrows(() => parseReference("a..b"));
  assertEquals(referencesIn("x ${a.b} y ${params.n}").map((r) => r.root), ["a", "params"]);
  const results: Record<string, unknown> = {
    stats: { result: { items: [3, 4], mean: 3.5, label: "x", none: null } },
  };
  const lookup = (root: string) =>
    root in results ? { found: true as const, value: results[root] } : { found: false as const };
  assertEquals(substitute({ v: "${stats.result.items}" }, lookup), { v: [3, 4] });
  assertEquals(substitute("${stats.result.none}", lookup), null);
  assertEquals(
    substitute("m=${stats.result.mean} l=${stats.result.items} s=${stats.result.label}", lookup),
    "m=3.5 l=[3,4] s=x",
  );
  assertEquals(substitute(["keep", 1, true, { deep: "${stats.result.items[1]}" }], lookup), [
    "keep",
    1,
    true,
    { deep: 4 },
  ]);
  const missing = assertThrows(() => substitute("${stats.result.maen}", lookup), GleitzeitError);
  assertEquals(missing.code, "TASK_PARAMETER_ERROR");
  assert(missing.message.includes("available keys: items, mean, label, none"), missing.message);
  const index = assertThrows(() => substitute("${stats.result.items[5]}", lookup), GleitzeitError);
  assert(index.message.includes("a list of 2"), index.message);
  assertThrows(() => substitute("${nobody.x}", lookup), GleitzeitError, "'nobody' has no result");
});

Deno.test("references: $${ writes a literal ${ and is no reference", () => {
  const lookup = (root: string) =>
    root === "t" ? { found: true as const, value: { v: "$${x}" } } : { found: false as const };
  assertEquals(referencesIn("echo $${HOME} ${t.v} $${t.v}").map((r) => r.root), ["t"]);
  assertEquals(substitute("echo $${HOME}", lookup), "echo ${HOME}");
  assertEquals(substitute("$${t.v}", lookup), "${t.v}");
  // a result's own text is inserted as it is, not unescaped
  assertEquals(substitute("a ${t.v} $${y}", lookup), "a $${x} ${y}");
  assertEquals(substitute("${t.v}", lookup), "$${x}");
});

Deno.test("JSON Schema: types, required, unknown keys, enums, bounds, references allowed", () => {
  const schema: JsonSchema = {
    type: "object",
    properties: {
      code: { type: "string", minLength: 1 },
      n: { type: "integer", minimum: 1 },
      mode: { enum: ["a", "b"] },
      items: { type: "array", items: { type: "number" } },
    },
    required: ["code"],
    additionalProperties: false,
  };
  assertEquals(validateSchema(schema, { code: "x", n: 2, mode: "a", items: [1, 2.5] }), []);
  const issues = validateSchema(schema, { n: 0, mode: "c", items: [1, "2"], extra: true });
  assertEquals(issues.map((i) => formatPath(i.path)).sort(), [
    "code",
    "extra",
    "items[1]",
    "mode",
    "n",
  ]);
  assertEquals(
    validateSchema(schema, { code: "${a.b}", n: "${a.n}" }, { allowReferences: true }),
    [],
  );
  assertEquals(validateSchema(schema, { code: "x", n: "${a.n}" }).length, 1);
});

Deno.test("error codes: every code maps to a unique JSON-RPC number, a flag and an exit code", () => {
  const numbers = new Set<number>();
  for (const [name, info] of Object.entries(ERROR_CODES)) {
    assert(!numbers.has(info.code), `duplicate number ${info.code}`);
    numbers.add(info.code);
    assertEquals(codeFromNumber(info.code), name as keyof typeof ERROR_CODES);
    assert([0, 1, 2, 3, 130].includes(info.exit));
  }
  const e = new GleitzeitError("PROVIDER_UNAVAILABLE", "down", { hint: "start it" });
  assertEquals([e.retryable, e.exitCode, e.rpcCode], [true, 3, -30001]);
  assertEquals(GleitzeitError.fromData(e.toData()).toData(), e.toData());
  assertEquals(new GleitzeitError("TASK_TIMEOUT", "t", { retryable: false }).retryable, false);
});
