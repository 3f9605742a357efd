import * as assert from "node:assert/strict";
import { SqliteStore } from "../../src/persistence/sqlite_store.ts";

const HAMMER = new URL("./sqlite_hammer.ts", import.meta.url).pathname;

/** Starts a hammer process; resolves once it has opened the database and said `ready`. */
async function spawnHammer(db: string, name: string, runs: number, tasks: number) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      "--allow-read",
      "--allow-write",
      HAMMER,
      db,
      name,
      `${runs}`,
      `${tasks}`,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let stdout = "";
  while (!stdout.includes("ready\n")) {
    const { value, done } = await reader.read();
    if (done) {
      throw new Error(`hammer ${name} exited before it was ready:\n${stdout}\n${await stderr}`);
    }
    stdout += value;
  }
  const output = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      stdout += value;
    }
    const { code } = await child.status;
    return { code, stdout, stderr: await stderr };
  })();
  return { child, output };
}

Deno.test("sqlite: three processes writing one fresh database at once never see 'database is locked'", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gleitzeit-conc-" });
  const db = `${dir}/shared.db`;
  const runs = 300;
  const tasks = 4;
  try {
    // All three open the brand-new file at the same moment: the schema migration races too.
    const procs = await Promise.all(["A", "B", "C"].map((n) => spawnHammer(db, n, runs, tasks)));
    // Then they write together.
    for (const p of procs) {
      const w = p.child.stdin.getWriter();
      await w.write(new TextEncoder().encode("go\n"));
      await w.close();
    }
    const outs = await Promise.all(procs.map((p) => p.output));
    let commits = 0;
    for (const [i, o] of outs.entries()) {
      const { stdout, stderr } = o;
      assert.doesNotMatch(stderr + stdout, /database is locked|SQLITE_BUSY/i);
      assert.equal(o.code, 0, `hammer ${i} failed:\n${stderr}`);
      const summary = JSON.parse(stdout.trim().split("\n").at(-1)!);
      assert.equal(summary.ok, true);
      commits += summary.commits;
    }
    // Per run: createRun, 2 x updateRun, claimRun, a start per task, 2 finishes.
    assert.equal(commits, 3 * runs * (4 + tasks + 2));
    const store = SqliteStore.open(db);
    try {
      const s = await store.stats();
      assert.equal(s.totalRuns, 3 * runs);
      assert.deepEqual(s.runs, { completed: 3 * runs });
      assert.deepEqual(s.tasks, { completed: 3 * runs * tasks });
      for (const n of ["A", "B", "C"]) {
        assert.equal((await store.listRuns({ workflowName: `hammer-${n}` })).length, runs);
      }
      const mode = await store.pragma("journal_mode");
      assert.equal(mode, "wal");
    } finally {
      await store.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
