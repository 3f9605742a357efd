/**
 * Helper process for sqlite_concurrency_test.ts (not a test itself): opens the database given
 * as the first argument, says `ready`, waits for a line on stdin, then writes runs as fast as
 * it can, the way an engine would, mixed with reads. Prints a JSON summary; exits 1 on error.
 *
 * Usage: deno run --allow-read --allow-write sqlite_hammer.ts DB NAME RUNS TASKS
 *
 * @module
 */

import { SqliteStore } from "../../src/persistence/sqlite_store.ts";
import { fixture } from "./store_contract.ts";

const [path, name, runsArg, tasksArg] = Deno.args;
const runs = Number(runsArg ?? 100);
const perRun = Number(tasksArg ?? 4);

try {
  const store = SqliteStore.open(path!);
  console.log("ready");
  const buf = new Uint8Array(16);
  await Deno.stdin.read(buf);
  const t0 = performance.now();
  const ids = Array.from({ length: perRun }, (_, i) => `t${i}`);
  for (let r = 0; r < runs; r++) {
    const { run, tasks } = fixture({ name: `hammer-${name}`, tasks: ids });
    await store.createRun(run, tasks);
    await store.updateRun(run.id, { state: "running", startedAt: Date.now() });
    if (!(await store.claimRun(run.id, `${name}:${r}`, Date.now(), 0))) throw new Error("claim");
    for (const id of ids) await store.startAttempt(run.id, id, 1, Date.now(), name);
    const half = Math.ceil(perRun / 2);
    await store.finishTasks(
      ids.slice(0, half).map((taskId) => ({
        runId: run.id,
        taskId,
        state: "completed" as const,
        at: Date.now(),
        attempt: 1,
        result: { by: name, r },
      })),
    );
    await store.finishTasks(
      ids.slice(half).map((taskId) => ({
        runId: run.id,
        taskId,
        state: "completed" as const,
        at: Date.now(),
        attempt: 1,
        result: null,
      })),
    );
    await store.updateRun(run.id, { state: "completed", finishedAt: Date.now() });
    if (r % 10 === 0) {
      await store.listRuns({ limit: 5 });
      await store.stats();
    }
  }
  const commits = store.commits;
  await store.close();
  console.log(JSON.stringify({ ok: true, name, commits, ms: Math.round(performance.now() - t0) }));
} catch (e) {
  console.error(`hammer ${name} failed: ${e instanceof Error ? e.stack : e}`);
  Deno.exit(1);
}
