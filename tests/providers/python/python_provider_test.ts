/**
 * python/v1 with real Python: results, context, output capture, failures, timeouts,
 * cancellation and process-tree kills, python/script.
 */

import assert from "node:assert/strict";
import { GleitzeitError } from "../../../src/core/errors.ts";
import { PythonProvider } from "../../../src/providers/python/python_provider.ts";
import { resolvePython } from "../../../src/providers/python/python_interpreter.ts";
import { assertAllDead, makeCtx, waitForPids } from "./helpers.ts";

const python = new PythonProvider({ sandbox: "none" });

async function run(code: string, context?: Record<string, unknown>) {
  const params: Record<string, unknown> = { code };
  if (context) params.context = context;
  return await python.call("python/execute", params, makeCtx()) as Record<string, unknown>;
}

async function failure(
  params: Record<string, unknown>,
  method = "python/execute",
  provider = python,
  ctx = makeCtx(),
): Promise<GleitzeitError> {
  try {
    await provider.call(method, params, ctx);
  } catch (e) {
    assert.ok(e instanceof GleitzeitError, `not a GleitzeitError: ${e}`);
    return e;
  }
  throw new Error("the task did not fail");
}

Deno.test("the interpreter resolves to a real executable, not a shim", async () => {
  const py = await resolvePython("python3");
  assert.match(py.version, /^3\./);
  assert.ok(py.executable.startsWith("/"));
  assert.ok(!py.executable.includes("/shims/"), py.executable);
});

Deno.test("result values keep their JSON types", async () => {
  assert.deepEqual((await run("result = {'a': 1, 'b': [1, 2.5, 'x', None, True]}")).result, {
    a: 1,
    b: [1, 2.5, "x", null, true],
  });
  assert.deepEqual((await run("result = [1, 2, 3]")).result, [1, 2, 3]);
  assert.equal((await run("result = 'text ü'")).result, "text ü");
  assert.equal((await run("result = 6 * 7")).result, 42);
  assert.equal((await run("result = 0.5")).result, 0.5);
  assert.equal((await run("result = None")).result, null);
  assert.equal((await run("x = 1")).result, null, "no `result` variable means null");
});

Deno.test("context entries become variables", async () => {
  const r = await run("result = {'sum': a + b, 'names': [n.upper() for n in names]}", {
    a: 2,
    b: 40,
    names: ["x", "y"],
  });
  assert.deepEqual(r.result, { sum: 42, names: ["X", "Y"] });
});

Deno.test("stdout and stderr are captured; printing cannot corrupt the result", async () => {
  const r = await run(
    "import sys\nprint('hello')\nprint('{\"ok\": false}')\nsys.stderr.write('warn\\n')\nresult = 1",
  );
  assert.equal(r.output, 'hello\n{"ok": false}\n');
  assert.equal(r.stderr, "warn\n");
  assert.equal(r.result, 1);
  assert.equal(r.output_truncated, false);
  assert.equal(typeof r.execution_time_ms, "number");
});

Deno.test("output beyond the limit is truncated and marked, and the task still finishes", async () => {
  const small = new PythonProvider({ sandbox: "none", outputLimitBytes: 1000 });
  const r = await small.call(
    "python/execute",
    {
      code:
        "import sys\nfor i in range(20000): print('x' * 99)\nsys.stderr.write('e' * 5000)\nresult = 'done'",
    },
    makeCtx(),
  ) as Record<string, unknown>;
  assert.equal(r.result, "done");
  assert.equal((r.output as string).length, 1000);
  assert.equal(r.output_truncated, true);
  assert.equal((r.stderr as string).length, 1000);
  assert.equal(r.stderr_truncated, true);
  await small.close();
});

Deno.test("an exception fails the task with the traceback; not retryable", async () => {
  const e = await failure({ code: "def f(x):\n    return 1 / x\n\nprint('before')\nf(0)" });
  assert.equal(e.code, "TASK_EXECUTION_FAILED");
  assert.equal(e.retryable, false);
  assert.equal(e.message, "ZeroDivisionError: division by zero");
  const tb = e.details.traceback as string;
  assert.match(tb, /Traceback \(most recent call last\)/);
  assert.match(tb, /File "<task>", line 5, in <module>/);
  assert.match(tb, /File "<task>", line 2, in f/);
  assert.match(tb, /return 1 \/ x/);
  assert.doesNotMatch(tb, /runner|<string>/, "runner frames are hidden");
  assert.equal(e.details.exception_type, "ZeroDivisionError");
  assert.equal(e.details.output, "before\n");
});

Deno.test("a syntax error fails the task with the location", async () => {
  const e = await failure({ code: "x = 1\ndef broken(:\n    pass" });
  assert.equal(e.code, "TASK_EXECUTION_FAILED");
  assert.match(e.message, /^SyntaxError: /);
  assert.match(e.details.traceback as string, /File "<task>", line 2/);
});

Deno.test("a non-serialisable result fails with TASK_RESULT_ERROR naming the type", async () => {
  let e = await failure({ code: "result = {'s': {1, 2}}" });
  assert.equal(e.code, "TASK_RESULT_ERROR");
  assert.match(e.message, /\bset\b/);
  assert.equal(e.details.type, "set");
  e = await failure({ code: "import datetime\nresult = datetime.date(2024, 1, 1)" });
  assert.equal(e.code, "TASK_RESULT_ERROR");
  assert.match(e.message, /datetime\.date/);
  e = await failure({ code: "class Point: pass\nresult = [Point()]" });
  assert.match(e.message, /__main__\.Point/);
  e = await failure({ code: "result = float('nan')" });
  assert.equal(e.code, "TASK_RESULT_ERROR");
  assert.match(e.message, /float/);
});

Deno.test("sys.exit(0) succeeds, a non-zero exit fails", async () => {
  assert.equal((await run("result = 5\nimport sys\nsys.exit(0)")).result, 5);
  const e = await failure({ code: "import sys\nsys.exit(4)" });
  assert.equal(e.code, "TASK_EXECUTION_FAILED");
  assert.equal(e.details.exit_code, 4);
});

Deno.test("a crashed interpreter fails with the signal and the stderr tail", async () => {
  const e = await failure({
    code:
      "import os, sys\nsys.stderr.write('about to die\\n'); sys.stderr.flush()\nos.kill(os.getpid(), 9)",
  });
  assert.equal(e.code, "TASK_EXECUTION_FAILED");
  assert.equal(e.details.signal, "SIGKILL");
  assert.match(e.message, /SIGKILL/);
  assert.match(e.details.stderr as string, /about to die/);
  const exited = await failure({ code: "import os\nos._exit(9)" });
  assert.equal(exited.details.exit_code, 9);
  assert.match(exited.message, /exited with code 9 without producing a result/);
});

Deno.test("the work directory is the cwd, fresh per task, and removed afterwards", async () => {
  const a = await run(
    "import os\nopen('f.txt', 'w').write('x')\nresult = [os.getcwd(), os.listdir('.')]",
  );
  const [cwd, files] = a.result as [string, string[]];
  assert.deepEqual(files, ["f.txt"]);
  const b = await run("import os\nresult = os.listdir('.')");
  assert.deepEqual(b.result, []);
  await assert.rejects(Deno.stat(cwd), Deno.errors.NotFound);
});

/** Python that spawns `children` kinds of descendants, writes their pids, then sleeps. */
function spawner(pidFile: string): string {
  return `
import os, sys, subprocess, time, json
py = sys.executable
sleeper = [py, "-c", "import time; time.sleep(120)"]
plain = subprocess.Popen(sleeper)
detached = subprocess.Popen(sleeper, start_new_session=True)
# A double fork: the grandchild calls setsid and its parent exits at once.
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() == 0:
        os.write(w, str(os.getpid()).encode()); os.close(w)
        time.sleep(120)
    os._exit(0)
os.waitpid(pid, 0)
os.close(w)
grandchild = int(os.read(r, 32))
with open(${JSON.stringify(pidFile)} + ".tmp", "w") as f:
    json.dump([os.getpid(), plain.pid, detached.pid, grandchild], f)
os.rename(${JSON.stringify(pidFile)} + ".tmp", ${JSON.stringify(pidFile)})
time.sleep(120)
`;
}

Deno.test("a timeout kills the runner and every descendant (incl. setsid ones) within 1 s", async () => {
  const dir = await Deno.makeTempDir();
  const pidFile = `${dir}/pids.json`;
  const provider = new PythonProvider({ sandbox: "none" });
  const started = performance.now();
  const call = provider.call("python/execute", { code: spawner(pidFile), timeout: 1.5 }, makeCtx());
  const failed = call.then(() => undefined, (e) => e);
  const pids = await waitForPids(pidFile, 4);
  const e = await failed;
  const abortedAt = performance.now();
  assert.ok(e instanceof GleitzeitError);
  assert.equal(e.code, "TASK_TIMEOUT");
  assert.equal(e.retryable, true);
  assert.ok(abortedAt - started < 1500 + 1000, `rejected after ${abortedAt - started} ms`);
  const took = await assertAllDead(pids, 1000);
  assert.ok(took < 1000);
  await provider.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("an engine abort (TASK_TIMEOUT reason) kills the tree and rejects with that reason", async () => {
  const dir = await Deno.makeTempDir();
  const pidFile = `${dir}/pids.json`;
  const provider = new PythonProvider({ sandbox: "none" });
  const ctx = makeCtx();
  const failed = provider.call("python/execute", { code: spawner(pidFile) }, ctx).then(
    () => undefined,
    (e) => e,
  );
  const pids = await waitForPids(pidFile, 4);
  const reason = new GleitzeitError("TASK_TIMEOUT", "attempt timed out after 2s");
  const t0 = performance.now();
  ctx.controller.abort(reason);
  const e = await failed;
  const rejectMs = performance.now() - t0;
  assert.equal(e, reason, "rejects with the signal's reason itself");
  assert.ok(rejectMs < 250, `rejected ${rejectMs} ms after the abort`);
  await assertAllDead(pids, 1000);
  await provider.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("cancellation (TASK_CANCELLED reason, or any reason) kills the task", async () => {
  const dir = await Deno.makeTempDir();
  const pidFile = `${dir}/pids.json`;
  const provider = new PythonProvider({ sandbox: "none" });
  const ctx = makeCtx();
  const failed = provider.call("python/execute", { code: spawner(pidFile) }, ctx).then(
    () => undefined,
    (e) => e,
  );
  const pids = await waitForPids(pidFile, 4);
  ctx.controller.abort(new GleitzeitError("TASK_CANCELLED", "cancelled by user"));
  const e = await failed;
  assert.equal(e.code, "TASK_CANCELLED");
  await assertAllDead(pids, 1000);

  // A plain abort() (DOMException reason) still rejects with a GleitzeitError.
  const ctx2 = makeCtx();
  const p2 = provider.call("python/execute", { code: "import time\ntime.sleep(60)" }, ctx2);
  setTimeout(() => ctx2.controller.abort(), 300);
  await assert.rejects(p2, (err: unknown) => {
    assert.ok(err instanceof GleitzeitError);
    assert.equal(err.code, "TASK_CANCELLED");
    return true;
  });
  // Already aborted before the call: rejects at once.
  const ctx3 = makeCtx();
  ctx3.controller.abort(new GleitzeitError("TASK_CANCELLED", "early"));
  await assert.rejects(provider.call("python/execute", { code: "result = 1" }, ctx3), /early/);
  await provider.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("children left running after a successful task are killed when it ends", async () => {
  const r = await run(
    "import subprocess, sys\np = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True)\nresult = p.pid",
  );
  await assertAllDead([r.result as number], 1000);
});

Deno.test("python/script runs a file relative to baseDir with args and context", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.mkdir(`${dir}/scripts`);
  await Deno.writeTextFile(`${dir}/scripts/helper.py`, "def double(x):\n    return 2 * x\n");
  await Deno.writeTextFile(
    `${dir}/scripts/main.py`,
    "import sys\nfrom helper import double\nprint('args', sys.argv[1:])\nresult = {'doubled': double(n), 'args': sys.argv[1:], 'file': __file__.endswith('main.py')}\n",
  );
  const r = await python.call(
    "python/script",
    { script: "scripts/main.py", args: ["a", "b"], context: { n: 21 } },
    makeCtx({ baseDir: dir }),
  ) as Record<string, unknown>;
  assert.deepEqual(r.result, { doubled: 42, args: ["a", "b"], file: true });
  assert.equal(r.output, "args ['a', 'b']\n");

  await Deno.writeTextFile(`${dir}/scripts/bad.py`, "x = 1\nraise ValueError('nope')\n");
  const e = await failure({ script: "scripts/bad.py" }, "python/script", python);
  assert.equal(e.code, "TASK_PARAMETER_ERROR", "no baseDir: resolved against cwd, not found");
  const e2 = await failure(
    { script: "scripts/bad.py" },
    "python/script",
    python,
    makeCtx({ baseDir: dir }),
  );
  assert.equal(e2.code, "TASK_EXECUTION_FAILED");
  assert.equal(e2.message, "ValueError: nope");
  assert.match(e2.details.traceback as string, /bad\.py", line 2/);
  const missing = await failure(
    { script: "nope.py" },
    "python/script",
    python,
    makeCtx({ baseDir: dir }),
  );
  assert.equal(missing.code, "TASK_PARAMETER_ERROR");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("unknown methods are rejected", async () => {
  const e = await failure({}, "python/nope");
  assert.equal(e.code, "METHOD_NOT_SUPPORTED");
});

Deno.test("health reports the interpreter", async () => {
  const h = await python.health();
  assert.equal(h.healthy, true);
  assert.match(h.message ?? "", /^Python 3\./);
  const broken = new PythonProvider({ python: "/nonexistent/python3", sandbox: "none" });
  const bad = await broken.health();
  assert.equal(bad.healthy, false);
  const e = await failure({ code: "result = 1" }, "python/execute", broken);
  assert.equal(e.code, "PROVIDER_UNAVAILABLE");
  assert.match(e.hint ?? "", /GLEITZEIT_PYTHON/);
});
