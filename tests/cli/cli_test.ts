import { assert, assertEquals, assertMatch, assertStringIncludes } from "../assert.ts";
import {
  alive,
  EXAMPLES,
  gleitzeit,
  ROOT,
  scratch,
  spawnGleitzeit,
  tempDir,
  writeWorkflow,
} from "./helpers.ts";

Deno.test("run: a valid workflow succeeds, prints the task table, exit 0", async () => {
  const { dir, env } = await scratch();
  const file = await writeWorkflow(
    dir,
    "ok.yaml",
    `name: ok
params: {who: world}
tasks:
  - id: greet
    method: echo
    protocol: echo/v1
    params: {message: "hello \${params.who}"}
  - name: Second Step
    method: echo
    protocol: echo/v1
    params: {prev: "\${greet.message}"}
`,
  );
  const r = await gleitzeit(["run", file, "-p", "who=tester"], { env });
  assertEquals(r.code, 0, r.stderr);
  assertStringIncludes(r.stdout, "greet");
  assertStringIncludes(r.stdout, "second_step");
  assertStringIncludes(r.stdout, "hello tester");
  assertMatch(r.stdout, /run run_\S+ completed in/);
  assertStringIncludes(r.stderr, "✓ greet");
});

Deno.test("run --json and --output-file give the machine-readable report", async () => {
  const { dir, env } = await scratch();
  const file = await writeWorkflow(
    dir,
    "j.yaml",
    `name: j
tasks:
  - {id: a, method: echo, protocol: echo/v1, params: {n: 2}}
  - {id: b, method: echo, protocol: echo/v1, params: {twice: "\${a.n}"}}
`,
  );
  const r = await gleitzeit(["--json", "run", file, "--output-file", `${dir}/out.json`], { env });
  assertEquals(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  assertEquals(report.state, "completed");
  assertEquals(report.results.b, { twice: 2 });
  assertEquals(report.tasks.map((t: { id: string }) => t.id), ["a", "b"]);
  assertEquals(JSON.parse(await Deno.readTextFile(`${dir}/out.json`)).results, report.results);
  assertEquals(r.stderr, "", "no progress lines in --json mode");
  // with -q too, the line that names the run at its start (on stderr), as -q promises
  const q = await gleitzeit(["--json", "run", file, "-q"], { env });
  assertEquals(q.code, 0, q.stderr);
  assertEquals(JSON.parse(q.stdout).state, "completed");
  assertMatch(q.stderr.trim(), /^▶ run run_\S+ {2}j {2}\(2 tasks\)$/);
  // --detach: the file holds the run as recorded
  const d = await gleitzeit(["run", file, "--detach", "--output-file", `${dir}/queued.json`], {
    env,
  });
  assertEquals(d.code, 0, d.stderr);
  const queued = JSON.parse(await Deno.readTextFile(`${dir}/queued.json`));
  assertEquals([queued.run_id, queued.state, queued.workflow], [d.stdout.trim(), "queued", "j"]);
});

Deno.test("a run that fails under --json or -q says why in one line on stderr (no progress lines there), as does its resume", async () => {
  const { dir, env } = await scratch();
  const file = await writeWorkflow(
    dir,
    "f.yaml",
    `name: f
tasks:
  - {id: a, method: echo, protocol: echo/v1, params: {n: 2}}
  - {id: b, method: error, protocol: echo/v1, params: {message: "no luck"}, retry: {max_attempts: 1}}
`,
  );
  // (-q after the command or, as a global flag, before it)
  for (const flags of [["--json", "run", file], ["run", file, "-q"], ["-q", "run", file]]) {
    const r = await gleitzeit(flags, { env });
    assertEquals(r.code, 1, r.stderr);
    const lines = r.stderr.trim().split("\n");
    const last = lines.at(-1)!;
    assertMatch(
      last,
      /^error: run run_\S+ failed: task b failed: no luck; see `gleitzeit workflow status run_\S+`$/,
    );
    // -q names the run at its start; --json says nothing else there
    assertEquals(lines.length, flags[0] === "--json" ? 1 : 2, r.stderr);
    if (flags[0] !== "--json") assertMatch(lines[0]!, /^▶ run run_\S+/);
    const runId = /run (run_\S+) failed/.exec(last)![1]!;
    const again = await gleitzeit(["--json", "workflow", "resume", runId], { env });
    assertEquals(again.code, 1, again.stderr);
    assertStringIncludes(again.stderr, `error: run ${runId} failed: task b failed: no luck`);
  } // exit 3 (a provider unavailable: "fix the setup"): that failure is the one named, with its hint
  const mixed = await writeWorkflow(
    dir,
    "m.yaml",
    `name: m
on_failure: continue
tasks:
  - {id: b, method: error, protocol: echo/v1, params: {message: "no luck"}}
  - {id: chat, method: llm/generate, params: {model: llama3.2, prompt: hi}}
`,
  );
  const r = await gleitzeit(["--ollama-url", "http://127.0.0.1:9", "run", mixed, "-q"], { env });
  assertEquals(r.code, 3, r.stderr);
  const lines = r.stderr.trim().split("\n");
  assertMatch(lines.at(-2)!, /^error: run run_\S+ failed: task chat failed: cannot reach Ollama/);
  assertMatch(lines.at(-1)!, /^hint: is Ollama running/);
});

Deno.test("workflow validate: three different mistakes, each with line:column, exit 2", async () => {
  const { dir, env } = await scratch();
  const file = await writeWorkflow(
    dir,
    "bad.yaml",
    `name: bad
tasks:
  - id: a
    method: echo
    protocol: echo/v1
    params: {}
    dependncies: [b]
  - id: b
    method: python/execute
    params: {code: "result = \${missing.value}"}
  - id: c
    method: python/execute
    priority: 3
    params: {code: 42}
`,
  );
  const r = await gleitzeit(["workflow", "validate", file], { env });
  assertEquals(r.code, 2);
  const lines = r.stderr.split("\n").filter((l) => l.startsWith(file));
  assertEquals(lines.length, 3, r.stderr);
  assertMatch(lines[0]!, /bad\.yaml:7:5: .*dependncies/);
  assertMatch(r.stderr, /did you mean 'dependencies'/i);
  assertMatch(lines[1]!, /bad\.yaml:10:\d+: .*missing/);
  assertMatch(lines[2]!, /bad\.yaml:14:\d+: .*code/);
  assertStringIncludes(r.stderr, "error: invalid workflow: 3 problems");
});

Deno.test("workflow validate --json lists the issues; valid files exit 0", async () => {
  const { dir, env } = await scratch();
  const file = await writeWorkflow(
    dir,
    "cyc.yaml",
    `name: cyc
tasks:
  - {id: a, method: echo, protocol: echo/v1, dependencies: [b]}
  - {id: b, method: echo, protocol: echo/v1, dependencies: [a]}
`,
  );
  const r = await gleitzeit(["--json", "workflow", "validate", file], { env });
  assertEquals(r.code, 2);
  const report = JSON.parse(r.stdout);
  assertEquals(report.valid, false);
  assertEquals(Object.keys(report).sort(), ["file", "issues", "valid", "warnings"]);
  assert(report.issues.some((i: { message: string }) => /a -> b -> a|b -> a -> b/.test(i.message)));
  const ok = await gleitzeit(["workflow", "validate", `${EXAMPLES}/hello_python.yaml`], { env });
  assertEquals(ok.code, 0, ok.stderr);
});

Deno.test("workflow validate takes several files: each is reported, one bad or missing file does not stop the others, exit 2", async () => {
  const { dir, env } = await scratch();
  const bad = await writeWorkflow(
    dir,
    "bad.yaml",
    "name: bad\ntasks:\n  - {id: a, method: nope}\n",
  );
  const gone = `${dir}/gone.yaml`;
  const good = `${EXAMPLES}/hello_python.yaml`;
  const r = await gleitzeit(["workflow", "validate", good, bad, gone, good], { env });
  assertEquals(r.code, 2, r.stderr);
  // both valid files are reported, the one after the missing file too
  assertEquals(r.stdout.trim().split("\n").filter((l) => l.includes("is valid")).length, 2);
  assertMatch(r.stderr, /bad\.yaml:3:\d+: tasks\[0\]\.method: unknown method 'nope'/);
  assertMatch(r.stderr, /error: workflow file not found: .*gone\.yaml/);
  const last = r.stderr.trim().split("\n").slice(-2);
  assertStringIncludes(last[0]!, "error: 2 of 4 files invalid:");
  assertStringIncludes(last[1]!, "hint: each file's problems are listed above");
  // a directory: said as such
  const dirIs = await gleitzeit(["workflow", "validate", good, dir], { env });
  assertEquals(dirIs.code, 2, dirIs.stderr);
  assertStringIncludes(dirIs.stderr, `${dir} is a directory, not a workflow file`);
  const json = await gleitzeit(["--json", "workflow", "validate", good, bad, gone], { env });
  assertEquals(json.code, 2);
  const report = JSON.parse(json.stdout);
  assertEquals(report.valid, false);
  assertEquals(
    report.files.map((f: { valid: boolean; file: string }) => [f.file, f.valid]),
    [[good, true], [bad, false], [gone, false]],
  );
  assertEquals(report.files[2].error.code, "WORKFLOW_FILE_ERROR");
  const ok = await gleitzeit(["workflow", "validate", good, good], { env });
  assertEquals(ok.code, 0, ok.stderr);
  assertStringIncludes(ok.stdout, "all 2 files are valid");
});

Deno.test("a failing task fails the run: exit 1, one-line error, dependents skipped", async () => {
  const { dir, env } = await scratch();
  const file = await writeWorkflow(
    dir,
    "fail.yaml",
    `name: fail
tasks:
  - id: broken
    method: python/execute
    params:
      code: |
        raise ValueError("bad input 42")
  - id: after
    method: echo
    protocol: echo/v1
    params: {x: "\${broken.result}"}
`,
  );
  const r = await gleitzeit(["run", file, "--sandbox", "none"], { env });
  assertEquals(r.code, 1);
  assertStringIncludes(r.stderr, "ValueError: bad input 42");
  assertMatch(r.stdout, /after\s*│ skipped/);
  assertStringIncludes(r.stdout, "dependency 'broken' failed");
  assert(!r.stderr.includes("    at "), "no stack trace without --debug");
});

Deno.test("a Python task past its timeout is killed with its child within a second", async () => {
  const { dir, env } = await scratch();
  const pidFile = `${dir}/child.pid`;
  const file = await writeWorkflow(
    dir,
    "slow.yaml",
    `name: slow
tasks:
  - id: sleepy
    method: python/execute
    timeout: 1
    params:
      code: |
        import subprocess, time
        child = subprocess.Popen(["sleep", "60"])
        open(${JSON.stringify(pidFile)}, "w").write(str(child.pid))
        time.sleep(60)
`,
  );
  const started = performance.now();
  const r = await gleitzeit(["run", file, "--sandbox", "none"], { env });
  const elapsed = performance.now() - started;
  assertEquals(r.code, 1);
  assertStringIncludes(r.stderr, "TASK_TIMEOUT");
  const childPid = Number(await Deno.readTextFile(pidFile));
  assert(!alive(childPid), `child ${childPid} outlived its task`);
  assert(elapsed < 10_000, `run took ${elapsed} ms`);
});

/** Host pids of processes whose command line is exactly `argv`. */
function processesRunning(argv: string[]): number[] {
  const want = argv.join("\0") + "\0";
  const found: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      if (Deno.readTextFileSync(`/proc/${e.name}/cmdline`) === want) found.push(Number(e.name));
    } catch {
      // gone
    }
  }
  return found;
}

function parentOf(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
}

// Warm tasks (python/execute) and cold ones (python/script). A cold task outside bubblewrap
// dies with Gleitzeit (PR_SET_PDEATHSIG), but the processes it started are then no one's to
// kill (README, "Execution"): there only the task itself is asserted.
const orphanCases = [
  ["none", "execute"],
  ["basic", "execute"],
  ["bwrap", "execute"],
  ["none", "script"],
  ["basic", "script"],
  ["bwrap", "script"],
] as const;
for (const [i, [mode, kind]] of orphanCases.entries()) {
  Deno.test(`gleitzeit killed with SIGKILL mid-task (sandbox ${mode}, python/${kind}): the task ends too`, async () => {
    const { dir, env } = await scratch();
    const marker = ["sleep", `${4321 + i}.${Deno.pid}`];
    const code = `import subprocess, time
subprocess.Popen(${JSON.stringify(marker)}, start_new_session=True)
time.sleep(600)
`;
    await Deno.writeTextFile(`${dir}/lasting.py`, code);
    await Deno.chmod(dir, 0o755); // the script's directory: the sandbox user reads it
    const params = kind === "execute"
      ? `code: |\n${code.replace(/^/gm, "        ")}`
      : "script: lasting.py";
    const file = await writeWorkflow(
      dir,
      "orphan.yaml",
      `name: orphan
tasks:
  - id: lasting
    method: python/${kind}
    params:
      ${params}
`,
    );
    const child = spawnGleitzeit(["run", file, "--sandbox", mode], { env });
    let sleeper: number | undefined;
    const deadline = Date.now() + 30_000;
    while (sleeper === undefined && Date.now() < deadline) {
      sleeper = processesRunning(marker)[0];
      if (sleeper === undefined) await new Promise((r) => setTimeout(r, 50));
    }
    try {
      assert(sleeper !== undefined, "the task started its process");
      const task = parentOf(sleeper);
      child.kill("SIGKILL");
      await child.status;
      const gone = Date.now() + 5_000;
      while ((alive(task) || alive(sleeper)) && Date.now() < gone) {
        await new Promise((r) => setTimeout(r, 50));
      }
      assert(!alive(task), `the task (pid ${task}) outlived gleitzeit`);
      assert(!alive(sleeper), `the task's setsid child (pid ${sleeper}) outlived gleitzeit`);
    } finally {
      for (const pid of processesRunning(marker)) Deno.kill(pid, "SIGKILL");
      await child.stdout.cancel();
      await child.stderr.cancel();
    }
  });
}

Deno.test("SIGINT cancels the run gracefully: exit 130, resumable", async () => {
  const { dir, env } = await scratch();
  const file = await writeWorkflow(
    dir,
    "long.yaml",
    `name: long
tasks:
  - {id: quick, method: echo, protocol: echo/v1, params: {}}
  - id: wait
    method: delay
    protocol: echo/v1
    dependencies: [quick]
    params: {seconds: 60}
  - {id: after, method: echo, protocol: echo/v1, dependencies: [wait], params: {}}
`,
  );
  const child = spawnGleitzeit(["run", file], { env });
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!seen.includes("✓ quick")) {
    const { value, done } = await reader.read();
    if (done) break;
    seen += value;
  }
  child.kill("SIGINT");
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    seen += value;
  }
  const status = await child.status;
  const stdout = new TextDecoder().decode(await new Response(child.stdout).arrayBuffer());
  assertEquals(status.code, 130, seen);
  assertStringIncludes(seen, "cancelling");
  assertMatch(stdout, /wait\s*│ cancelled/);
  // the task that had not started ends cancelled too, saying so (not left queued)
  assertMatch(stdout, /after\s*│ cancelled/);
  assertStringIncludes(stdout, "not started: run cancelled");
  assertStringIncludes(seen, "resume with: gleitzeit workflow resume run_");
});

Deno.test("errors are one line with a hint: missing file, unknown command, bad input", async () => {
  const { env } = await scratch();
  const missing = await gleitzeit(["run", "/nonexistent/flow.yaml"], { env });
  assertEquals(missing.code, 2);
  assertMatch(missing.stderr, /^error: .*nonexistent\/flow\.yaml/m);
  assertMatch(missing.stderr, /^hint: /m);
  const unknown = await gleitzeit(["wrkflow"], { env });
  assertEquals(unknown.code, 2);
  assertStringIncludes(unknown.stderr, "workflow");
  // the suggestion on the error's own line: an error line and a hint line
  const typo = await gleitzeit(["runn", "x.yaml"], { env });
  assertEquals(typo.stderr.trim().split("\n"), [
    "error: unknown command 'runn' (did you mean run?)",
    "hint: see `gleitzeit --help` (or `gleitzeit COMMAND --help`)",
  ]);
  const method = await gleitzeit(["task", "submit", "python/exec", "--code", "result = 1"], {
    env,
  });
  assertEquals(method.code, 2);
  assertStringIncludes(method.stderr, "hint: did you mean python/execute?");
  // the protocol's name before the method: the method, and the protocol apart
  const protocolFirst = await gleitzeit(["task", "submit", "echo/error"], { env });
  assertEquals(protocolFirst.code, 2);
  assertStringIncludes(
    protocolFirst.stderr,
    "hint: method 'error' of echo/v1: task submit error --protocol echo/v1\n",
  );
  // a command of a group, given without its group
  const config = await gleitzeit(["config"], { env });
  assertEquals(config.code, 2);
  assertEquals(
    config.stderr.trim().split("\n").at(-1),
    "hint: did you mean `gleitzeit system config`?",
  );
  const badInput = await gleitzeit(["run", `${EXAMPLES}/hello_python.yaml`, "-p", "nope=1"], {
    env,
  });
  assertEquals(badInput.code, 2);
  assertStringIncludes(badInput.stderr, "unknown input 'nope'");
  assertStringIncludes(badInput.stderr, "declares: name");
  // --json: the hint is in the JSON too
  const json = await gleitzeit(["--json", "frobnicate"], { env });
  assertEquals(JSON.parse(json.stdout).error, {
    code: "USAGE_ERROR",
    message: "unknown command 'frobnicate'",
    hint: "see `gleitzeit --help` (or `gleitzeit COMMAND --help`)",
  });
  // a file that is no database
  await Deno.writeTextFile(env.GLEITZEIT_SQLITE_PATH!, "not sqlite at all, long enough to tell");
  const notDb = await gleitzeit(["workflow", "list"], { env });
  assertEquals(notDb.code, 3);
  assertMatch(notDb.stderr, /^hint: that file is not a Gleitzeit \(SQLite\) database/m);
});

Deno.test("task submit runs one Python task and prints its result", async () => {
  const { env } = await scratch();
  const r = await gleitzeit([
    "--json",
    "task",
    "submit",
    "python/execute",
    "--code",
    "result = {'sum': 2 + 40}",
    "--sandbox",
    "none",
  ], { env });
  assertEquals(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  assertEquals(report.results.task.result, { sum: 42 });
  assertEquals(report.task_id, report.tasks[0].task_id);
  assertMatch(report.task_id, /^task_/);
  const echo = await gleitzeit(["task", "submit", "echo", "--params", '{"a": 1}'], { env });
  assertEquals(echo.code, 0, echo.stderr);
  assertStringIncludes(echo.stdout, '{"a":1}');
});

Deno.test("workflow schema prints a JSON Schema; graph prints levels", async () => {
  const { env } = await scratch();
  const s = await gleitzeit(["workflow", "schema"], { env });
  assertEquals(s.code, 0);
  const schema = JSON.parse(s.stdout);
  assert(JSON.stringify(schema).includes("tasks"));
  const g = await gleitzeit(["workflow", "graph", `${EXAMPLES}/typed_chain.yaml`], { env });
  assertEquals(g.code, 0, g.stderr);
  assertStringIncludes(g.stdout, "level 0: measurements");
  assertStringIncludes(g.stdout, "level 2: report");
});

Deno.test("workflow graph: DOT and Mermaid stay valid with quotes in names and ids like 'end'", async () => {
  const { dir, env } = await scratch();
  const file = await writeWorkflow(
    dir,
    "g.yaml",
    `name: g
tasks:
  - {name: 'Fetch "Data"', method: echo}
  - {id: end, method: echo, dependencies: [fetch_data]}
  - {id: a-b, method: echo, dependencies: [end]}
`,
  );
  const dot = await gleitzeit(["workflow", "graph", file, "--format", "dot"], { env });
  assertEquals(dot.code, 0, dot.stderr);
  assertStringIncludes(dot.stdout, '"fetch_data" [label="Fetch \\"Data\\"\\necho"];');
  assertStringIncludes(dot.stdout, '"end" -> "a-b";');
  const mermaid = await gleitzeit(["workflow", "graph", file, "--format", "mermaid"], { env });
  assertEquals(mermaid.code, 0, mermaid.stderr);
  assertEquals(mermaid.stdout.split("\n").slice(0, 3), [
    "graph TD",
    '  t0["Fetch #quot;Data#quot;<br/>echo"]',
    '  t1["end<br/>echo"]',
  ]);
  assertStringIncludes(mermaid.stdout, "  t1 --> t2");
});

Deno.test("bad option values and unwritable reports are usage errors with hints, before any run", async () => {
  const { dir, env } = await scratch();
  const zero = await gleitzeit(["--max-concurrent", "0", "run", `${EXAMPLES}/typed_chain.yaml`], {
    env,
  });
  assertEquals(zero.code, 2);
  assertMatch(zero.stderr, /^error: .*--max-concurrent/m);
  assertMatch(zero.stderr, /^hint: /m);
  const retries = await gleitzeit(["task", "submit", "echo", "--retries", "-1"], { env });
  assertEquals(retries.code, 2);
  const report = await gleitzeit(
    ["run", `${EXAMPLES}/typed_chain.yaml`, "--output-file", `${dir}/no/such/dir/r.json`],
    { env },
  );
  assertEquals(report.code, 2);
  assertStringIncludes(report.stderr, "cannot write --output-file");
  assert(!report.stderr.includes("▶ run"), "the run must not start");
  const json = await gleitzeit(["--json", "workflow", "status", "run_nope"], { env });
  assertEquals(json.code, 2);
  assertEquals(JSON.parse(json.stdout).error.code, "RUN_NOT_FOUND");
});

Deno.test("~ in config paths means HOME; a non-Redis peer or URL fails fast with a hint", async () => {
  const { dir, env } = await scratch();
  await Deno.writeTextFile(`${dir}/config.yaml`, "persistence: {sqlite_path: ~/state/g.db}\n");
  // keep Deno's own cache where it is: a new HOME would make it fetch every package again
  const denoDir = Deno.env.get("DENO_DIR") ?? `${Deno.env.get("HOME")}/.cache/deno`;
  const cfg = await gleitzeit(["--json", "system", "config"], {
    env: { ...env, HOME: dir, DENO_DIR: denoDir, GLEITZEIT_SQLITE_PATH: "" },
  });
  const sqlite = JSON.parse(cfg.stdout).values.find((v: { key: string }) =>
    v.key === "persistence.sqlite_path"
  );
  assertEquals(sqlite.value, `${dir}/state/g.db`);

  const badUrl = await gleitzeit([
    "--backend",
    "redis",
    "--redis-url",
    "http://127.0.0.1:6379",
    "workflow",
    "list",
  ], { env });
  assertEquals(badUrl.code, 2);
  assertStringIncludes(badUrl.stderr, "is not a Redis URL");
  // a peer that accepts connections but never answers
  const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (silent.addr as Deno.NetAddr).port;
  const held: Deno.Conn[] = [];
  (async () => {
    for await (const c of silent) held.push(c);
  })();
  try {
    const t0 = performance.now();
    const r = await gleitzeit([
      "--backend",
      "redis",
      "--redis-url",
      `redis://127.0.0.1:${port}`,
      "workflow",
      "list",
    ], { env });
    assertEquals(r.code, 3, r.stderr);
    assertStringIncludes(r.stderr, "hint: is Redis running");
    assert(performance.now() - t0 < 15_000);
  } finally {
    silent.close();
    for (const c of held) c.close();
  }
});

Deno.test("output into a pipe closed early (`| head`) ends quietly, exit 0", async () => {
  const { dir } = await scratch();
  try {
    const lines = ["name: big", "tasks:"];
    for (let i = 0; i < 3000; i++) lines.push(`  - {id: task_number_${i}, method: echo}`);
    const file = await writeWorkflow(dir, "big.yaml", lines.join("\n") + "\n");
    // More than a pipe holds: the writes after `head` exits meet a closed pipe.
    const out = await new Deno.Command("bash", {
      args: [
        "-c",
        `"${ROOT}/gleitzeit" workflow graph "${file}" | head -c 10 >/dev/null; ` +
        'echo "exit=${PIPESTATUS[0]}"',
      ],
      stderr: "piped",
      stdout: "piped",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    assertStringIncludes(stdout, "exit=0", stderr);
    assertEquals(stderr, "");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("task submit: the last line on stdout is the task id, usable with `task result`", async () => {
  const { dir, env } = await scratch();
  try {
    const r = await gleitzeit(["task", "submit", "echo", "--params", '{"word": "hi"}'], { env });
    assertEquals(r.code, 0, r.stderr);
    const last = r.stdout.trim().split("\n").at(-1)!;
    assertMatch(last, /^task id: task_\w+$/);
    const result = await gleitzeit(["--json", "task", "result", last.slice("task id: ".length)], {
      env,
    });
    assertEquals(result.code, 0, result.stderr);
    assertEquals(JSON.parse(result.stdout).result.word, "hi");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a weaker sandbox is a warning naming who chose it: flag, config file, workflow", async () => {
  const { dir, env } = await scratch();
  try {
    const plain = await writeWorkflow(
      dir,
      "plain.yaml",
      "name: p\ntasks:\n  - {id: a, method: python/execute, params: {code: 'result = 1'}}\n",
    );
    const flag = await gleitzeit(["run", plain, "--sandbox", "basic"], { env });
    assertEquals(flag.code, 0, flag.stderr);
    // As root (the test's user, and so the CLI's), tasks outside bubblewrap run as root.
    const asRoot = Deno.uid() === 0
      ? ", and as root (only bubblewrap runs tasks as another user)"
      : "";
    assertStringIncludes(
      flag.stderr,
      "warning: Python tasks run with sandbox 'basic' (chosen by --sandbox): weaker isolation " +
        `than bubblewrap${asRoot}\n`,
    );
    await Deno.writeTextFile(`${dir}/config.yaml`, "python:\n  sandbox: none\n");
    const file = await gleitzeit(["run", plain], { env });
    assertStringIncludes(
      file.stderr,
      `sandbox 'none' (chosen by python.sandbox in ${dir}/config.yaml)`,
    );
    const declared = await writeWorkflow(
      dir,
      "declared.yaml",
      "name: d\nsandbox: basic\ntasks:\n  - {id: a, method: python/execute, params: {code: 'result = 1'}}\n",
    );
    const wf = await gleitzeit(["run", declared], { env });
    assertStringIncludes(wf.stderr, "sandbox 'basic' (chosen by the workflow)");
    // the workflow's choice and a task's own, each on its line
    const mixed = await writeWorkflow(
      dir,
      "mixed.yaml",
      "name: m\nsandbox: basic\ntasks:\n" +
        "  - {id: a, method: python/execute, params: {code: 'result = 1'}}\n" +
        "  - {id: b, method: python/execute, params: {code: 'result = 1'}}\n" +
        "  - {id: d, method: python/execute, sandbox: none, params: {code: 'result = 1'}}\n",
    );
    const both = await gleitzeit(["run", mixed], { env });
    assertStringIncludes(
      both.stderr,
      "warning: Python tasks a, b run with sandbox 'basic' (chosen by the workflow)",
    );
    assertStringIncludes(
      both.stderr,
      "warning: Python task d runs with sandbox 'none' (chosen by the task)",
    );
    const strong = await gleitzeit(["run", plain, "--sandbox", "bwrap"], { env });
    assertEquals(strong.code, 0, strong.stderr);
    assert(!strong.stderr.includes("warning"), strong.stderr);
    // a run recorded with --detach and executed by `workflow resume` says it there
    const detached = await gleitzeit(["run", declared, "--detach"], { env });
    assertEquals(detached.code, 0, detached.stderr);
    const runId = detached.stdout.trim().split("\n")[0]!;
    const resumed = await gleitzeit(["workflow", "resume", runId], { env });
    assertEquals(resumed.code, 0, resumed.stderr);
    assertStringIncludes(resumed.stderr, "sandbox 'basic' (chosen by the workflow)");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("python.min_sandbox: a workflow or task asking for a weaker sandbox fails, with a hint", async () => {
  const { dir, env } = await scratch();
  try {
    const wf = await writeWorkflow(
      dir,
      "weak.yaml",
      "name: w\ntasks:\n" +
        "  - {id: strong, method: python/execute, params: {code: 'result = 1'}}\n" +
        "  - {id: weak, method: python/execute, sandbox: none, params: {code: 'result = 2'}}\n",
    );
    await Deno.writeTextFile(`${dir}/config.yaml`, "python:\n  min_sandbox: bwrap\n");
    const r = await gleitzeit(["--json", "run", wf], { env });
    assertEquals(r.code, 3, r.stderr); // SANDBOX_UNAVAILABLE's exit code
    type Task = {
      id: string;
      state: string;
      error: { code: string; message: string; hint: string };
    };
    const task = (out: string, id: string) =>
      (JSON.parse(out).tasks as Task[]).find((t) => t.id === id)!;
    assertEquals(task(r.stdout, "strong").state, "completed");
    const weak = task(r.stdout, "weak");
    assertEquals(weak.state, "failed");
    assertEquals(weak.error.code, "SANDBOX_UNAVAILABLE");
    assertStringIncludes(weak.error.message, "weaker than this Gleitzeit allows");
    assertStringIncludes(weak.error.hint, "sandbox: none");
    // no warning that it runs weaker: it does not run at all
    assert(!r.stderr.includes("weaker isolation"), r.stderr);
    // the environment sets it too; a default mode below it is a configuration error
    await Deno.writeTextFile(`${dir}/config.yaml`, "{}\n");
    const viaEnv = await gleitzeit(["--json", "run", wf], {
      env: { ...env, GLEITZEIT_MIN_SANDBOX: "basic" },
    });
    assertEquals(task(viaEnv.stdout, "weak").error.code, "SANDBOX_UNAVAILABLE");
    const below = await gleitzeit(["run", wf, "--sandbox", "none"], {
      env: { ...env, GLEITZEIT_MIN_SANDBOX: "bwrap" },
    });
    assertEquals(below.code, 2, below.stderr);
    assertStringIncludes(below.stderr, "weaker than the least allowed");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("python.allow_grants: false refuses read, write and network grants; plain tasks and scripts run", async () => {
  const { dir, env } = await scratch();
  try {
    await Deno.mkdir(`${dir}/data`);
    await Deno.writeTextFile(`${dir}/s.py`, "result = 3\n");
    await Deno.chmod(dir, 0o755); // the script, for the sandbox user
    await Deno.chmod(`${dir}/s.py`, 0o644);
    const outside = await tempDir("gleitzeit-outside-");
    await Deno.writeTextFile(`${outside}/o.py`, "result = 6\n");
    await Deno.chmod(outside, 0o755);
    await Deno.chmod(`${outside}/o.py`, 0o644);
    const wf = await writeWorkflow(
      dir,
      "grants.yaml",
      "name: g\ntasks:\n" +
        "  - {id: plain, method: python/execute, params: {code: 'result = 1'}}\n" +
        "  - {id: script, method: python/script, params: {script: s.py}}\n" +
        "  - {id: reads, method: python/execute, sandbox: {read: [data/]}, params: {code: 'result = 2'}}\n" +
        "  - {id: net, method: python/execute, sandbox: {network: true}, params: {code: 'result = 4'}}\n" +
        // basic and none reach what a grant would give: refused too
        "  - {id: basic, method: python/execute, sandbox: basic, params: {code: 'result = 5'}}\n" +
        // a script elsewhere would make its own directory readable
        `  - {id: elsewhere, method: python/script, params: {script: ${outside}/o.py}}\n`,
    );
    await Deno.writeTextFile(`${dir}/config.yaml`, "python:\n  allow_grants: false\n");
    const r = await gleitzeit(["--json", "run", wf], { env });
    const tasks = JSON.parse(r.stdout).tasks as {
      id: string;
      state: string;
      error: { code: string; message: string };
    }[];
    const state = Object.fromEntries(tasks.map((t) => [t.id, t.error?.code ?? t.state]));
    assertEquals(state, {
      plain: "completed",
      script: "completed",
      reads: "SANDBOX_UNAVAILABLE",
      net: "SANDBOX_UNAVAILABLE",
      basic: "SANDBOX_UNAVAILABLE",
      elsewhere: "SANDBOX_UNAVAILABLE",
    });
    // and `system config` shows both settings, and where they came from
    const cfg = await gleitzeit(["--json", "system", "config"], { env });
    const values = JSON.parse(cfg.stdout).values as {
      key: string;
      value: unknown;
      source: string;
    }[];
    const shown = Object.fromEntries(values.map((v) => [v.key, [v.value, v.source]]));
    assertEquals(shown["python.allow_grants"], [false, "file"]);
    assertEquals(shown["python.min_sandbox"], ["bwrap", "file"]);
    assertStringIncludes(tasks.find((t) => t.id === "reads")!.error.message, "allow_grants");
    // allowed by default
    await Deno.writeTextFile(`${dir}/config.yaml`, "{}\n");
    const open = await gleitzeit(["--json", "run", wf], { env });
    assertEquals(open.code, 0, open.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--detach needs a backend that keeps the run", async () => {
  const { dir, env } = await scratch();
  try {
    const r = await gleitzeit([
      "--backend",
      "memory",
      "run",
      `${EXAMPLES}/hello_python.yaml`,
      "--detach",
    ], {
      env,
    });
    assertEquals(r.code, 2);
    assertStringIncludes(r.stderr, "error: --detach with the memory backend");
    assertStringIncludes(r.stderr, "hint: use --backend sqlite");
    const kept = await gleitzeit(["--json", "run", `${EXAMPLES}/hello_python.yaml`, "--detach"], {
      env,
    });
    assertEquals(kept.code, 0, kept.stderr);
    assertEquals(JSON.parse(kept.stdout).state, "queued");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a path gleitzeit may not touch: its own words, not Deno's --allow-all advice", async () => {
  const { dir, env } = await scratch();
  try {
    const wf = await gleitzeit(["run", "/proc/self/nope.yaml"], { env });
    assertEquals(wf.code, 2);
    assertStringIncludes(wf.stderr, 'gleitzeit may not use "/proc/self/nope.yaml"');
    const db = await gleitzeit(["--sqlite-path", "/proc/nope/x.db", "workflow", "list"], { env });
    assertEquals(db.code, 3);
    for (const r of [wf, db]) {
      assert(!r.stderr.includes("--allow"), r.stderr);
      assertStringIncludes(r.stderr, "hint: ");
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("task submit with bad params: the hint lists the method's parameters", async () => {
  const { dir, env } = await scratch();
  try {
    const r = await gleitzeit(["task", "submit", "llm/generate", "--prompt", "hello"], { env });
    assertEquals(r.code, 2);
    assertStringIncludes(
      r.stderr,
      "error: invalid params for llm/generate: params.model is required",
    );
    assertMatch(r.stderr, /hint: llm\/generate takes: model \(required\), .*prompt \(required\)/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("task submit --retries N: N attempts after the first, as the file's retry: N+1", async () => {
  const { env } = await scratch();
  const r = await gleitzeit([
    "--json",
    "task",
    "submit",
    "error",
    "--protocol",
    "echo/v1",
    "--params",
    '{"message": "flaky", "retryable": true}',
    "--retries",
    "1",
  ], { env });
  assertEquals(r.code, 1, r.stderr);
  const task = JSON.parse(r.stdout).tasks[0];
  assertEquals([task.state, task.attempts], ["failed", 2]);
});

Deno.test("a config file's mistakes: file:line:col, the key's path, a did-you-mean; one line", async () => {
  const { dir, env } = await scratch();
  const cases: [string, string, string][] = [
    [
      'persistence:\n  backend: redsi\n  redis_prefx: "a:"\n',
      ':2:12: persistence.backend: must be one of sqlite, redis, memory, none, got "redsi" ' +
      "(and 1 more: 3:3: persistence.redis_prefx: unknown key 'redis_prefx', " +
      "did you mean 'redis_prefix'?)",
      "hint: did you mean 'redis'?",
    ],
    [
      "persistnce:\n  backend: redis\n",
      ":1:1: persistnce: unknown key 'persistnce'",
      "did you mean 'persistence'?",
    ],
    ["engine: 5\n", ":1:9: engine: must be a mapping, got an integer", "Configuration section"],
    [
      // in the file's order, whichever zod found first
      "persistance:\n  backend: sqlite\nengine:\n  max_concurent: 3\n",
      ":1:1: persistance: unknown key 'persistance' (and 1 more: 4:3: engine.max_concurent: " +
      "unknown key 'max_concurent', allowed keys: max_concurrent_tasks, health_interval)",
      "hint: did you mean 'persistence'?",
    ],
    [
      // providers' entries too: a misspelt key is said once (not also as missing)
      "providers:\n  - id: kv\n    protocl: kv/v1\n    command: [python3, kv.py]\n" +
      "    describe: true\nmcp_servers:\n  - name: m\n    comand: npx\n",
      ":3:5: providers[0].protocl: unknown key 'protocl' (and 2 more: 4:14: " +
      "providers[0].command: must be a string: the program alone, its arguments go in `args`; " +
      "8:5: mcp_servers[0].comand: unknown key 'comand', did you mean 'command'?)",
      "hint: did you mean 'protocol'?",
    ],
    [
      "persistence:\n  backend: [sqlite\n",
      ":3:1: Flow sequence in block collection must be sufficiently indented and end with a ]",
      "fix the YAML syntax",
    ],
  ];
  for (const [text, error, hint] of cases) {
    await Deno.writeTextFile(`${dir}/bad.yaml`, text);
    const r = await gleitzeit(["--config", `${dir}/bad.yaml`, "system", "config"], { env });
    assertEquals(r.code, 2, r.stderr);
    const lines = r.stderr.trim().split("\n");
    assertEquals(lines.length, 2, r.stderr);
    assertEquals(lines[0], `error: config file ${dir}/bad.yaml${error}`);
    assertStringIncludes(lines[1]!, hint);
  }
});

Deno.test("workflow validate warns about scripts and declared paths that are not there", async () => {
  const { dir, env } = await scratch();
  await Deno.mkdir(`${dir}/scripts`);
  await Deno.writeTextFile(`${dir}/scripts/here.py`, "result = 1\n");
  const file = await writeWorkflow(
    dir,
    "w.yaml",
    "name: w\nsandbox: {read: [data/]}\ntasks:\n" +
      "  - id: gone\n    method: python/script\n    params: {script: scripts/nothere.py}\n" +
      "  - id: here\n    method: python/script\n    params: {script: scripts/here.py}\n" +
      "    sandbox: {write: [out/]}\n",
  );
  const r = await gleitzeit(["workflow", "validate", file], { env });
  assertEquals(r.code, 0, r.stderr);
  assertEquals(r.stderr.trim().split("\n"), [
    "warning: the workflow's sandbox read path data/ does not exist",
    "warning: task 'gone': the script scripts/nothere.py does not exist",
    "warning: task 'here': the sandbox write path out/ does not exist",
  ]);
  const json = JSON.parse(
    (await gleitzeit(["--json", "workflow", "validate", file], { env })).stdout,
  );
  assertEquals([json.valid, json.warnings.length], [true, 3]);
  // `run` says the same before it starts; the missing script then fails its task, with a hint
  const run = await gleitzeit(["run", file], { env });
  assertEquals(run.code, 1);
  assertMatch(run.stderr, /warning: task 'gone': the script scripts\/nothere\.py does not exist/);
  assertMatch(run.stderr, /gone: python\/script: the script scripts\/nothere\.py does not exist/);
  assertMatch(run.stderr, /hint: a script's path is relative to the workflow file/);
});

Deno.test("workflow validate warns of an MCP server this configuration does not have (a worker's may): mcp/nosuch", async () => {
  const { dir, env } = await scratch();
  await Deno.writeTextFile(
    `${dir}/config.yaml`,
    "mcp_servers:\n  - {name: notes, command: /nonexistent/notes}\n",
  );
  const file = await writeWorkflow(
    dir,
    "m.yaml",
    "name: m\ntasks:\n  - {id: a, protocol: mcp/nosuch, method: tools/list}\n" +
      "  - {id: b, protocol: mcp/notes, method: tools/list}\n",
  );
  const r = await gleitzeit(["workflow", "validate", file], { env });
  assertEquals(r.code, 0, r.stderr);
  assertEquals(r.stderr.trim().split("\n"), [
    "warning: task 'a': mcp/nosuch: no MCP server of that name (configured: notes) here",
  ]);
});

Deno.test("workflow validate warns about an LLM task's images that are missing or outside the workflow's directory", async () => {
  const { dir, env } = await scratch();
  await Deno.mkdir(`${dir}/img`);
  await Deno.copyFile(`${EXAMPLES}/images/quadrants.png`, `${dir}/img/here.png`);
  const file = await writeWorkflow(
    dir,
    "v.yaml",
    "name: v\ntasks:\n" +
      "  - id: look\n    method: llm/vision\n" +
      `    params: {model: llava, prompt: what, images: [img/here.png, img/gone.png, ${EXAMPLES}/images/quadrants.png]}\n` +
      "  - id: talk\n    method: llm/chat\n" +
      "    params: {model: llava, messages: [{role: user, content: hi, images: [img/gone2.png]}]}\n",
  );
  const r = await gleitzeit(["workflow", "validate", file], { env });
  assertEquals(r.code, 0, r.stderr);
  const lines = r.stderr.trim().split("\n");
  assertEquals(lines.length, 3, r.stderr);
  assertStringIncludes(lines[0]!, "warning: task 'look': image file not found: img/gone.png");
  assertStringIncludes(lines[1]!, "is outside the workflow directory");
  assertStringIncludes(lines[2]!, "warning: task 'talk': image file not found: img/gone2.png");
});

Deno.test("python/script args may be numbers and booleans, a reference to a number too", async () => {
  const { dir, env } = await scratch();
  await Deno.mkdir(`${dir}/scripts`);
  await Deno.writeTextFile(`${dir}/scripts/a.py`, "import sys\nresult = sys.argv[1:]\n");
  const file = await writeWorkflow(
    dir,
    "w.yaml",
    "name: w\nparams: {n: 3}\ntasks:\n  - id: s\n    method: python/script\n" +
      '    params: {script: scripts/a.py, args: [1, "${params.n}", x, true]}\n',
  );
  const r = await gleitzeit(["--json", "run", file], { env });
  assertEquals(r.code, 0, r.stderr);
  assertEquals(JSON.parse(r.stdout).results.s.result, ["1", "3", "x", "true"]);
});

Deno.test("task submit --detach ends with the task's id, as a task that waits does", async () => {
  const { dir, env } = await scratch();
  const r = await gleitzeit(["task", "submit", "echo", "--params", '{"a": 1}', "--detach"], {
    env,
  });
  assertEquals(r.code, 0, r.stderr);
  const [runId, last] = r.stdout.trim().split("\n");
  assertMatch(runId!, /^run_/);
  assertMatch(last!, /^task id: task_/);
  const status = await gleitzeit(["--json", "task", "status", last!.slice("task id: ".length)], {
    env,
  });
  assertEquals(JSON.parse(status.stdout).state, "queued", status.stderr);
  // `run --detach` of a one-task file prints the run id alone (RUN=$(gleitzeit run ...))
  const one = await writeWorkflow(
    dir,
    "one.yaml",
    "name: one\ntasks:\n  - id: a\n    method: echo\n",
  );
  const run = await gleitzeit(["run", one, "--detach"], { env });
  assertEquals(run.code, 0, run.stderr);
  assertMatch(run.stdout, /^run_[0-9a-z]+\n$/);
});

Deno.test("task status shows a failed Python task's whole traceback, and a hint where there is one", async () => {
  const { dir, env } = await scratch();
  const file = await writeWorkflow(
    dir,
    "w.yaml",
    "name: w\ntasks:\n  - id: boom\n    method: python/execute\n    params:\n      code: |\n" +
      "        import sys\n" +
      "        for i in range(30):\n            print('step', i)\n" +
      "        print('careful', file=sys.stderr)\n" +
      "        def f(x):\n            return 1 / x\n        result = f(0)\n" +
      "  - id: big\n    method: python/execute\n    sandbox: {memory_mb: 64}\n" +
      "    params: {code: 'x = bytearray(200 * 1024 * 1024)'}\n",
  );
  const run = await gleitzeit(["--json", "run", file], { env });
  assertEquals(run.code, 1, run.stderr);
  const runId = JSON.parse(run.stdout).run_id as string;
  const boom = await gleitzeit(["task", "status", `${runId}/boom`], { env });
  assertEquals(boom.code, 0, boom.stderr);
  assertMatch(boom.stdout, /File "<task>", line 6, in f\n\s+return 1 \/ x/);
  // the end of what it printed, before the traceback
  assertMatch(
    boom.stdout,
    /stdout \(last 20 of 30 lines\):\n {2}step 10\n[\s\S]* {2}step 29\nstderr:\n {2}careful\n/,
  );
  assert(!boom.stdout.includes("step 9\n"), boom.stdout);
  assertMatch(boom.stdout, /ZeroDivisionError: division by zero\s*$/);
  const big = await gleitzeit(["task", "status", `${runId}/big`], { env });
  assertMatch(
    big.stdout,
    /hint: the task may use 64 MiB of memory; raise it with sandbox: \{memory_mb: N\}/,
  );
});

Deno.test("a command's help lists the global options it takes (--json, --sandbox, ...)", async () => {
  const r = await gleitzeit(["run", "--help"]);
  assertEquals(r.code, 0, r.stderr);
  assertMatch(r.stdout, /Global Options:[\s\S]*--sandbox <mode>[\s\S]*--json/);
});

Deno.test("timeouts longer than a JavaScript timer holds (~24.9 days) do not fire at once", async () => {
  const { dir, env } = await scratch();
  const file = await writeWorkflow(
    dir,
    "long.yaml",
    `name: long
timeout: 30d
tasks:
  - id: py
    method: python/execute
    timeout: 3000000
    params: {code: "import time\\ntime.sleep(0.2)\\nresult = 1", timeout: 2600000}
  - {id: echo, method: echo, protocol: echo/v1, timeout: 99999999999, params: {x: 1}}
`,
  );
  const r = await gleitzeit(["--json", "run", file, "--sandbox", "none"], { env });
  assertEquals(r.code, 0, r.stdout + r.stderr);
  const report = JSON.parse(r.stdout);
  assertEquals(report.state, "completed");
  assertEquals(report.tasks.map((t: { state: string }) => t.state), ["completed", "completed"]);
});

Deno.test("sandbox.timeout takes a duration, as a task's timeout does", async () => {
  const { dir, env } = await scratch();
  const file = await writeWorkflow(
    dir,
    "sandboxed.yaml",
    `name: sandboxed
sandbox: {timeout: 2m}
on_failure: continue
tasks:
  - {id: quick, method: python/execute, params: {code: "result = 1"}}
  - id: slow
    method: python/execute
    sandbox: {timeout: 500ms}
    params: {code: "import time\\ntime.sleep(30)"}
`,
  );
  const started = performance.now();
  const r = await gleitzeit(["--json", "run", file, "--sandbox", "basic"], { env });
  assert(performance.now() - started < 20_000, "the 500 ms timeout ended the slow task");
  assertEquals(r.code, 1, r.stderr);
  const tasks = JSON.parse(r.stdout).tasks as {
    id: string;
    state: string;
    error: { code: string };
  }[];
  assertEquals(tasks.find((t) => t.id === "quick")?.state, "completed");
  assertEquals(tasks.find((t) => t.id === "slow")?.error.code, "TASK_TIMEOUT");
});

Deno.test("$${ in a parameter is a literal ${: validate passes it, the task receives it", async () => {
  const { dir, env } = await scratch();
  const file = await writeWorkflow(
    dir,
    "escape.yaml",
    `name: escape
params: {who: world}
tasks:
  - id: a
    method: python/execute
    params:
      code: |
        template = "$\${greeting}, \${params.who}"
        result = template
`,
  );
  const v = await gleitzeit(["workflow", "validate", file], { env });
  assertEquals(v.code, 0, v.stdout + v.stderr);
  const r = await gleitzeit(["--json", "run", file, "--sandbox", "none"], { env });
  assertEquals(r.code, 0, r.stderr);
  assertEquals(JSON.parse(r.stdout).results.a.result, "${greeting}, world");
});

Deno.test("--params and -p refuse an integer too large to pass exactly (exit 2, with a hint to quote it); quoted, it passes as text", async () => {
  const { env } = await scratch();
  const big = "9007199254740993";
  const p = await gleitzeit(
    ["task", "submit", "echo", "--protocol", "echo/v1", "--params", `{"n": ${big}}`],
    { env },
  );
  assertEquals(p.code, 2, p.stderr);
  assertStringIncludes(
    p.stderr,
    `error: --params: the integer ${big} is too large to pass exactly`,
  );
  assertStringIncludes(p.stderr, `quote it to pass it as text ("${big}")`);
  const q = await gleitzeit(["run", `${EXAMPLES}/hello_python.yaml`, "-p", `name=${big}`], { env });
  assertEquals(q.code, 2, q.stderr);
  assertStringIncludes(q.stderr, `error: -p name: the integer ${big} is too large`);
  assertStringIncludes(q.stderr, `-p 'name="${big}"'`);
  const ok = await gleitzeit(
    ["--json", "task", "submit", "echo", "--protocol", "echo/v1", "--params", `{"n": "${big}"}`],
    { env },
  );
  assertEquals(ok.code, 0, ok.stderr);
  assertEquals(JSON.parse(ok.stdout).results.task, { n: big });
});
