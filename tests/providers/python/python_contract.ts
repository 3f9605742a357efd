/**
 * The python/v1 behaviour every variant must show (cold or warm, sandboxed or not): one
 * suite, registered once per variant by python_provider_test.ts.
 */

import assert from "node:assert/strict";
import { GleitzeitError } from "../../../src/core/errors.ts";
import type { PythonProvider } from "../../../src/providers/python/python_provider.ts";
import {
  assertAllDead,
  makeCtx,
  newMarker,
  pidsWithMarker,
  spawnMarked,
  waitForMarked,
} from "./helpers.ts";

type Make = (extra?: { outputLimitBytes?: number }) => PythonProvider;

/** Registers the contract tests for one provider variant. */
export function pythonContract(variant: string, make: Make): void {
  const test = (name: string, fn: (p: PythonProvider) => Promise<void>) =>
    Deno.test(`[${variant}] ${name}`, async () => {
      const provider = make();
      try {
        await fn(provider);
      } finally {
        await provider.close();
      }
    });

  const run = async (p: PythonProvider, code: string, context?: Record<string, unknown>) =>
    await p.call("python/execute", context ? { code, context } : { code }, makeCtx()) as Record<
      string,
      unknown
    >;

  const failure = async (
    p: PythonProvider,
    params: Record<string, unknown>,
    method = "python/execute",
    ctx = makeCtx(),
  ): Promise<GleitzeitError> => {
    try {
      await p.call(method, params, ctx);
    } catch (e) {
      assert.ok(e instanceof GleitzeitError, `not a GleitzeitError: ${e}`);
      return e;
    }
    throw new Error("the task did not fail");
  };

  test("result values keep their JSON types", async (p) => {
    assert.deepEqual((await run(p, "result = {'a': 1, 'b': [1, 2.5, 'x', None, True]}")).result, {
      a: 1,
      b: [1, 2.5, "x", null, true],
    });
    assert.deepEqual((await run(p, "result = [1, 2, 3]")).result, [1, 2, 3]);
    assert.equal((await run(p, "result = 'text ü €'")).result, "text ü €");
    assert.equal((await run(p, "result = 6 * 7")).result, 42);
    assert.equal((await run(p, "result = 0.5")).result, 0.5);
    assert.equal((await run(p, "result = None")).result, null);
    assert.equal((await run(p, "x = 1")).result, null, "no `result` variable means null");
    assert.deepEqual((await run(p, "result = (1, 'a')")).result, [1, "a"], "tuples are lists");
  });

  test("context entries become variables", async (p) => {
    const r = await run(p, "result = {'sum': a + b, 'names': [n.upper() for n in names]}", {
      a: 2,
      b: 40,
      names: ["x", "y"],
    });
    assert.deepEqual(r.result, { sum: 42, names: ["X", "Y"] });
  });

  test("a context of megabytes arrives whole, and the task after it runs too", async (p) => {
    // (a warm job line this long comes in many reads, in the parent and in the spare)
    const data = "ab".repeat(3 << 20) + '\u00e9\n"end';
    const r = await run(p, "result = [len(data), data[:4], data[-6:], more]", {
      data,
      more: [1, "two"],
    });
    assert.deepEqual(r.result, [data.length, "abab", data.slice(-6), [1, "two"]]);
    assert.equal((await run(p, "result = 'next'")).result, "next");
  });

  test("stdout and stderr are captured; printing cannot corrupt the result", async (p) => {
    const r = await run(
      p,
      "import sys\nprint('hello')\nprint('{\"ok\": false}')\nsys.stderr.write('warn\\n')\nresult = 1",
    );
    assert.equal(r.output, 'hello\n{"ok": false}\n');
    assert.equal(r.stderr, "warn\n");
    assert.equal(r.result, 1);
    assert.equal(r.output_truncated, false);
    assert.equal(r.stderr_truncated, false);
    assert.equal(typeof r.execution_time_ms, "number");
  });

  Deno.test(`[${variant}] output beyond the limit is truncated and marked`, async () => {
    const small = make({ outputLimitBytes: 1000 });
    try {
      const r = await small.call(
        "python/execute",
        {
          code: "import sys\nfor i in range(20000): print('x' * 99)\n" +
            "sys.stderr.write('e' * 5000)\nresult = 'done'",
        },
        makeCtx(),
      ) as Record<string, unknown>;
      assert.equal(r.result, "done");
      assert.equal((r.output as string).length, 1000);
      assert.equal(r.output_truncated, true);
      assert.equal((r.stderr as string).length, 1000);
      assert.equal(r.stderr_truncated, true);
    } finally {
      await small.close();
    }
  });

  test("an exception fails the task with the traceback; not retryable", async (p) => {
    const e = await failure(p, { code: "def f(x):\n    return 1 / x\n\nprint('before')\nf(0)" });
    assert.equal(e.code, "TASK_EXECUTION_FAILED");
    assert.equal(e.retryable, false);
    assert.equal(e.message, "ZeroDivisionError: division by zero");
    const tb = e.details.traceback as string;
    assert.match(tb, /Traceback \(most recent call last\)/);
    assert.match(tb, /File "<task>", line 5, in <module>/);
    assert.match(tb, /File "<task>", line 2, in f/);
    assert.match(tb, /return 1 \/ x/);
    assert.doesNotMatch(tb, /<string>/, "runner frames are hidden");
    assert.equal(e.details.exception_type, "ZeroDivisionError");
    assert.equal(e.details.output, "before\n");
  });

  test("a syntax error fails the task with the location", async (p) => {
    const e = await failure(p, { code: "x = 1\ndef broken(:\n    pass" });
    assert.equal(e.code, "TASK_EXECUTION_FAILED");
    assert.match(e.message, /^SyntaxError: /);
    assert.match(e.details.traceback as string, /File "<task>", line 2/);
  });

  test("chained exceptions name the task's code <task> in every part", async (p) => {
    const e = await failure(p, {
      code: "try:\n    {}['k']\nexcept KeyError as k:\n    raise ValueError('v') from k\n",
    });
    const tb = e.details.traceback as string;
    assert.match(tb, /File "<task>", line 2, in <module>/);
    assert.match(tb, /direct cause of the following exception/);
    assert.match(tb, /File "<task>", line 4, in <module>/);
    assert.match(tb, /raise ValueError\('v'\) from k/);
    assert.doesNotMatch(tb, /<string>/);
  });

  test("only the task's own code is <task>: code made from strings keeps <string>", async (p) => {
    let e = await failure(p, {
      code: "from dataclasses import dataclass\n@dataclass\nclass A:\n    x: int\n" +
        "    def __post_init__(self):\n        raise ValueError('bad x')\nA(1)\n",
    });
    let tb = e.details.traceback as string;
    assert.match(tb, /File "<task>", line 7, in <module>/);
    assert.match(tb, /File "<string>", line \d+, in __init__\n {2}File "<task>", line 6/);
    e = await failure(p, { code: "x = 1\nexec('a = 1\\nb = 1/0')\n" });
    tb = e.details.traceback as string;
    assert.match(tb, /File "<task>", line 2, in <module>/);
    assert.match(tb, /File "<string>", line 2, in <module>\nZeroDivisionError/);
    e = await failure(p, { code: "z = 0\neval('1 +')\n" });
    assert.match(e.details.traceback as string, /File "<string>", line 1\n {4}1 \+/);
    // an exception with an attribute named like an exception group's keeps its traceback
    e = await failure(p, {
      code: "class E(Exception):\n    exceptions = 5\ndef f():\n    raise E('boom')\nf()\n",
    });
    assert.equal(e.message, "E: boom");
    assert.match(e.details.traceback as string, /File "<task>", line 4, in f/);
    // a long chain of causes is printed whole
    e = await failure(p, {
      code: "e = None\nfor i in range(1200):\n    try:\n        raise ValueError(i) from e\n" +
        "    except ValueError as x:\n        e = x\nraise e\n",
    });
    assert.equal(e.message, "ValueError: 1199");
    assert.match(e.details.traceback as string, /ValueError: 0\n/);
  });

  test("a result file the task made a FIFO or a link to /dev/zero is no result (no hang)", async (p) => {
    for (const make of ["os.mkfifo(path)", "os.symlink('/dev/zero', path)"]) {
      const e = await failure(p, {
        code: `import os\npath = os.path.join(os.path.dirname(os.getcwd()), "result.json")\n` +
          `try:\n    os.unlink(path)\nexcept OSError:\n    pass\n${make}\nos._exit(0)\n`,
        timeout: 10,
      });
      // (warm in bwrap, the result is elsewhere, in a directory the task cannot reach; cold
      // in bwrap, it is a file bound in, which the task can write but not replace)
      assert.match(e.message, /without producing a result|PermissionError|FileExistsError/, make);
    }
  });

  test("a result of more than 8 MiB of JSON is a result error, not Gleitzeit's heap", async (p) => {
    assert.equal(((await run(p, "result = 'x' * (7 << 20)")).result as string).length, 7 << 20);
    const e = await failure(p, { code: "result = 'x' * (9 << 20)" });
    assert.equal(e.code, "TASK_RESULT_ERROR");
    assert.match(e.message, /the result is 9 MiB of JSON, more than the 8 MiB/);
  });

  test("a task that imports os sees its work directory as HOME, TMPDIR, PWD and cwd", async (p) => {
    const r = await run(
      p,
      "import os, tempfile\nresult = [os.environ['HOME'], os.environ['TMPDIR'], os.getcwd(), " +
        "tempfile.gettempdir(), os.environ.get('PWD')]",
    );
    const [home, tmp, cwd, tempdir, pwd] = r.result as string[];
    assert.equal(home, cwd);
    assert.equal(tmp, cwd);
    assert.equal(tempdir, cwd);
    assert.equal(pwd, cwd);
  });

  test("a task's os.environ and its processes' environment have nothing of how its pool started", async (p) => {
    // os.environ, and the C environment that the task's own processes get
    const r = await run(
      p,
      "import os, subprocess\nenv = subprocess.run(['env'], capture_output=True, text=True)" +
        "\nresult = [sorted(os.environ), sorted(l.split('=', 1)[0] for l in env.stdout.splitlines())]",
    );
    const [python, processes] = r.result as string[][];
    assert.ok(python.includes("PATH") && processes.includes("PATH"), JSON.stringify(r.result));
    for (const names of [python, processes]) {
      assert.deepEqual(names.filter((n) => n.startsWith("LD_")), [], JSON.stringify(r.result));
    }
  });

  test("a non-serialisable result fails with TASK_RESULT_ERROR naming the type", async (p) => {
    let e = await failure(p, { code: "result = {'s': {1, 2}}" });
    assert.equal(e.code, "TASK_RESULT_ERROR");
    assert.match(e.message, /\bset\b/);
    assert.equal(e.details.type, "set");
    e = await failure(p, { code: "import datetime\nresult = datetime.date(2024, 1, 1)" });
    assert.equal(e.code, "TASK_RESULT_ERROR");
    assert.match(e.message, /datetime\.date/);
    e = await failure(p, { code: "class Point: pass\nresult = [Point()]" });
    assert.match(e.message, /__main__\.Point/);
    e = await failure(p, { code: "result = float('nan')" });
    assert.equal(e.code, "TASK_RESULT_ERROR");
    assert.match(e.message, /float/);
  });

  test("an integer beyond 2**53 fails with TASK_RESULT_ERROR; those up to it pass", async (p) => {
    // strings and floats of any size are what they are
    const kept = await run(
      p,
      "result = [2**53, -2**53, 9007199254740991, '9223372036854775809', 1.5e300, 12345678901234.5]",
    );
    assert.deepEqual(kept.result, [
      2 ** 53,
      -(2 ** 53),
      9007199254740991,
      "9223372036854775809",
      1.5e300,
      12345678901234.5,
    ]);
    // digits in strings are strings, however deep
    const deep = await run(
      p,
      "import sys\nsys.setrecursionlimit(100000)\nx = '1234567890123456789'\n" +
        "for i in range(5000):\n    x = [x]\nresult = x",
    );
    let inner: unknown = deep.result;
    for (let i = 0; i < 5000; i++) inner = (inner as unknown[])[0];
    assert.equal(inner, "1234567890123456789");
    for (
      const [code, shown] of [
        ["result = {'id': 2**63 + 1}", "9223372036854775809"],
        ["result = [1, -(2**53 + 1)]", "-9007199254740993"],
        // doubles hold these exactly, but passed on or stored they are written rounded
        // (1152921504606847000): the next task would get another number
        ["result = {'n': 2**60}", "1152921504606846976"],
        ["result = [2**63]", "9223372036854775808"],
        ["result = -(2**63)", "-9223372036854775808"],
        ["result = 10**400", "(401 digits)"],
      ]
    ) {
      const e = await failure(p, { code });
      assert.equal(e.code, "TASK_RESULT_ERROR", code);
      assert.equal(e.details.type, "int");
      assert.ok(e.message.includes(shown), e.message);
      assert.match(e.message, /str\(n\)/);
    }
  });

  test("a dict whose keys become one JSON key fails with TASK_RESULT_ERROR; distinct ones pass", async (p) => {
    for (
      const [code, key] of [
        ["result = {1: 'a', '1': 'b'}", '"1"'],
        ["result = {'x': [0, {'k': {True: 1, 'true': 2}}]}", '"true"'],
        ["result = [{'a': 1}, {None: 1, 'null': 2}]", '"null"'],
        ["result = {1.5: 'a', '1.5': 'b'}", '"1.5"'],
      ]
    ) {
      const e = await failure(p, { code });
      assert.equal(e.code, "TASK_RESULT_ERROR", code);
      assert.equal(e.details.type, "dict", code);
      assert.ok(e.message.includes(key), e.message);
    }
    // numeric keys that stay distinct, the same key in two objects, and strings that look
    // like keys are kept
    const kept = await run(
      p,
      "result = [{1: 'a', 2: 'b', None: 'c'}, {'1': 'x'}, {'1': 'y'}, " +
        "{'s': '\"1\": 1, \"1\": 2', 't': '\\\\', '1': '{'}]",
    );
    assert.deepEqual(kept.result, [
      { "1": "a", "2": "b", "null": "c" },
      { "1": "x" },
      { "1": "y" },
      { s: '"1": 1, "1": 2', t: "\\", "1": "{" },
    ]);
  });

  test("sys.exit(0) succeeds, a non-zero exit fails", async (p) => {
    assert.equal((await run(p, "result = 5\nimport sys\nsys.exit(0)")).result, 5);
    const e = await failure(p, { code: "import sys\nsys.exit(4)" });
    assert.equal(e.code, "TASK_EXECUTION_FAILED");
    assert.equal(e.details.exit_code, 4);
  });

  test("a crashed interpreter fails with the signal and the stderr tail", async (p) => {
    const e = await failure(p, {
      code: "import os, sys\nsys.stderr.write('about to die\\n'); sys.stderr.flush()\n" +
        "os.kill(os.getpid(), 9)",
    });
    assert.equal(e.code, "TASK_EXECUTION_FAILED");
    assert.equal(e.details.signal, "SIGKILL");
    assert.match(e.message, /SIGKILL/);
    assert.match(e.details.stderr as string, /about to die/);
    const exited = await failure(p, { code: "import os\nos._exit(9)" });
    assert.equal(exited.details.exit_code, 9);
    assert.match(exited.message, /exited with code 9 without producing a result/);
  });

  test("the work directory is the cwd, fresh per task, and gone afterwards", async (p) => {
    const a = await run(
      p,
      "import os\nopen('f.txt', 'w').write('x')\nresult = [os.getcwd(), os.listdir('.')]",
    );
    const [cwd, files] = a.result as [string, string[]];
    assert.deepEqual(files, ["f.txt"]);
    const b = await run(p, "import os\nresult = [os.getcwd(), os.listdir('.')]");
    // Fresh: empty (a sandboxed cold task sees its own directory at one fixed path).
    assert.deepEqual((b.result as unknown[])[1], []);
    await assert.rejects(Deno.stat(cwd), Deno.errors.NotFound);
  });

  test("an abort kills the task's whole tree (setsid'd too) promptly", async (p) => {
    const marker = newMarker();
    const ctx = makeCtx();
    const failed = p.call("python/execute", { code: spawnMarked(marker) }, ctx).then(
      () => undefined,
      (e) => e,
    );
    const pids = await waitForMarked(marker, 3);
    const reason = new GleitzeitError("TASK_TIMEOUT", "attempt timed out");
    const t0 = performance.now();
    ctx.controller.abort(reason);
    const e = await failed;
    assert.equal(e, reason, "rejects with the signal's reason");
    // at once, not after the kill (which can take seconds under load); generous for the same
    // reason: the event loop itself may be slow here
    const took = performance.now() - t0;
    assert.ok(took < 1000, `rejects promptly (took ${Math.round(took)} ms)`);
    await assertAllDead(pids, 3000); // the killer is a process of its own: slow on a loaded machine
  });

  test("the `timeout` param kills the tree and fails with TASK_TIMEOUT", async (p) => {
    const marker = newMarker();
    const started = performance.now();
    // 4 s: time for a cold sandbox to start the three processes on a loaded machine (with
    // 1.5 s, CI under load once timed the task out before they existed)
    const failed = p.call("python/execute", { code: spawnMarked(marker), timeout: 4 }, makeCtx())
      .then(() => undefined, (e) => e);
    const pids = await waitForMarked(marker, 3);
    const e = await failed;
    assert.ok(e instanceof GleitzeitError);
    assert.equal(e.code, "TASK_TIMEOUT");
    assert.equal(e.retryable, true);
    // ended by its 4 s timeout, not by its own 120 s (a loaded machine, as in CI with the
    // tests in parallel, once took more than a second beyond the timeout to start and kill it)
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= 3900 && elapsed < 12_000, `ended after ${elapsed.toFixed(0)} ms`);
    await assertAllDead(pids, 3000); // the killer is a process of its own: slow on a loaded machine
  });

  // what it printed before it hung: the likeliest clue to where it was
  const PRINTS_THEN_HANGS = "import sys, time\nprint('progress 1', flush=True)\n" +
    "sys.stderr.write('warning 1\\n')\nsys.stderr.flush()\ntime.sleep(60)";

  test("the shorter of the `timeout` param and the sandbox's timeout applies, is named, and keeps the output", async (p) => {
    const call = (timeout: number | string, sandbox: number) =>
      p.call(
        "python/execute",
        { code: PRINTS_THEN_HANGS, timeout },
        makeCtx({ sandbox: { task: { timeout: sandbox } } }),
      ).then(() => undefined, (e) => e);
    for (
      const [own, sandbox, setting] of [
        // (3 s: time for a cold sandbox to start and print on a loaded machine)
        [30, 3, /sandbox: \{timeout: N\}/],
        // (the param written as a task's own timeout may be: a duration)
        ["3s", 30, /params: \{timeout: N\}/],
      ] as const
    ) {
      const e = await call(own, sandbox);
      assert.ok(e instanceof GleitzeitError);
      assert.equal(e.code, "TASK_TIMEOUT");
      assert.match(e.message, /timeout of 3s/);
      assert.match(e.hint ?? "", setting);
      assert.match(String(e.details.output), /progress 1/);
      assert.match(String(e.details.stderr), /warning 1/);
    }
  });

  test("the engine's timeout (its abort reason) gets the task's output too", async (p) => {
    const ctx = makeCtx();
    const reason = new GleitzeitError("TASK_TIMEOUT", "task 't' timed out after 3s");
    const call = p.call("python/execute", { code: PRINTS_THEN_HANGS }, ctx);
    setTimeout(() => ctx.controller.abort(reason), 3000);
    const e = await call.then(() => undefined, (x) => x);
    assert.equal(e, reason);
    assert.match(String(reason.details.output), /progress 1/);
    assert.match(String(reason.details.stderr), /warning 1/);
  });

  test("cancellation rejects with TASK_CANCELLED, whatever the abort reason", async (p) => {
    const ctx = makeCtx();
    const call = p.call("python/execute", { code: "import time\ntime.sleep(60)" }, ctx);
    setTimeout(() => ctx.controller.abort(), 300);
    await assert.rejects(call, (err: unknown) => {
      assert.ok(err instanceof GleitzeitError);
      assert.equal(err.code, "TASK_CANCELLED");
      return true;
    });
    const early = makeCtx();
    early.controller.abort(new GleitzeitError("TASK_CANCELLED", "early"));
    await assert.rejects(p.call("python/execute", { code: "result = 1" }, early), /early/);
    // The provider still works after an abort.
    assert.equal((await run(p, "result = 'alive'")).result, "alive");
  });

  test("processes left behind by a finished task are killed", async (p) => {
    const marker = newMarker();
    const r = await run(
      p,
      `import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', ${
        JSON.stringify(marker)
      }], start_new_session=True)\nresult = 1`,
    );
    assert.equal(r.result, 1);
    const start = performance.now();
    // within 3 s: the killer is a process of its own, slow to start on a loaded machine
    while (performance.now() - start < 3000) {
      if ((await pidsWithMarker(marker)).length === 0) return;
      await new Promise((res) => setTimeout(res, 20));
    }
    assert.fail("a process of the finished task is still alive");
  });

  test("python/script runs a file relative to baseDir with args and context", async (p) => {
    const dir = await Deno.makeTempDir();
    try {
      await Deno.chmod(dir, 0o755);
      await Deno.mkdir(`${dir}/scripts`, { mode: 0o755 });
      await Deno.writeTextFile(`${dir}/scripts/helper.py`, "def double(x):\n    return 2 * x\n");
      await Deno.writeTextFile(
        `${dir}/scripts/main.py`,
        "import sys\nfrom helper import double\nprint('args', sys.argv[1:])\n" +
          "result = {'doubled': double(n), 'args': sys.argv[1:], 'file': __file__.endswith('main.py')}\n",
      );
      const r = await p.call(
        "python/script",
        { script: "scripts/main.py", args: ["a", "b", 3, true], context: { n: 21 } },
        makeCtx({ baseDir: dir }),
      ) as Record<string, unknown>;
      // numbers and booleans as their JSON text
      assert.deepEqual(r.result, { doubled: 42, args: ["a", "b", "3", "true"], file: true });
      assert.equal(r.output, "args ['a', 'b', '3', 'true']\n");

      await Deno.writeTextFile(`${dir}/scripts/bad.py`, "x = 1\nraise ValueError('nope')\n");
      const e = await failure(
        p,
        { script: "scripts/bad.py" },
        "python/script",
        makeCtx({ baseDir: dir }),
      );
      assert.equal(e.code, "TASK_EXECUTION_FAILED");
      assert.equal(e.message, "ValueError: nope");
      assert.match(e.details.traceback as string, /bad\.py", line 2/);
      const missing = await failure(
        p,
        { script: "nope.py" },
        "python/script",
        makeCtx({ baseDir: dir }),
      );
      assert.equal(missing.code, "TASK_PARAMETER_ERROR");
      assert.equal(
        missing.message,
        `python/script: the script nope.py does not exist (${dir}/nope.py)`,
      );
      assert.match(missing.hint ?? "", /relative to the workflow file/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}
