/**
 * The real Python calc provider (examples/providers/calc_provider.py) over stdio:
 * describe-based discovery, errors, queueing under concurrency and rate limits, a process
 * killed mid-call, two instances sharing load, stderr, clean shutdown.
 */

import { assertEquals, assertOk, rejects } from "../jsonrpc/assert.ts";
import { GleitzeitError } from "../../../src/core/errors.ts";
import { PluginProvider } from "../../../src/providers/plugin/plugin_provider.ts";
import {
  alive,
  calcEntry,
  ctx,
  EXAMPLES_DIR,
  PYTHON,
  registryWith,
  requirePython,
} from "./helpers.ts";

function gz(e: unknown): GleitzeitError {
  if (!(e instanceof GleitzeitError)) throw new Error(`expected a GleitzeitError, got ${e}`);
  return e;
}

Deno.test("calc provider: methods and schemas discovered through describe; calls, errors, stats", async () => {
  const registry = await registryWith({ providers: [calcEntry()] });
  try {
    // describe ran in a short-lived process; the provider itself starts on first use
    assertEquals(registry.stats().find((s) => s.id === "calc")!.status, "not_started");
    const add = registry.method("calc/v1", "calc/add");
    assertOk(add, "calc/add declared from describe");
    assertEquals(add.params.required, ["a", "b"]);
    assertEquals(registry.inferProtocol("calc/multiply"), { protocol: "calc/v1" });
    assertEquals(
      registry.validateParams("calc/v1", "calc/add", { a: 1 })[0]!.message,
      "is required",
    );
    assertEquals(
      registry.validateParams("calc/v1", "calc/add", { a: "${x.result}", b: 2 }, {
        allowReferences: true,
      }),
      [],
    );
    assertEquals(await registry.call("calc/v1", "calc/add", { a: 2, b: 3 }, ctx()), 5);
    assertEquals(await registry.call("calc/v1", "calc/multiply", { a: 6, b: 7 }, ctx()), 42);
    assertEquals(await registry.call("calc/v1", "calc/log", { message: "x" }, ctx()), null);
    const div = gz(await rejects(registry.call("calc/v1", "calc/divide", { a: 1, b: 0 }, ctx())));
    assertEquals([div.code, div.retryable, div.details.rpcCode], [
      "TASK_EXECUTION_FAILED",
      false,
      -32000,
    ]);
    assertEquals(div.message, "calc: division by zero");
    const flaky = gz(
      await rejects(
        registry.call("calc/v1", "calc/fail", { message: "flaky", retryable: true }, ctx()),
      ),
    );
    assertEquals([flaky.code, flaky.retryable, flaky.details.rpcCode], [
      "PROVIDER_ERROR",
      true,
      -32000,
    ]);
    const bad = gz(await rejects(registry.call("calc/v1", "calc/add", { a: 1, b: "x" }, ctx())));
    assertEquals(bad.code, "INVALID_PARAMS");
    const [stats] = registry.stats().filter((s) => s.protocol === "calc/v1");
    assertOk(stats);
    assertEquals([stats.id, stats.status, stats.calls, stats.successes, stats.failures], [
      "calc",
      "healthy",
      5,
      3,
      2,
    ]);
    assertEquals(stats.successRate, 0.6);
    assertOk(stats.methods.includes("calc/add"));
    assertOk((stats.meanLatencyMs ?? -1) >= 0);
    assertEquals((stats.info as { transport: string }).transport, "stdio");
    const [h] = await registry.health("calc");
    assertEquals(h!.report.healthy, true);
    assertEquals((h!.report.details as { response: { healthy: boolean } }).response.healthy, true);
  } finally {
    await registry.close();
  }
});

Deno.test("calc provider: declared methods register the protocol without starting a process", async () => {
  const registry = await registryWith({
    providers: [calcEntry({
      describe: undefined,
      methods: {
        "calc/add": {
          params: {
            type: "object",
            properties: { a: { type: "number" }, b: { type: "number" } },
            required: ["a", "b"],
          },
        },
      },
    })],
  });
  try {
    assertOk(registry.method("calc/v1", "calc/add"));
    assertEquals(registry.method("calc/v1", "calc/multiply"), undefined);
    const [s] = registry.stats().filter((s) => s.protocol === "calc/v1");
    assertEquals([s!.id, s!.status], ["calc", "not_started"]);
    assertEquals(await registry.call("calc/v1", "calc/add", { a: 1, b: 1 }, ctx()), 2);
    assertEquals(registry.stats().find((s) => s.id === "calc")!.status, "healthy");
  } finally {
    await registry.close();
  }
});

Deno.test("calc provider: max_concurrency queues excess calls instead of failing them", async () => {
  const registry = await registryWith({ providers: [calcEntry({ max_concurrency: 2 })] });
  try {
    const started = performance.now();
    const calls = Array.from(
      { length: 6 },
      (_, i) => registry.call("calc/v1", "calc/sleep", { seconds: 0.3, value: i }, ctx()),
    );
    // the moment two calls are in flight, the other four wait (polled: a fixed sleep could
    // wake after the first calls ended on a loaded machine)
    let during = registry.stats().find((s) => s.id === "calc")!;
    for (let i = 0; i < 500 && during.inFlight < 2; i++) {
      await new Promise((r) => setTimeout(r, 5));
      during = registry.stats().find((s) => s.id === "calc")!;
    }
    const results = (await Promise.all(calls)) as { value: number; active_at_start: number }[];
    const elapsed = performance.now() - started;
    assertEquals(results.map((r) => r.value), [0, 1, 2, 3, 4, 5]);
    assertEquals([during.inFlight, during.queued], [2, 4]);
    const info = await registry.call("calc/v1", "calc/info", {}, ctx()) as { peak_active: number };
    assertEquals(info.peak_active, 2);
    assertOk(
      elapsed >= 850,
      `6 calls of 0.3 s two at a time take >= 0.9 s, took ${elapsed.toFixed(0)} ms`,
    );
    console.log(
      `max_concurrency 2: 6 x 0.3 s calls took ${elapsed.toFixed(0)} ms, peak ${info.peak_active}`,
    );
  } finally {
    await registry.close();
  }
});

Deno.test("calc provider: rate_limit queues calls into later windows", async () => {
  const registry = await registryWith({
    providers: [calcEntry({ rate_limit: { requests: 4, per_seconds: 0.5 } })],
  });
  try {
    await registry.call("calc/v1", "calc/add", { a: 0, b: 0 }, ctx()); // start the process
    await new Promise((r) => setTimeout(r, 550)); // let that start's window pass
    const t0 = performance.now();
    const done: number[] = [];
    await Promise.all(
      Array.from(
        { length: 10 },
        (_, i) =>
          registry.call("calc/v1", "calc/add", { a: i, b: 1 }, ctx()).then((v) => {
            done.push(performance.now() - t0);
            return v;
          }),
      ),
    );
    done.sort((a, b) => a - b);
    // 4 now, 4 after 0.5 s, 2 after 1 s
    // lower bounds: no more than 4 per window; upper: each group fits its own window
    assertOk(done[3]! < 480, `first window: ${done.slice(0, 4).map((d) => d.toFixed(0))}`);
    assertOk(
      done[4]! >= 480 && done[7]! < 980,
      `second window: ${done.slice(4, 8).map((d) => d.toFixed(0))}`,
    );
    assertOk(done[8]! >= 980, `third window: ${done.slice(8).map((d) => d.toFixed(0))}`);
    console.log(`rate 4/0.5 s: completion times ms ${done.map((d) => d.toFixed(0)).join(" ")}`);
  } finally {
    await registry.close();
  }
});

Deno.test("calc provider: killed mid-call -> PROVIDER_UNAVAILABLE retryable; the retry runs on the restarted process", async () => {
  const registry = await registryWith({ providers: [calcEntry()] });
  try {
    const first = await registry.call("calc/v1", "calc/info", {}, ctx()) as { pid: number };
    const inFlight = registry.call("calc/v1", "calc/sleep", { seconds: 5 }, ctx());
    await new Promise((r) => setTimeout(r, 150));
    Deno.kill(first.pid, "SIGKILL");
    const t0 = performance.now();
    const err = gz(await rejects(inFlight));
    const failMs = performance.now() - t0;
    assertEquals([err.code, err.retryable], ["PROVIDER_UNAVAILABLE", true]);
    assertEquals(err.message, "calc was killed by SIGKILL");
    assertOk((err.details.stderr as string[]).some((l) => l.includes("calc provider ready")));
    // what the engine does with a retryable failure: another attempt
    const t1 = performance.now();
    let result: { pid: number } | undefined;
    for (let attempt = 1; attempt <= 3 && !result; attempt++) {
      try {
        result = await registry.call("calc/v1", "calc/info", {}, ctx()) as { pid: number };
      } catch (e) {
        if (!gz(e).retryable) throw e;
      }
    }
    const recoverMs = performance.now() - t1;
    assertOk(result, "the retry succeeded");
    assertOk(result.pid !== first.pid, "on a new process");
    assertOk(!alive(first.pid));
    console.log(
      `kill mid-call: failed after ${failMs.toFixed(0)} ms, next call served in ${
        recoverMs.toFixed(0)
      } ms by pid ${result.pid}`,
    );
    // a crash on demand, too
    const crash = gz(
      await rejects(registry.call("calc/v1", "calc/crash", { exit_code: 7 }, ctx())),
    );
    assertEquals([crash.code, crash.retryable, crash.details.exitCode], [
      "PROVIDER_UNAVAILABLE",
      true,
      7,
    ]);
    assertOk((crash.details.stderr as string[]).some((l) => l.includes("crashing on request")));
    assertEquals(await registry.call("calc/v1", "calc/add", { a: 1, b: 2 }, ctx()), 3);
    const info = registry.stats().find((s) => s.id === "calc")!.info!;
    assertEquals(info.restarts, 2);
  } finally {
    await registry.close();
  }
});

Deno.test("calc provider: two instances share 50 calls", async () => {
  const registry = await registryWith({ providers: [calcEntry({ instances: 2 })] });
  try {
    const results = await Promise.all(
      Array.from(
        { length: 50 },
        (_, i) => registry.call("calc/v1", "calc/sleep", { seconds: 0.02, value: i }, ctx()),
      ),
    ) as { pid: number; value: number }[];
    assertEquals(results.map((r) => r.value), Array.from({ length: 50 }, (_, i) => i));
    const byPid = new Map<number, number>();
    for (const r of results) byPid.set(r.pid, (byPid.get(r.pid) ?? 0) + 1);
    assertEquals(byPid.size, 2, "both processes served calls");
    const stats = registry.stats().filter((s) => s.protocol === "calc/v1");
    assertEquals(stats.map((s) => s.id).sort(), ["calc#1", "calc#2"]);
    assertEquals(stats.reduce((n, s) => n + s.calls, 0), 50 + 0);
    for (const s of stats) assertOk(s.calls >= 10, `${s.id} served ${s.calls}`);
    console.log(`two instances, 50 calls: ${stats.map((s) => `${s.id}=${s.calls}`).join(", ")}`);
  } finally {
    await registry.close();
  }
});

Deno.test("calc provider: stderr is kept for diagnosis", async () => {
  const registry = await registryWith({ providers: [calcEntry({ stderr_lines: 50 })] });
  try {
    await registry.call("calc/v1", "calc/log", { message: "hello from stderr" }, ctx());
    await new Promise((r) => setTimeout(r, 50));
    const info = registry.stats().find((s) => s.id === "calc")!.info!;
    const tail = info.stderrTail as string[];
    assertOk(tail.some((l) => l.endsWith("hello from stderr")), tail.join("\n"));
    assertOk(tail.some((l) => l.includes("calc provider ready")));
  } finally {
    await registry.close();
  }
});

Deno.test("plugin shutdown: stdin closed, then SIGTERM, then SIGKILL for a process that ignores both", async () => {
  await requirePython();
  const calc = new PluginProvider({
    id: "calc",
    protocol: "calc/v1",
    command: PYTHON,
    args: ["calc_provider.py"],
    cwd: EXAMPLES_DIR,
  });
  await calc.call("calc/add", { a: 1, b: 1 }, ctx());
  const pid = calc.pid!;
  let t0 = performance.now();
  await calc.close();
  const graceful = performance.now() - t0;
  assertOk(!alive(pid));
  // before the 2 s grace period after which SIGTERM would follow
  assertOk(graceful < 1950, `closing stdin ends calc quickly (${graceful.toFixed(0)} ms)`);
  const stubborn = new PluginProvider({
    id: "stubborn",
    protocol: "x/v1",
    command: PYTHON,
    args: [
      "-c",
      "import signal,sys,time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n" +
      "sys.stderr.write('ignoring SIGTERM\\n'); sys.stderr.flush()\nwhile True: time.sleep(1)",
    ],
    killGraceMs: 200,
  });
  assertEquals((await stubborn.health()).healthy, true); // liveness: starts it
  const spid = stubborn.pid!;
  // Only once it ignores SIGTERM (a loaded machine can take longer than a grace period to
  // start Python; SIGTERM would then end it early, and the test would measure that).
  for (let i = 0; i < 200 && !stubborn.stderrTail().some((l) => l.includes("ignoring")); i++) {
    await new Promise((r) => setTimeout(r, 25));
  }
  assertOk(stubborn.stderrTail().some((l) => l.includes("ignoring")), "the process started");
  t0 = performance.now();
  await stubborn.close();
  const forced = performance.now() - t0;
  assertOk(!alive(spid));
  assertOk(
    forced >= 380 && forced < 4000, // a loaded machine is slow to reap, never early
    `two grace periods, then SIGKILL (${forced.toFixed(0)} ms)`,
  );
  // a command that does not exist: a clear, non-retryable error
  const missing = new PluginProvider({
    id: "nope",
    protocol: "x/v1",
    command: "/nonexistent/provider",
  });
  const err = gz(await rejects(missing.call("x", {}, ctx())));
  assertEquals([err.code, err.retryable], ["PROVIDER_UNAVAILABLE", false]);
  assertOk(err.message.startsWith("nope: cannot start `/nonexistent/provider`"), err.message);
});

Deno.test("a stdio provider that writes lines that answer nothing: the call's timeout says so, with the last of them and a hint", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gleitzeit-strays-" });
  try {
    await Deno.writeTextFile(
      `${dir}/chatty.py`,
      "import sys\nfor line in sys.stdin:\n    print('handling', line.strip()[:20], flush=True)\n",
    );
    // the first call: a log line, then its answer; the second: nothing at all
    await Deno.writeTextFile(
      `${dir}/once.py`,
      "import sys, json\nfor n, line in enumerate(sys.stdin):\n    if n == 0:\n" +
        "        print('a log line of call one', flush=True)\n" +
        "        print(json.dumps({'jsonrpc': '2.0', 'id': json.loads(line)['id'], " +
        "'result': 1}), flush=True)\n",
    );
    const registry = await registryWith({
      providers: [{
        id: "chatty",
        protocol: "chatty/v1",
        command: PYTHON,
        args: ["-u", `${dir}/chatty.py`],
        methods: [{ name: "chatty/go", params: { type: "object" } }],
        timeout_ms: 800,
      }, {
        id: "once",
        protocol: "once/v1",
        command: PYTHON,
        args: ["-u", `${dir}/once.py`],
        methods: [{ name: "once/go", params: { type: "object" } }],
        timeout_ms: 800,
      }],
    });
    try {
      const e = await rejects(registry.call("chatty/v1", "chatty/go", {}, ctx())) as GleitzeitError;
      assertEquals(e.code, "PROVIDER_TIMEOUT");
      assertOk(
        e.message.includes("1 line(s) that answer nothing, the last: stdout: handling"),
        e.message,
      );
      assertOk(e.hint?.includes("logs go to stderr"), e.hint);
      // a silent timeout does not blame what an earlier call wrote
      assertEquals(await registry.call("once/v1", "once/go", {}, ctx()), 1);
      const silent = await rejects(
        registry.call("once/v1", "once/go", {}, ctx()),
      ) as GleitzeitError;
      assertEquals(silent.code, "PROVIDER_TIMEOUT");
      assertOk(!silent.message.includes("answer nothing"), silent.message);
    } finally {
      await registry.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a stdio provider without a health method whose command fails at its start is unhealthy, not healthy", async () => {
  const registry = await registryWith({
    providers: [{
      id: "late",
      protocol: "late/v1",
      command: PYTHON,
      args: ["-u", "there-is-no-such-script.py"],
      methods: [{ name: "late/go", params: { type: "object" } }],
    }],
  });
  try {
    const report = (await registry.health("late"))[0]?.report;
    assertEquals(report?.healthy, false, JSON.stringify(report));
    assertOk(/late exited with code \d+ at its start/.test(report?.message ?? ""), report?.message);
  } finally {
    await registry.close();
  }
});
