/**
 * What a new user met trying the README: each test is one of their findings, run through the
 * real command.
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "../assert.ts";
import { gleitzeit, scratch, spawnGleitzeit, writeWorkflow } from "./helpers.ts";

Deno.test("a failure the engine does not retry says why, in the run's output and in task status", async () => {
  const { dir, env } = await scratch();
  const file = await writeWorkflow(
    dir,
    "w.yaml",
    `name: w
on_failure: continue
tasks:
  - id: own
    method: python/execute
    retry: 3
    params: {code: "raise ValueError('bad')"}
  - id: flaky
    method: python/execute
    retry: {max_attempts: 2, base_delay: 0.01}
    params: {code: "raise ConnectionError('try later')"}
  - id: once
    method: python/execute
    params: {code: "raise ValueError('no retry asked for')"}
  - id: refused
    method: error
    protocol: echo/v1
    retry: 2
    params: {message: "refused", retryable: false}
`,
  );
  const r = await gleitzeit(["run", file, "--sandbox", "none"], { env });
  assertEquals(r.code, 1, r.stderr);
  const own = "not retried (retry allows 3 attempts): a Python exception (ValueError) is the " +
    'task\'s own failure; only those that mean "try again later" (TimeoutError, ConnectionError, ' +
    "ConnectionRefusedError, ConnectionResetError, ConnectionAbortedError, BrokenPipeError, " +
    "socket.timeout, urllib.error.URLError) are retried (see Execution in the README)";
  assertMatch(r.stderr, /✗ own: ValueError: bad \(TASK_EXECUTION_FAILED\)\n {4}not retried/);
  assertStringIncludes(r.stderr, own);
  // an error the provider marked not retryable
  assertStringIncludes(
    r.stderr,
    "not retried (retry allows 2 attempts): TASK_EXECUTION_FAILED is not a retryable error",
  );
  // retried until its attempts ran out, and one that asked for no retry: nothing to explain
  assertStringIncludes(r.stderr, "↻ flaky attempt 1 failed");
  assertEquals(r.stderr.match(/not retried/g)?.length, 2, r.stderr);
  const runId = /run (run_\S+)/.exec(r.stderr)![1]!;
  const status = await gleitzeit(["task", "status", `${runId}/own`], { env });
  assertEquals(status.code, 0, status.stderr);
  assertStringIncludes(status.stdout, own);
  const once = await gleitzeit(["task", "status", `${runId}/once`], { env });
  assert(!once.stdout.includes("not retried"), once.stdout);
  const json = JSON.parse(
    (await gleitzeit(["--json", "task", "status", `${runId}/own`], { env }))
      .stdout,
  );
  assertEquals(json.attempts, 1);
});

Deno.test("task status prints a long error whole; the attempts table stays compact", async () => {
  const { dir, env } = await scratch();
  const file = await writeWorkflow(
    dir,
    "w.yaml",
    `name: w
tasks:
  - id: big
    method: python/execute
    params: {code: "result = 2**60"}
`,
  );
  const r = await gleitzeit(["--json", "run", file, "--sandbox", "none"], { env });
  assertEquals(r.code, 1, r.stderr);
  const report = JSON.parse(r.stdout);
  const message = report.tasks[0].error.message as string;
  assert(message.length > 120, message); // (longer than any table cell shows)
  const status = await gleitzeit(["task", "status", `${report.run_id}/big`], { env });
  assertEquals(status.code, 0, status.stderr);
  assertStringIncludes(status.stdout, `error (TASK_RESULT_ERROR): ${message}\n`);
  // the table's cell is cut
  assertMatch(status.stdout, /│ 1 +│ failed +│[^\n]*…[^\n]*│\n/);
  // so is a listing's
  const list = await gleitzeit(["task", "list", "--workflow-id", report.run_id], { env });
  assert(!list.stdout.includes(message), list.stdout);
});

Deno.test("workflow status says the run's error once", async () => {
  const { dir, env } = await scratch();
  const file = await writeWorkflow(
    dir,
    "w.yaml",
    `name: w
tasks:
  - {id: boom, method: error, protocol: echo/v1, params: {message: "it broke"}}
`,
  );
  const r = await gleitzeit(["--json", "run", file], { env });
  assertEquals(r.code, 1, r.stderr);
  const runId = JSON.parse(r.stdout).run_id;
  const status = await gleitzeit(["workflow", "status", runId], { env });
  assertEquals(status.code, 0, status.stderr);
  assertEquals(status.stdout.match(/1 task failed: boom/g)?.length, 1, status.stdout);
  assertMatch(status.stdout, /✗ run \S+ failed in \S+: 1 failed\n {2}1 task failed: boom\n/);
});

Deno.test("a completed run with a failed continue_on_failure task is not marked ✓ (exit 0, --json unchanged)", async () => {
  const { dir, env } = await scratch();
  const file = await writeWorkflow(
    dir,
    "w.yaml",
    `name: w
tasks:
  - id: boom
    method: error
    protocol: echo/v1
    continue_on_failure: true
    params: {message: "tolerated"}
  - {id: ok, method: echo, protocol: echo/v1, params: {}}
`,
  );
  const r = await gleitzeit(["run", file], { env });
  assertEquals(r.code, 0, r.stderr);
  assertMatch(r.stdout, /^⚠ run run_\S+ completed in \S+: 1 failed, 1 completed$/m);
  assert(!r.stdout.includes("✓"), r.stdout);
  const json = await gleitzeit(["--json", "run", file], { env });
  assertEquals(json.code, 0, json.stderr);
  assertEquals(JSON.parse(json.stdout).state, "completed");
  // and an all-good run keeps its ✓
  const ok = await writeWorkflow(
    dir,
    "ok.yaml",
    "name: ok\ntasks:\n  - {id: a, method: echo, protocol: echo/v1, params: {}}\n",
  );
  assertMatch((await gleitzeit(["run", ok], { env })).stdout, /^✓ run run_\S+ completed in/m);
});

Deno.test("run -q names the run on stderr at its start: a run killed then can be resumed", async () => {
  const { dir, env } = await scratch();
  const file = await writeWorkflow(
    dir,
    "w.yaml",
    `name: w
tasks:
  - {id: quick, method: echo, protocol: echo/v1, params: {}}
  - {id: wait, method: delay, protocol: echo/v1, dependencies: [quick], params: {seconds: 60}}
`,
  );
  const child = spawnGleitzeit(["run", "-q", file], { env });
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  while (!/run run_\w+/.test(seen)) {
    const { value, done } = await reader.read();
    if (done) break;
    seen += value;
  }
  child.kill("SIGKILL");
  clearTimeout(timer);
  await child.status;
  await reader.cancel();
  await child.stdout.cancel();
  const runId = /▶ run (run_\w+) {2}w {2}\(2 tasks\)/.exec(seen)?.[1];
  assert(runId !== undefined, `no run id on stderr before the kill: ${JSON.stringify(seen)}`);
  // no progress lines: -q
  assert(!seen.includes("✓ quick"), seen);
  const status = await gleitzeit(["workflow", "status", runId], { env });
  assertEquals(status.code, 0, status.stderr);
  assertStringIncludes(status.stdout, runId);
});

Deno.test("provider health takes a name, an id prefix or a protocol; an unknown one is one line naming the ids", async () => {
  const { env: base } = await scratch();
  // an Ollama that is not there: a port nothing listens on
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const env = { ...base, GLEITZEIT_OLLAMA_URL: `http://127.0.0.1:${port}` };
  const ollama = `ollama@http://127.0.0.1:${port}`;
  for (const what of ["ollama", "llm/v1", "oll", ollama]) {
    const r = await gleitzeit(["--json", "provider", "health", what], { env });
    assertEquals(r.code, 3, `${what}: ${r.stderr}`);
    assertEquals(JSON.parse(r.stdout).map((e: { id: string }) => e.id), [ollama], what);
    // exit 3 says why on stderr, --json or not
    assertMatch(r.stderr, new RegExp(`^error: provider ${ollama} is unhealthy: `), what);
  }
  const echo = await gleitzeit(["provider", "health", "echo/v1"], { env });
  assertEquals(echo.code, 0, echo.stderr);
  assertMatch(echo.stdout, /│ echo +│ echo\/v1 +│ healthy/);
  const unknown = await gleitzeit(["provider", "health", "nope"], { env });
  assertEquals(unknown.code, 2);
  const lines = unknown.stderr.trim().split("\n");
  assertEquals(
    lines[0],
    `error: no provider or protocol 'nope' (providers: echo, python, ${ollama}; protocols: ` +
      "echo/v1, python/v1, llm/v1)",
  );
  assertEquals(lines.length, 2, unknown.stderr); // and its hint
});

Deno.test("no silent non-zero exit: no command, validate --json of a bad file", async () => {
  const { dir, env } = await scratch();
  const none = await gleitzeit([], { env });
  assertEquals(none.code, 2);
  assertMatch(none.stderr, /^error: no command given/m);
  // a group without its command: its help, and the same usage error (its --help is exit 0)
  for (const group of ["workflow", "task", "system"]) {
    const bare = await gleitzeit([group], { env });
    assertEquals(bare.code, 2, group);
    assertMatch(bare.stderr, new RegExp(`Usage: gleitzeit ${group}`));
    assertMatch(bare.stderr, /^error: no command given/m);
    assertEquals((await gleitzeit([group, "--help"], { env })).code, 0, group);
  }
  const bad = await writeWorkflow(dir, "bad.yaml", "name: b\ntasks: 3\n");
  const r = await gleitzeit(["--json", "workflow", "validate", bad], { env });
  assertEquals(r.code, 2);
  assertEquals(JSON.parse(r.stdout).valid, false);
  assertEquals(r.stderr.trim(), `error: invalid workflow: 1 problem in ${bad}`);
});

Deno.test("a YAML syntax error: one problem, where the mistake is", async () => {
  const { dir, env } = await scratch();
  const file = await writeWorkflow(
    dir,
    "bad.yaml",
    `name: bad
tasks:
  - id: a
    method: echo
    params: {message: "x"
  - id: b
    method: echo
    params: {message: "y"}
`,
  );
  const r = await gleitzeit(["workflow", "validate", file], { env });
  assertEquals(r.code, 2);
  const lines = r.stderr.trim().split("\n");
  assertEquals(
    lines[0],
    `${file}:5:13: Flow map in block collection must be sufficiently indented and end with a } ` +
      "(this { is not closed before line 6)",
  );
  assertMatch(
    lines[1]!,
    /^ {2}hint: YAML syntax: .* \(\d+ later errors follow from it, not shown\)$/,
  );
  assertEquals(lines[2], `error: invalid workflow: 1 problem in ${file}`);
});

Deno.test("a group's help lists its commands before the global options, which it only names", async () => {
  for (const group of ["task", "workflow", "provider", "backend", "system"]) {
    const r = await gleitzeit([group, "--help"]);
    assertEquals(r.code, 0, r.stderr);
    const commands = r.stdout.indexOf("Commands:");
    const globals = r.stdout.indexOf("Global Options:");
    assert(commands > 0 && globals > commands, r.stdout);
    // one pointer, not the table of 13 lines
    assertMatch(
      r.stdout.slice(globals),
      /--sandbox, --json, --quiet, --debug\s+\(see\s+`gleitzeit --help`\)/,
    );
    assert(!r.stdout.includes("SQLite database file"), r.stdout);
  }
  // a command's own options first, then the global ones it takes, in full
  const run = await gleitzeit(["run", "--help"]);
  assertMatch(
    run.stdout,
    /Options:\n {2}--params[\s\S]*Global Options:\n[\s\S]*--sqlite-path <file>/,
  );
});

Deno.test("the README's quick start: task result RUN_ID/TASK_NAME gives the task's result", async () => {
  const { dir, env } = await scratch();
  const file = await writeWorkflow(
    dir,
    "w.yaml",
    "name: w\ntasks:\n  - {id: hello, method: echo, protocol: echo/v1, params: {n: 42}}\n",
  );
  const r = await gleitzeit(["--json", "run", file], { env });
  assertEquals(r.code, 0, r.stderr);
  const result = await gleitzeit(["task", "result", `${JSON.parse(r.stdout).run_id}/hello`], {
    env,
  });
  assertEquals(result.code, 0, result.stderr);
  assertEquals(JSON.parse(result.stdout), { n: 42 });
});

Deno.test("a run with a task failed for an unavailable provider exits 3, even beside a task's own failure", async () => {
  const { dir, env } = await scratch();
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const file = await writeWorkflow(
    dir,
    "w.yaml",
    `name: w
on_failure: continue
tasks:
  - {id: own, method: error, protocol: echo/v1, params: {message: "its own failure"}}
  - {id: llm, method: llm/generate, params: {model: x, prompt: hi}}
`,
  );
  const r = await gleitzeit(["--ollama-url", `http://127.0.0.1:${port}`, "--json", "run", file], {
    env,
  });
  assertEquals(r.code, 3, r.stderr);
  const tasks = JSON.parse(r.stdout).tasks as { id: string; error: { code: string } }[];
  assertEquals(tasks.map((t) => [t.id, t.error.code]), [
    ["own", "TASK_EXECUTION_FAILED"],
    ["llm", "PROVIDER_UNAVAILABLE"],
  ]);
});
