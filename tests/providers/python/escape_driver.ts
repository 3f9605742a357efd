/**
 * Runs the escape suite (cold and warm) and prints a JSON report. Started by
 * sandbox_escape_test.ts under exactly the permission flags of `deno task gleitzeit`, so
 * the suite proves containment when the orchestrator itself runs with scoped permissions.
 *
 * @module
 */

import { fileURLToPath as fromFileUrl } from "node:url";
import { PythonProvider } from "../../../src/providers/python/python_provider.ts";
import {
  cleanupEscapeEnv,
  ESCAPE_CASES,
  type EscapeOutcome,
  prepareEscapeEnv,
  runEscapeCase,
} from "./escape_suite.ts";
import { GleitzeitError } from "../../../src/core/errors.ts";
import { assertAllDead, makeCtx, newMarker, spawnMarked, waitForMarked } from "./helpers.ts";

const projectDir = fromFileUrl(new URL("../../../", import.meta.url)).replace(/\/$/, "");
const env = await prepareEscapeEnv(projectDir);
const outcomes: (EscapeOutcome & { variant: string })[] = [];
try {
  for (const [variant, poolSize] of [["cold", 0], ["warm", 2]] as const) {
    const provider = new PythonProvider({ sandbox: "bwrap", poolSize });
    try {
      for (const c of ESCAPE_CASES) {
        outcomes.push({ variant, ...(await runEscapeCase(provider, c, env)) });
      }
    } finally {
      await provider.close();
    }
  }
  // Without bwrap there is no PID namespace: killing setsid'd descendants rests on the /proc
  // walk, which Deno may not do under these permissions (the Python helper does it).
  const basic = new PythonProvider({ sandbox: "basic" });
  try {
    const marker = newMarker();
    const ctx = makeCtx();
    const call = basic.call("python/execute", { code: spawnMarked(marker) }, ctx).catch((e) => e);
    const pids = await waitForMarked(marker, 3);
    const started = performance.now();
    ctx.controller.abort(new GleitzeitError("TASK_CANCELLED", "cancelled"));
    await call;
    let detail = "all descendants killed";
    try {
      await assertAllDead(pids, 3000);
    } catch (e) {
      detail = (e as Error).message;
    }
    outcomes.push({
      variant: "basic",
      name: "abort kills setsid'd descendants without /proc access in Deno",
      contained: detail === "all descendants killed",
      detail,
      ms: Math.round(performance.now() - started),
    });
  } finally {
    await basic.close();
  }
} finally {
  await cleanupEscapeEnv(env);
}
console.log(JSON.stringify({ outcomes }, null, 2));
