import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { parseWorkflow } from "../../src/loader/load_workflow.ts";
import { durationMs } from "../../src/core/duration.ts";
import { priorityValue, slugify } from "../../src/loader/normalize.ts";
import { closest, editDistance } from "../../src/loader/suggest.ts";
import { catalog } from "./catalog.ts";

Deno.test("editDistance counts a transposition as one edit", () => {
  equal(editDistance("params", "params"), 0);
  equal(editDistance("parmas", "params"), 1);
  equal(editDistance("dependecies", "dependencies"), 1);
  equal(editDistance("", "abc"), 3);
  equal(editDistance("kitten", "sitting"), 3);
});

Deno.test("closest: near misses and prefixes, nothing for unrelated words", () => {
  const keys = ["params", "parameters", "dependencies", "depends_on", "priority", "timeout"];
  equal(closest("parms", keys), "params");
  equal(closest("depends", keys), "depends_on");
  equal(closest("Priority", keys), "priority");
  equal(closest("time-out", keys), "timeout");
  equal(closest("colour", keys), undefined);
  equal(closest("e", ["echo"]), undefined);
});

Deno.test("durationMs and priorityValue", () => {
  deepStrictEqual(
    [30, 0.25, "30", "30s", "5m", "1h", "500ms", "1h30m", "2d", " 10 s "].map(durationMs),
    [30_000, 250, 30_000, 30_000, 300_000, 3_600_000, 500, 5_400_000, 172_800_000, 10_000],
  );
  deepStrictEqual(["urgent", "high", "normal", "low", 9, undefined].map(priorityValue), [
    100,
    75,
    50,
    25,
    9,
    50,
  ]);
});

Deno.test("slugify: lower case, runs become one underscore, ends trimmed", () => {
  equal(slugify("Echo Task"), "echo_task");
  equal(slugify("  Fetch -- the DATA!! "), "fetch_--_the_data");
  equal(slugify("_keep_me_"), "_keep_me_");
  equal(slugify("Ünïcode name"), "n_code_name");
  equal(slugify("!!!"), "");
});

Deno.test("10,000 tasks load and validate quickly", () => {
  const lines = ["name: big", "tasks:"];
  for (let i = 0; i < 10_000; i++) {
    lines.push(`  - id: t${i}`, "    method: echo", `    params: {n: ${i}}`);
    if (i > 0) lines.push(`    dependencies: [t${i - 1}]`);
  }
  const started = performance.now();
  const wf = parseWorkflow(lines.join("\n"), "big.yaml", catalog);
  const ms = performance.now() - started;
  equal(wf.tasks.length, 10_000);
  deepStrictEqual(wf.tasks[9_999]!.dependencies, ["t9998"]);
  // ~1 s here; anything quadratic in the task count would take minutes. The bound leaves room
  // for a machine loaded by the rest of the suite (5 s was once exceeded under load).
  ok(ms < 20_000, `took ${ms} ms`);
});
