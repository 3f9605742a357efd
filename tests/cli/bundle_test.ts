import { assert, assertEquals, assertStringIncludes } from "../assert.ts";
import { EXAMPLES, gleitzeit, ROOT, scratch } from "./helpers.ts";

Deno.test("the bundled CLI (dist/gleitzeit.js) runs a workflow with the shipped permission flags", async () => {
  const build = await new Deno.Command("bash", {
    args: [`${ROOT}/scripts/compile.sh`],
    env: { GLEITZEIT_DENO: Deno.execPath() },
  }).output();
  assertEquals(build.code, 0, new TextDecoder().decode(build.stderr));
  const { dir, env } = await scratch();
  // run from another directory: the bundle must not read its own source tree
  const r = await gleitzeit(
    ["--json", "run", `${EXAMPLES}/typed_chain.yaml`, "--sandbox", "none"],
    { env, cwd: dir, bundle: true },
  );
  assertEquals(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  assertEquals(report.results.report.result, "Oslo: 4 readings from 2.5 to 5.5");
  const bad = await gleitzeit(["workflow", "validate", "/nonexistent.yaml"], { env, bundle: true });
  assertEquals(bad.code, 2);
  assertStringIncludes(bad.stderr, "error:");
  assert(!bad.stderr.includes("PermissionDenied"), bad.stderr);
});
