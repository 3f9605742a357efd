/** Stored state through the CLI: listings, results, crash + resume, concurrent writers. */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "../assert.ts";
import { startPrivateRedis } from "../persistence/redis_helpers.ts";
import {
  detachTask,
  EXAMPLES,
  gleitzeit,
  scratch,
  spawnGleitzeit,
  writeWorkflow,
} from "./helpers.ts";

Deno.test("a run on the SQLite default is visible to later commands in new processes", async () => {
  const { env } = await scratch();
  const run = await gleitzeit([
    "--json",
    "run",
    `${EXAMPLES}/hello_python.yaml`,
    "--sandbox",
    "none",
  ], {
    env,
  });
  assertEquals(run.code, 0, run.stderr);
  const report = JSON.parse(run.stdout);
  const runId: string = report.run_id;
  const shoutId: string = report.tasks.find((t: { id: string }) => t.id === "shout").task_id;

  const list = await gleitzeit(["workflow", "list"], { env });
  assertEquals(list.code, 0, list.stderr);
  assertStringIncludes(list.stdout, runId);
  assertStringIncludes(list.stdout, "Hello Python");
  assertStringIncludes(list.stdout, "completed");

  const result = await gleitzeit(["task", "result", shoutId], { env });
  assertEquals(result.code, 0, result.stderr);
  assertEquals(JSON.parse(result.stdout).result, "HELLO, WORLD!");

  const status = await gleitzeit(["--json", "workflow", "status", runId], { env });
  assertEquals(JSON.parse(status.stdout).tasks.length, 3);
  const byName = await gleitzeit(["backend", "get-results-by-workflow", "Hello Python"], { env });
  assertEquals(JSON.parse(byName.stdout)[0].run_id, runId);
  const stats = await gleitzeit(["--json", "backend", "get-stats"], { env });
  assertEquals(JSON.parse(stats.stdout).totalTasks, 3);
  const tasks = await gleitzeit([
    "--json",
    "task",
    "list",
    "--workflow-id",
    runId,
    "--status",
    "completed",
  ], {
    env,
  });
  assertEquals(JSON.parse(tasks.stdout).length, 3);
  const missing = await gleitzeit(["task", "result", "task_nope"], { env });
  assertEquals(missing.code, 2);
  assertStringIncludes(missing.stderr, "error: no task task_nope");
});

Deno.test("workflow submit --detach records a queued run that resume executes", async () => {
  const { env } = await scratch();
  const d = await gleitzeit(["workflow", "submit", `${EXAMPLES}/typed_chain.yaml`, "--detach"], {
    env,
  });
  assertEquals(d.code, 0, d.stderr);
  const runId = d.stdout.trim();
  assert(runId.startsWith("run_"), d.stdout);
  const list = await gleitzeit(["--json", "workflow", "list", "--status", "queued"], { env });
  assertEquals(JSON.parse(list.stdout).map((r: { run_id: string }) => r.run_id), [runId]);
  const r = await gleitzeit(["--json", "workflow", "resume", runId, "--sandbox", "none"], { env });
  assertEquals(r.code, 0, r.stderr);
  assertEquals(JSON.parse(r.stdout).state, "completed");
});

/** A workflow whose tasks each append their id to a marker file, slowly, two at a time. */
async function crashWorkflow(dir: string): Promise<{ file: string; markers: string }> {
  const markers = `${dir}/markers.txt`;
  const tasks = Array.from({ length: 8 }, (_, i) =>
    `  - id: t${i}
    method: python/execute
    params:
      code: |
        import time
        with open(${JSON.stringify(markers)}, "a") as f:
            f.write("t${i}\\n")
        time.sleep(0.4)
        result = ${i}${i > 0 ? `\n${" ".repeat(6)}context: {prev: "\${t${i - 1}.result}"}` : ""}`);
  const file = await writeWorkflow(
    dir,
    "crash.yaml",
    `name: crash
max_parallel: 2
tasks:
${tasks.join("\n")}
`,
  );
  return { file, markers };
}

async function killAndResume(env: Record<string, string>, dir: string): Promise<void> {
  const { file, markers } = await crashWorkflow(dir);
  const child = spawnGleitzeit(["run", file, "--sandbox", "none"], { env });
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!seen.includes("✓ t2")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the run ended before the kill:\n${seen}`);
    seen += value;
  }
  child.kill("SIGKILL");
  await child.status;
  await reader.cancel();
  await child.stdout.cancel();
  const runId = /run (run_\S+)/.exec(seen)![1]!;

  const list = await gleitzeit(["--json", "workflow", "list"], { env });
  const listed = JSON.parse(list.stdout).find((r: { run_id: string }) => r.run_id === runId);
  assertEquals(listed.state, "interrupted", list.stdout);
  const before = await statusOf(runId, env);
  const doneBefore: string[] = before.tasks.filter((t: { state: string }) =>
    t.state === "completed"
  )
    .map((t: { id: string }) => t.id);
  assert(doneBefore.includes("t2"), JSON.stringify(before.tasks));

  const resumed = await gleitzeit(["--json", "workflow", "resume", runId, "--sandbox", "none"], {
    env,
  });
  assertEquals(resumed.code, 0, resumed.stderr);
  const report = JSON.parse(resumed.stdout);
  assertEquals(report.state, "completed");
  assertEquals(report.tasks.map((t: { state: string }) => t.state), Array(8).fill("completed"));
  assertEquals(report.results.t7.result, 7);
  // this execution's time, and since the run first started: what `workflow status` shows
  assert(report.since_start_ms > report.duration_ms, resumed.stdout);
  assertEquals((await statusOf(runId, env)).duration_ms, report.since_start_ms);
  const counts = new Map<string, number>();
  for (const line of (await Deno.readTextFile(markers)).trim().split("\n")) {
    counts.set(line, (counts.get(line) ?? 0) + 1);
  }
  for (const id of doneBefore) assertEquals(counts.get(id), 1, `${id} ran again after resume`);
  // what was running at the kill: its first attempt is stored as interrupted, not cancelled
  const rerun = report.tasks.filter((t: { attempts: number }) => t.attempts > 1);
  for (const t of rerun) {
    const ts = JSON.parse(
      (await gleitzeit(["--json", "task", "status", `${runId}/${t.id}`], { env })).stdout,
    );
    assertEquals(ts.attempt_history[0].state, "interrupted", JSON.stringify(ts.attempt_history));
    assertStringIncludes(ts.attempt_history[0].error.message, "stopped before this attempt ended");
  }
  for (let i = 0; i < 8; i++) assert((counts.get(`t${i}`) ?? 0) >= 1, `t${i} never ran`);
}

Deno.test("SIGKILL mid-run, then resume on SQLite: all complete, finished tasks ran once", async () => {
  const { dir, env } = await scratch();
  await killAndResume(env, dir);
});

Deno.test("SIGKILL mid-run, then resume on Redis: all complete, finished tasks ran once", async () => {
  const redis = await startPrivateRedis();
  try {
    const { dir, env } = await scratch();
    await killAndResume({
      ...env,
      GLEITZEIT_PERSISTENCE_BACKEND: "redis",
      GLEITZEIT_REDIS_URL: redis.url,
    }, dir);
  } finally {
    await redis.kill();
  }
});

Deno.test("two CLI processes writing one SQLite database at once: no 'database is locked'", async () => {
  const { dir, env } = await scratch();
  const tasks = Array.from(
    { length: 150 },
    (_, i) => `  - {id: t${i}, method: echo, protocol: echo/v1, params: {i: ${i}}}`,
  );
  const file = await writeWorkflow(dir, "many.yaml", `name: many\ntasks:\n${tasks.join("\n")}\n`);
  const runs = await Promise.all([1, 2, 3].map(() => gleitzeit(["--json", "run", file], { env })));
  for (const r of runs) {
    assertEquals(r.code, 0, r.stderr);
    assert(!/locked|busy/i.test(r.stderr), r.stderr);
    assertEquals(JSON.parse(r.stdout).tasks.length, 150);
  }
  const stats = JSON.parse((await gleitzeit(["--json", "backend", "get-stats"], { env })).stdout);
  assertEquals(stats.totalTasks, 450);
});

Deno.test("an unreachable Redis is a one-line error with a hint and exit 3", async () => {
  const { env } = await scratch();
  const r = await gleitzeit(["workflow", "list"], {
    env: {
      ...env,
      GLEITZEIT_PERSISTENCE_BACKEND: "redis",
      GLEITZEIT_REDIS_URL: "redis://127.0.0.1:1",
    },
  });
  assertEquals(r.code, 3, r.stderr);
  assertStringIncludes(r.stderr, "error:");
  assertStringIncludes(r.stderr, "hint:");
});

Deno.test("system config shows each value and where it came from", async () => {
  const { dir, env } = await scratch();
  await Deno.writeTextFile(`${dir}/config.yaml`, "engine: {max_concurrent_tasks: 7}\n");
  const r = await gleitzeit(["--json", "system", "config", "--ollama-url", "http://127.0.0.1:1"], {
    env: { ...env, GLEITZEIT_PERSISTENCE_BACKEND: "memory" },
  });
  assertEquals(r.code, 0, r.stderr);
  const values = new Map(
    JSON.parse(r.stdout).values.map((
      v: { key: string; value: unknown; source: string },
    ) => [v.key, v]),
  );
  const pick = (k: string) => {
    const v = values.get(k) as { value: unknown; source: string } | undefined;
    return v && { value: v.value, source: v.source };
  };
  assertEquals(pick("engine.max_concurrent_tasks"), { value: 7, source: "file" });
  assertEquals(pick("persistence.backend"), { value: "memory", source: "env" });
  assertEquals(pick("ollama.url"), { value: "http://127.0.0.1:1", source: "flag" });
  assertEquals(pick("persistence.sqlite_path")?.source, "env");
  assertEquals(pick("engine.health_interval"), { value: 30, source: "default" });
});

Deno.test("system config shows the rest where an environment variable is invalid, names each, and exits 2", async () => {
  const { dir, env } = await scratch();
  await Deno.writeTextFile(`${dir}/config.yaml`, "engine: {max_concurrent_tasks: 7}\n");
  const bad = { ...env, GLEITZEIT_MAX_CONCURRENT_TASKS: "abc", GLEITZEIT_ALLOW_GRANTS: "maybe" };
  const r = await gleitzeit(["--json", "system", "config"], { env: bad });
  assertEquals(r.code, 2, r.stderr);
  const shown = JSON.parse(r.stdout);
  const value = (k: string) => shown.values.find((v: { key: string }) => v.key === k);
  assertEquals(
    [value("engine.max_concurrent_tasks").value, value("engine.max_concurrent_tasks").source],
    [7, "file (GLEITZEIT_MAX_CONCURRENT_TASKS invalid)"],
  );
  assertEquals(value("python.allow_grants").source, "default (GLEITZEIT_ALLOW_GRANTS invalid)");
  assertEquals(
    shown.invalid_environment.map((e: { name: string }) => e.name).sort(),
    ["GLEITZEIT_ALLOW_GRANTS", "GLEITZEIT_MAX_CONCURRENT_TASKS"],
  );
  // the table too, with each error and its hint on stderr
  const t = await gleitzeit(["system", "config"], { env: bad });
  assertEquals(t.code, 2, t.stderr);
  assertStringIncludes(t.stdout, "engine.max_concurrent_tasks");
  assertStringIncludes(
    t.stderr,
    "error: GLEITZEIT_MAX_CONCURRENT_TASKS must be a positive integer, got 'abc' (left out above",
  );
  assertStringIncludes(t.stderr, "hint: e.g. GLEITZEIT_MAX_CONCURRENT_TASKS=8");
  // every other command stops at it, as before
  const list = await gleitzeit(["workflow", "list"], { env: bad });
  assertEquals(list.code, 2, list.stderr);
});

Deno.test("--redis-prefix / GLEITZEIT_REDIS_PREFIX: runs live under the prefix they were made with", async () => {
  const redis = await startPrivateRedis();
  const { env } = await scratch();
  const cli = (prefixArgs: string[], extraEnv: Record<string, string>, ...args: string[]) =>
    gleitzeit(["--json", "--backend", "redis", "--redis-url", redis.url, ...prefixArgs, ...args], {
      env: { ...env, ...extraEnv },
    });
  try {
    const run = await cli(["--redis-prefix", "team-a:"], {}, "run", `${EXAMPLES}/typed_chain.yaml`);
    assertEquals(run.code, 0, run.stderr);
    const runId = JSON.parse(run.stdout).run_id as string;
    const ids = async (prefixArgs: string[], extraEnv: Record<string, string>) => {
      const r = await cli(prefixArgs, extraEnv, "workflow", "list");
      assertEquals(r.code, 0, r.stderr);
      return (JSON.parse(r.stdout) as { run_id: string }[]).map((x) => x.run_id);
    };
    assertEquals(await ids([], { GLEITZEIT_REDIS_PREFIX: "team-a:" }), [runId]);
    assertEquals(await ids(["--redis-prefix", "team-b:"], {}), []);
    assertEquals(await ids([], {}), [], "the default prefix sees nothing of team-a's");
    const keys = await new Deno.Command("redis-cli", {
      args: ["-p", String(redis.port), "--scan"],
      stdout: "piped",
    }).output();
    const all = new TextDecoder().decode(keys.stdout).trim().split("\n");
    assert(all.length > 0 && all.every((k) => k.startsWith("team-a:")), all.join(" "));
  } finally {
    await redis.kill();
  }
});

Deno.test("Redis with no worker running: run --detach warns, and status says how to get the run going", async () => {
  const redis = await startPrivateRedis();
  const { env } = await scratch();
  const cli = (...args: string[]) =>
    gleitzeit(
      ["--backend", "redis", "--redis-url", redis.url, "--redis-prefix", "lone:", ...args],
      {
        env,
      },
    );
  try {
    const d = await cli("run", `${EXAMPLES}/typed_chain.yaml`, "--detach");
    assertEquals(d.code, 0, d.stderr);
    const runId = d.stdout.trim();
    assertStringIncludes(
      d.stderr,
      `warning: no worker is running on ${redis.url} with prefix 'lone:'`,
    );
    const status = await cli("workflow", "status", runId);
    assertEquals(status.code, 0, status.stderr);
    assertStringIncludes(status.stdout, "no worker is running");
    assertStringIncludes(status.stdout, `gleitzeit workflow resume ${runId}`);
    // looked for under another prefix: the hint says where else to look
    const elsewhere = await gleitzeit(
      ["--backend", "redis", "--redis-url", redis.url, "workflow", "status", runId],
      { env },
    );
    assertEquals(elsewhere.code, 2);
    assertStringIncludes(elsewhere.stderr, "prefix 'gleitzeit:'");
    assertStringIncludes(elsewhere.stderr, "--redis-prefix");
  } finally {
    await redis.kill();
  }
});

Deno.test("an Ollama URL that is not http(s) is one clear error before anything runs", async () => {
  const { dir, env } = await scratch();
  const file = await writeWorkflow(
    dir,
    "one.yaml",
    "name: one\ntasks:\n  - id: a\n    method: echo/ping\n",
  );
  for (
    const [args, extra, where] of [
      [["--ollama-url", "localhost:11434"], {}, "--ollama-url"],
      [[], { GLEITZEIT_OLLAMA_URL: "127.0.0.1:11434" }, "GLEITZEIT_OLLAMA_URL"],
      [["--ollama-url", "user:s3cret@host:1"], {}, "--ollama-url"],
    ] as const
  ) {
    const r = await gleitzeit([...args, "run", file], { env: { ...env, ...extra } });
    assertEquals(r.code, 2, r.stderr);
    const lines = r.stderr.trim().split("\n");
    assertEquals(lines.length, 2, r.stderr);
    assertStringIncludes(lines[0]!, `error: ${where}: '`);
    assertStringIncludes(lines[0]!, "' is not an Ollama URL");
    assertStringIncludes(lines[1]!, "hint: use http://HOST:PORT");
    assert(!r.stderr.includes("s3cret"), r.stderr);
  }
});

Deno.test("workflow cancel: a queued run becomes cancelled; cancelling again does nothing (exit 0)", async () => {
  const { env } = await scratch();
  const d = await gleitzeit(["workflow", "submit", `${EXAMPLES}/typed_chain.yaml`, "--detach"], {
    env,
  });
  const runId = d.stdout.trim();
  const c = await gleitzeit(["workflow", "cancel", runId], { env });
  assertEquals(c.code, 0, c.stderr);
  assertStringIncludes(c.stdout, `cancelled run ${runId}`);
  const status = await statusOf(runId, env);
  assertEquals(status.state, "cancelled");
  assertEquals(status.tasks.map((t: { state: string }) => t.state), [
    "cancelled",
    "cancelled",
    "cancelled",
  ]);
  // nothing executed it: its time is the time it waited, said so
  const text = await gleitzeit(["workflow", "status", runId], { env });
  assertMatch(text.stdout, new RegExp(`run ${runId} cancelled before it started \\(after `));
  // cancelling again does nothing, and says so: exit 0, so a script may repeat it
  const again = await gleitzeit(["workflow", "cancel", runId], { env });
  assertEquals(again.code, 0, again.stderr);
  assertStringIncludes(again.stdout, "already cancelled: nothing to do");
  // resumed to completion, it no longer carries the cancel's error
  const resumed = await gleitzeit(["--json", "workflow", "resume", runId, "--sandbox", "none"], {
    env,
  });
  assertEquals(resumed.code, 0, resumed.stderr);
  const done = await statusOf(runId, env);
  assertEquals(done.state, "completed");
  assertEquals(done.error, null);
});

Deno.test("workflow cancel reaches a run executing in another process (SIGTERM to its owner)", async () => {
  const { dir, env } = await scratch();
  const file = await writeWorkflow(
    dir,
    "long.yaml",
    `name: long
tasks:
  - {id: wait, method: delay, protocol: echo/v1, params: {seconds: 60}}
`,
  );
  const child = spawnGleitzeit(["run", file], { env });
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!/run (run_\S+)/.test(seen)) {
    const { value, done } = await reader.read();
    if (done) break;
    seen += value;
  }
  const runId = /run (run_\S+)/.exec(seen)![1]!;
  const c = await gleitzeit(["workflow", "cancel", runId], { env });
  assertEquals(c.code, 0, c.stderr);
  const status = await child.status;
  await reader.cancel();
  await child.stdout.cancel();
  assertEquals(status.code, 130);
  const after = await statusOf(runId, env);
  assertEquals(after.state, "cancelled");
});

/** `seen` and what `reader` gives after it, until that holds `text` (without one: to its end). */
async function readOn(
  reader: ReadableStreamDefaultReader<string>,
  seen: string,
  text?: string,
): Promise<string> {
  while (text === undefined || !seen.includes(text)) {
    const { value, done } = await reader.read();
    if (done) break;
    seen += value;
  }
  return seen;
}

/** The id (task_...) of the first task that shows as running, waiting up to 10 s for one. */
async function runningTaskId(env: Record<string, string>): Promise<string> {
  for (let i = 0; i < 200; i++) {
    await new Promise((r) => setTimeout(r, 50));
    const list = JSON.parse(
      (await gleitzeit(["--json", "task", "list", "--status", "running"], { env })).stdout,
    );
    if (list[0]?.task_id) return list[0].task_id;
  }
  throw new Error("the slow task never showed as running");
}

Deno.test("task submit --depends-on waits for a task running elsewhere and uses its result", async () => {
  const { env } = await scratch();
  const first = spawnGleitzeit([
    "--json",
    "task",
    "submit",
    "echo",
    "--protocol",
    "echo/v1",
    "--params",
    '{"n": 21}',
    "--retries",
    "0",
  ], { env });
  const firstOut = JSON.parse(new TextDecoder().decode((await first.output()).stdout));
  const doneId: string = firstOut.tasks[0].task_id;
  // a dependency that is still running in another process when the dependent is submitted
  const slow = spawnGleitzeit(
    ["--json", "task", "submit", "delay", "--params", '{"seconds": 1.5}'],
    {
      env,
    },
  );
  const slowId = await runningTaskId(env);
  const dep = await gleitzeit([
    "--json",
    "task",
    "submit",
    "echo",
    "--depends-on",
    `${doneId},${slowId}`,
    "--params",
    `{"twice": "\${${doneId}.n}", "slept": "\${${slowId}.slept}"}`,
  ], { env });
  assertEquals(dep.code, 0, dep.stderr);
  assertEquals(JSON.parse(dep.stdout).results.task, { twice: 21, slept: 1.5 });
  await slow.output();
  // as RUN_ID/TASK_ID, its result by TASK_ID
  const byRun = `${firstOut.run_id}/${firstOut.tasks[0].id}`;
  const named = await gleitzeit([
    "--json",
    "task",
    "submit",
    "echo",
    "--depends-on",
    byRun,
    "--params",
    `{"again": "\${${firstOut.tasks[0].id}.n}", "same": "\${${doneId}.n}"}`,
  ], { env });
  assertEquals(named.code, 0, named.stderr);
  assertEquals(JSON.parse(named.stdout).results.task, { again: 21, same: 21 });

  const failed = await gleitzeit([
    "--json",
    "task",
    "submit",
    "error",
    "--params",
    '{"message": "nope"}',
  ], {
    env,
  });
  const failedId: string = JSON.parse(failed.stdout).tasks[0].task_id;
  const blocked = await gleitzeit(["task", "submit", "echo", "--depends-on", failedId], { env });
  assertEquals(blocked.code, 1);
  assertStringIncludes(blocked.stderr, `dependency ${failedId}`);
  assertStringIncludes(blocked.stderr, "failed: nope");
});

Deno.test("listings and status on a machine with no database yet make none; resume and cancel of a completed run are exit 0", async () => {
  const { dir, env } = await scratch();
  const db = env.GLEITZEIT_SQLITE_PATH!;
  for (
    const args of [["workflow", "list"], ["task", "list"], ["backend", "get-stats"], [
      "system",
      "status",
    ]]
  ) {
    const r = await gleitzeit(["--json", ...args], { env });
    assertEquals(r.code, 0, r.stderr);
  }
  const stats = await gleitzeit(["--json", "backend", "get-stats"], { env });
  assertEquals(JSON.parse(stats.stdout).backend, "sqlite");
  const missing = await gleitzeit(["workflow", "status", "run_nope"], { env });
  assertEquals(missing.code, 2);
  assertStringIncludes(missing.stderr, "no run run_nope in the sqlite backend");
  assert(!await exists(db), "a read-only command made the database");

  const runId = await runOneEcho(dir, env);
  assert(await exists(db), "run stores its run in the database");
  const again = await gleitzeit(["--json", "workflow", "resume", runId], { env });
  assertEquals(again.code, 0, again.stderr);
  assertStringIncludes(again.stderr, `run ${runId} already completed: nothing to resume`);
  const status = JSON.parse(again.stdout);
  assertEquals(status.state, "completed");
  assertEquals(status.tasks.map((t: { state: string }) => t.state), ["completed"]);
  // the report a resume that executed it gives: its results too
  const first = JSON.parse(
    (await gleitzeit(["--json", "workflow", "status", runId], { env })).stdout,
  );
  assertEquals(Object.keys(status.results), first.tasks.map((t: { id: string }) => t.id));
  assertEquals(status.run_id, runId);
  // so does cancelling it: nothing runs, as asked, and the record stays completed
  const cancel = await gleitzeit(["workflow", "cancel", runId], { env });
  assertEquals(cancel.code, 0, cancel.stderr);
  assertStringIncludes(cancel.stdout, `run ${runId} already completed: nothing to cancel`);
  assertEquals((await statusOf(runId, env)).state, "completed");
});

Deno.test("task list --workflow-id of a run that is not there says so (exit 2); of a run with no such task, no tasks", async () => {
  const { dir, env } = await scratch();
  const runId = await runOneEcho(dir, env);
  const missing = await gleitzeit(["task", "list", "--workflow-id", "run_nope"], { env });
  assertEquals(missing.code, 2);
  assertStringIncludes(missing.stderr, "no run run_nope in the sqlite backend");
  assertStringIncludes(missing.stderr, "gleitzeit workflow list");
  const json = await gleitzeit(["--json", "task", "list", "--workflow-id", "run_nope"], { env });
  assertEquals(json.code, 2);
  assertEquals(JSON.parse(json.stdout).error.code, "RUN_NOT_FOUND");
  const none = await gleitzeit(
    ["--json", "task", "list", "--workflow-id", runId, "--status", "failed"],
    { env },
  );
  assertEquals(none.code, 0, none.stderr);
  assertEquals(JSON.parse(none.stdout), []);
  const all = await gleitzeit(["--json", "task", "list", "--workflow-id", runId], { env });
  assertEquals(JSON.parse(all.stdout).map((t: { id: string }) => t.id), ["a"]);
});

Deno.test("a task left running by a killed run shows as interrupted, and its attempt too", async () => {
  const { dir, env } = await scratch();
  const file = await writeWorkflow(
    dir,
    "slow.yaml",
    `name: slow
tasks:
  - {id: a, method: echo, protocol: echo/v1, params: {x: 1}}
  - id: b
    method: python/execute
    depends_on: [a]
    params: {code: "import time\\ntime.sleep(60)"}
`,
  );
  const child = spawnGleitzeit(["--json", "run", file, "--sandbox", "none"], { env });
  let runId: string | undefined;
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const list = await gleitzeit(["--json", "task", "list", "--status", "running"], { env });
    const running = list.code === 0 ? JSON.parse(list.stdout) : [];
    // (the echo task a may be seen running for a moment first)
    const b = running.find((t: { id: string }) => t.id === "b");
    if (b) {
      runId = b.run_id;
      break;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill("SIGKILL");
  await child.status;
  await child.stdout.cancel();
  await child.stderr.cancel();
  assert(runId, "task b started");
  const status = await statusOf(runId, env);
  assertEquals(status.state, "interrupted");
  assertEquals(status.tasks.map((t: { state: string }) => t.state), ["completed", "interrupted"]);
  const table = await gleitzeit(["workflow", "status", runId], { env });
  assertStringIncludes(table.stdout, "1 completed, 1 interrupted");
  assert(!/\brunning\b/.test(table.stdout), table.stdout);
  const task = JSON.parse(
    (await gleitzeit(["--json", "task", "status", `${runId}/b`], { env })).stdout,
  );
  assertEquals(task.state, "interrupted");
  assertEquals(task.attempt_history.map((a: { state: string }) => a.state), ["interrupted"]);
  const listed = JSON.parse((await gleitzeit(["--json", "task", "list"], { env })).stdout);
  assertEquals(listed.find((t: { id: string }) => t.id === "b").state, "interrupted");
  const byState = async (state: string) =>
    JSON.parse(
      (await gleitzeit(["--json", "task", "list", "--status", state], { env })).stdout,
    ).map((t: { id: string }) => t.id);
  assertEquals(await byState("interrupted"), ["b"]);
  assertEquals(await byState("running"), []);
  // cancelled now: the attempt its process died with stays interrupted on record, ended with
  // that process's last sign of life, not now
  await new Promise((r) => setTimeout(r, 1_000));
  const cancelledAt = Date.now();
  const cancel = await gleitzeit(["workflow", "cancel", runId], { env });
  assertEquals(cancel.code, 0, cancel.stderr);
  const after = JSON.parse(
    (await gleitzeit(["--json", "task", "status", `${runId}/b`], { env })).stdout,
  );
  assertEquals(after.state, "cancelled");
  assertEquals(after.attempt_history.map((a: { state: string }) => a.state), ["interrupted"]);
  const [attempt] = after.attempt_history;
  const ended = Date.parse(attempt.finished_at);
  assert(ended >= Date.parse(attempt.started_at) && ended < cancelledAt - 500, attempt.finished_at);
});

/** Runs a one-task echo workflow (task `a`) to completion; its run id. */
async function runOneEcho(dir: string, env: Record<string, string>): Promise<string> {
  const file = await writeWorkflow(
    dir,
    "one.yaml",
    "name: one\ntasks:\n  - {id: a, method: echo, protocol: echo/v1, params: {x: 1}}\n",
  );
  const run = await gleitzeit(["--json", "run", file], { env });
  assertEquals(run.code, 0, run.stderr);
  return JSON.parse(run.stdout).run_id;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("task submit --depends-on: a TASK_ID that two of them share is ambiguous, and a reference to a task not among them says so (exit 2, hints)", async () => {
  const { env } = await scratch();
  const ids: { run: string; task: string }[] = [];
  for (const n of [1, 2]) {
    const r = await gleitzeit(
      ["--json", "task", "submit", "echo", "--protocol", "echo/v1", "--params", `{"n": ${n}}`],
      { env },
    );
    assertEquals(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    ids.push({ run: out.run_id, task: out.task_id });
  }
  const both = ids.map((i) => `${i.run}/task`).join(",");
  const ambiguous = await gleitzeit(
    ["task", "submit", "echo", "--depends-on", both, "--params", '{"m": "${task.n}"}'],
    { env },
  );
  assertEquals(ambiguous.code, 2, ambiguous.stderr);
  assertStringIncludes(ambiguous.stderr, "is ambiguous: task is the task of several");
  assertStringIncludes(ambiguous.stderr, `\${${ids[0]!.task}...}`);
  // by their own ids, each is plain
  const plain = await gleitzeit([
    "--json",
    "task",
    "submit",
    "echo",
    "--depends-on",
    both,
    "--params",
    `{"a": "\${${ids[0]!.task}.n}", "b": "\${${ids[1]!.task}.n}"}`,
  ], { env });
  assertEquals(plain.code, 0, plain.stderr);
  assertEquals(JSON.parse(plain.stdout).results.task, { a: 1, b: 2 });
  const missing = await gleitzeit([
    "task",
    "submit",
    "echo",
    "--depends-on",
    ids[0]!.task,
    "--params",
    `{"b": "\${${ids[1]!.task}.n}"}`,
  ], { env });
  assertEquals(missing.code, 2, missing.stderr);
  assertStringIncludes(missing.stderr, `${ids[1]!.task} is not one of the --depends-on tasks`);
  assertStringIncludes(missing.stderr, "hint: add it to --depends-on"); // substituted once: a `$${` stays a literal `${`, and a result that holds `${` stays as it is
  const holder = await gleitzeit(
    ["--json", "task", "submit", "echo", "--protocol", "echo/v1", "--params", '{"t": "$${x}"}'],
    { env },
  );
  assertEquals(holder.code, 0, holder.stderr);
  const holderId = JSON.parse(holder.stdout).task_id;
  assertEquals(JSON.parse(holder.stdout).results.task, { t: "${x}" });
  const once = await gleitzeit([
    "--json",
    "task",
    "submit",
    "echo",
    "--depends-on",
    holderId,
    "--params",
    `{"copy": "\${${holderId}.t}", "lit": "$\${val}"}`,
  ], { env });
  assertEquals(once.code, 0, once.stderr);
  assertEquals(JSON.parse(once.stdout).results.task, { copy: "${x}", lit: "${val}" });
});

Deno.test("task submit --depends-on ... --detach records the task at once; it waits for them where its run is executed, then uses their results, and fails if one fails", async () => {
  const { env } = await scratch();
  const detach = (...args: string[]) => detachTask({ env }, ...args);
  const a = await detach("echo", "--params", '{"n": 4}');
  // recorded at once, queued, though its dependency has not run
  const b = await detach(
    "echo",
    "--depends-on",
    a.task_id,
    "--params",
    `{"m": "\${${a.task_id}.n}"}`,
  );
  assertEquals(b.state, "queued");
  // its run waits for the dependency, and says what would end that wait
  const resumeB = spawnGleitzeit(["workflow", "resume", b.run_id], { env });
  const reader = resumeB.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  try {
    seen = await readOn(reader, seen, `nothing executes run ${a.run_id} (queued)`);
    assertStringIncludes(seen, `waits for ${a.task_id} (queued)`);
    assertEquals((await gleitzeit(["workflow", "resume", a.run_id], { env })).code, 0);
    seen = await readOn(reader, seen);
    assertEquals((await resumeB.status).code, 0, seen);
  } finally {
    try {
      resumeB.kill("SIGKILL");
    } catch { /* ended */ }
    await resumeB.status;
    await resumeB.stdout.cancel();
  }
  const result = await gleitzeit(["--json", "task", "result", b.task_id], { env });
  assertEquals(JSON.parse(result.stdout).result, { m: 4 });
  // a dependency that fails: the task fails, not run
  const c = await detach("error", "--params", '{"message": "nope"}');
  const d = await detach("echo", "--depends-on", c.task_id);
  assertEquals((await gleitzeit(["workflow", "resume", c.run_id], { env })).code, 1);
  const dRun = await gleitzeit(["workflow", "resume", d.run_id, "-q"], { env });
  assertEquals(dRun.code, 1, dRun.stderr);
  assertStringIncludes(dRun.stderr, `dependency ${c.task_id}`);
  assertStringIncludes(dRun.stderr, "failed: nope");
  // what can be told at the submit is told then: a dependency failed already, one that is
  // not there, a reference to a task not among them
  for (
    const [dependsOn, params, code, said] of [
      [c.task_id, "{}", 1, "failed: nope"],
      ["task_nothere", "{}", 2, "no task task_nothere"],
      [a.task_id, '{"x": "${elsewhere.n}"}', 2, "elsewhere is not one of the --depends-on tasks"],
    ] as const
  ) {
    const r = await gleitzeit(
      ["task", "submit", "echo", "--depends-on", dependsOn, "--params", params, "--detach"],
      { env },
    );
    assertEquals(r.code, code, r.stderr);
    assertStringIncludes(r.stderr, said);
  }
});

Deno.test("task submit --depends-on (and task result --wait) on a run nothing executes says how to start it, under --json too", async () => {
  const { env } = await scratch();
  const d = await gleitzeit(["workflow", "submit", `${EXAMPLES}/typed_chain.yaml`, "--detach"], {
    env,
  });
  const runId = d.stdout.trim();
  const want =
    `nothing executes run ${runId} (queued): start it with \`gleitzeit workflow resume ${runId}\``;
  for (
    const args of [
      ["task", "submit", "echo", "--depends-on", `${runId}/report`],
      ["--json", "task", "submit", "echo", "--depends-on", `${runId}/report`],
      ["--json", "task", "result", `${runId}/report`, "--wait"],
    ]
  ) {
    const child = spawnGleitzeit(args, { env });
    const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    try {
      seen = await readOn(reader, seen, want);
      assertStringIncludes(seen, want, args.join(" "));
    } finally {
      child.kill("SIGKILL");
      await child.status;
      await reader.cancel();
      await child.stdout.cancel();
    }
  }
});

Deno.test("task submit --depends-on a task whose run is killed while it waits fails with a hint to resume that run, not waiting for ever", async () => {
  const { env } = await scratch();
  const { slow, slowId } = await slowTask(env, 30);
  const dep = spawnGleitzeit(["task", "submit", "echo", "--depends-on", slowId], { env });
  const reader = dep.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  try {
    // waiting for it (its run alive): then that run's process is killed
    seen = await readOn(reader, seen, `waiting for ${slowId}`);
    assertStringIncludes(seen, `waiting for ${slowId}`);
    slow.kill("SIGKILL");
    await slow.status;
    seen = await readOn(reader, seen);
    const { code } = await dep.status;
    assertEquals(code, 1, seen);
    assertStringIncludes(seen, `dependency ${slowId}`);
    assertStringIncludes(seen, "was interrupted (the process running it is gone)");
    assertStringIncludes(seen, "gleitzeit workflow resume");
  } finally {
    try {
      dep.kill("SIGKILL");
    } catch { /* ended */ }
    await dep.status;
    await dep.stdout.cancel();
  }
});

Deno.test("task submit --depends-on under -q waits without its waiting lines", async () => {
  const { env } = await scratch();
  const { slow, slowId } = await slowTask(env, 2);
  const dep = await gleitzeit(["-q", "task", "submit", "echo", "--depends-on", slowId], { env });
  assertEquals(dep.code, 0, dep.stderr);
  assert(!dep.stderr.includes("waiting for"), dep.stderr);
  assertEquals((await slow.status).code, 0);
  await slow.stdout.cancel();
  await slow.stderr.cancel();
});

Deno.test("task submit --depends-on a task whose run's process is only stopped (Ctrl-Z) says so and goes on once it continues", async () => {
  const { env } = await scratch();
  const { slow, slowId } = await slowTask(env, 2);
  slow.kill("SIGSTOP");
  const dep = spawnGleitzeit(
    ["task", "submit", "echo", "--depends-on", slowId, "--params", '{"n": 1}'],
    { env },
  );
  const reader = dep.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  try {
    // silent long enough to count as interrupted: said, and waited for all the same
    seen = await readOn(reader, seen, "nothing executes run");
    assertStringIncludes(seen, "nothing executes run");
    slow.kill("SIGCONT");
    assertEquals((await slow.status).code, 0);
    const { code } = await dep.status;
    assertEquals(code, 0, seen);
  } finally {
    try {
      slow.kill("SIGCONT");
    } catch { /* ended */ }
    try {
      dep.kill("SIGKILL");
    } catch { /* ended */ }
    await dep.status;
    await reader.cancel();
    await dep.stdout.cancel();
    await slow.stdout.cancel().catch(() => {});
  }
});

/** A run whose last task appends to a marker file once its two slow steps are done. */
async function stoppableRun(dir: string, env: Record<string, string>) {
  const marker = `${dir}/ran.txt`;
  const file = await writeWorkflow(
    dir,
    "stoppable.yaml",
    `name: stoppable
tasks:
  - {id: a, method: delay, protocol: echo/v1, params: {seconds: 0.2}}
  - {id: b, method: delay, protocol: echo/v1, dependencies: [a], params: {seconds: 2}}
  - id: c
    method: python/execute
    dependencies: [b]
    params:
      code: |
        open(${JSON.stringify(marker)}, "a").write("c\\n")
        result = 1
`,
  );
  const child = spawnGleitzeit(["--json", "run", file, "--sandbox", "none"], { env });
  let runId: string | undefined;
  for (let i = 0; i < 200 && !runId; i++) {
    await new Promise((r) => setTimeout(r, 50));
    const list = await gleitzeit(["--json", "task", "list", "--status", "running"], { env });
    const running = list.code === 0 ? JSON.parse(list.stdout) : [];
    if (running[0]?.id === "b") runId = running[0].run_id;
  }
  assert(runId, "task b started");
  // stopped (Ctrl-Z, a debugger) long enough for other processes to count it as gone
  child.kill("SIGSTOP");
  for (let i = 0; i < 200; i++) {
    const r = await gleitzeit(["--json", "workflow", "status", runId], { env });
    if (JSON.parse(r.stdout).state === "interrupted") break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const marks = async () =>
    (await Deno.readTextFile(marker).catch(() => "")).split("\n").filter(Boolean).length;
  return { child, runId, marks };
}

Deno.test("a stopped run resumed elsewhere meanwhile: once continued, it runs and writes nothing more", async () => {
  const { dir, env } = await scratch();
  const { child, runId, marks } = await stoppableRun(dir, env);
  const resumed = await gleitzeit(["--json", "workflow", "resume", runId, "--sandbox", "none"], {
    env,
  });
  assertEquals(resumed.code, 0, resumed.stderr);
  assertEquals(JSON.parse(resumed.stdout).state, "completed");
  child.kill("SIGCONT");
  const out = await child.output();
  assertEquals(out.code, 1);
  const report = JSON.parse(new TextDecoder().decode(out.stdout));
  assertEquals(report.state, "interrupted");
  // its report tells the run as stored (the resuming process's work), not what it did not write
  assertEquals(report.tasks.map((t: { state: string }) => t.state), [
    "completed",
    "completed",
    "completed",
  ]);
  assertStringIncludes(report.error.message, "is no longer this process's");
  assertEquals(await marks(), 1, "task c ran once, by the resuming process");
  const status = await statusOf(runId, env);
  assertEquals(status.state, "completed");
  assertEquals(status.tasks.map((t: { state: string }) => t.state), [
    "completed",
    "completed",
    "completed",
  ]);
});

Deno.test("a stopped run cancelled meanwhile: once continued, it stays cancelled", async () => {
  const { dir, env } = await scratch();
  const { child, runId, marks } = await stoppableRun(dir, env);
  const cancel = await gleitzeit(["workflow", "cancel", runId], { env });
  assertEquals(cancel.code, 0, cancel.stderr);
  child.kill("SIGCONT");
  const out = await child.output();
  assertEquals(out.code, 1);
  assertStringIncludes(
    JSON.parse(new TextDecoder().decode(out.stdout)).error.message,
    "is no longer this process's: it was cancelled",
  );
  assertEquals(await marks(), 0, "task c never ran");
  const status = await statusOf(runId, env);
  assertEquals(status.state, "cancelled");
});

/** `workflow status --json` of a run. */
async function statusOf(runId: string, env: Record<string, string>) {
  return JSON.parse((await gleitzeit(["--json", "workflow", "status", runId], { env })).stdout);
}

Deno.test("task result --wait waits for a task another process runs; without it, an unfinished task says how to wait; an interrupted run stops the wait", async () => {
  const { dir, env } = await scratch();
  try {
    const submit = (code: string) =>
      gleitzeit([
        "--json",
        "task",
        "submit",
        "python/execute",
        "--code",
        code,
        "--detach",
      ], { env });
    const d = await submit("import time; time.sleep(1); result = 7");
    assertEquals(d.code, 0, d.stderr);
    const { run_id: runId, task_id: taskId } = JSON.parse(d.stdout);
    const early = await gleitzeit(["task", "result", taskId], { env });
    assertEquals(early.code, 1, early.stderr);
    assertStringIncludes(early.stderr, `task ${taskId} has no result: it is queued`);
    assertStringIncludes(early.stderr, `gleitzeit task result ${taskId} --wait`);
    const waiting = spawnGleitzeit(["task", "result", taskId, "--wait"], { env });
    // Queued, and nothing runs it: the wait says what would (then the resume runs it).
    const said = `nothing executes run ${runId} (queued): start it with \`gleitzeit workflow ` +
      `resume ${runId}\``;
    let stderr = "";
    const lines = waiting.stderr.pipeThrough(new TextDecoderStream()).getReader();
    while (!stderr.includes(said)) {
      const { value, done } = await lines.read();
      assert(!done, `the wait ended without saying what would run it: ${stderr}`);
      stderr += value;
    }
    const resume = await gleitzeit(["workflow", "resume", runId, "--sandbox", "basic"], { env });
    assertEquals(resume.code, 0, resume.stderr);
    const [status, stdout] = await Promise.all([
      waiting.status,
      new Response(waiting.stdout).text(),
      (async () => {
        for (;;) {
          const { value, done } = await lines.read();
          if (done) return;
          stderr += value;
        }
      })(),
    ]);
    assertEquals(status.code, 0, stderr);
    assertEquals(JSON.parse(stdout).result, 7);

    // Its run's process killed mid-task: nothing would end it, and the wait says so.
    const s = await submit("import time; time.sleep(30); result = 8");
    const stuck = JSON.parse(s.stdout);
    const runner = spawnGleitzeit(["workflow", "resume", stuck.run_id, "--sandbox", "basic"], {
      env,
    });
    const until = Date.now() + 30_000;
    for (;;) {
      const st = await gleitzeit(["--json", "task", "status", stuck.task_id], { env });
      if (JSON.parse(st.stdout).state === "running") break;
      assert(Date.now() < until, "the task never started");
      await new Promise((r) => setTimeout(r, 100));
    }
    runner.kill("SIGKILL");
    await runner.output();
    for (const wait of [["--wait"], []]) {
      const gone = await gleitzeit(["task", "result", stuck.task_id, ...wait], { env });
      assertEquals(gone.code, 1, gone.stderr);
      assertStringIncludes(gone.stderr, `its run ${stuck.run_id} was interrupted`);
      assertStringIncludes(gone.stderr, `gleitzeit workflow resume ${stuck.run_id}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("workflow resume of a run started with --config, without it: nothing runs, the hint says why; the run's hints name the flags it was given", async () => {
  const { dir, env } = await scratch();
  try {
    // a provider of the run's own config, down (nothing listens on port 9)
    const providers = `${dir}/providers.yaml`;
    await Deno.writeTextFile(
      providers,
      "providers:\n  - id: kv\n    protocol: kv/v1\n    url: http://127.0.0.1:9/rpc\n" +
        "    methods:\n      get: {params: {type: object}}\n",
    );
    const wf = await writeWorkflow(
      dir,
      "kv.yaml",
      "name: kv\ntasks:\n  - {id: get, method: get, protocol: kv/v1, params: {}}\n",
    );
    const run = await gleitzeit(["--config", providers, "--json", "run", wf], { env });
    assertEquals(run.code, 3, run.stderr);
    const runId = JSON.parse(run.stdout).run_id as string;
    const resume = await gleitzeit(["workflow", "resume", runId], { env });
    assertEquals(resume.code, 2, resume.stderr);
    assertStringIncludes(
      resume.stderr,
      `run ${runId}: task get needs kv/v1, which no provider here serves; nothing was run`,
    );
    assertStringIncludes(resume.stderr, "hint: resume with the configuration the run was");
    const status = await gleitzeit(["--json", "workflow", "status", runId], { env });
    assertEquals(JSON.parse(status.stdout).tasks[0].attempts, 1, "no attempt was spent");
    const text = await gleitzeit(["--config", providers, "workflow", "status", runId], { env });
    assertStringIncludes(
      text.stdout,
      `run the failed and skipped tasks again with: gleitzeit --config ${providers} workflow ` +
        `resume ${runId}`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A one-task run of echo/v1's delay (seconds long), in its own process, once it runs. */
async function slowTask(env: Record<string, string>, seconds: number) {
  const slow = spawnGleitzeit(
    [
      "--json",
      "task",
      "submit",
      "delay",
      "--protocol",
      "echo/v1",
      "--params",
      `{"seconds": ${seconds}}`,
    ],
    { env },
  );
  return { slow, slowId: await runningTaskId(env) };
}
