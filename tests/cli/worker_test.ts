/**
 * `gleitzeit worker` (SPEC section 9): real worker processes sharing the real Redis on
 * 127.0.0.1:6379 (a prefix per test), runs submitted with `--detach`, workers killed with SIGKILL.
 */

import { assert, assertEquals, assertStringIncludes } from "../assert.ts";
import { deadPort, startTestServer, stopTestServer } from "../providers/ollama/test_server.ts";
import { detachTask, gleitzeit, scratch, spawnGleitzeit, writeWorkflow } from "./helpers.ts";
import {
  type Cluster,
  cluster,
  logged,
  readyWorker,
  resultsOf,
  sleepTask,
  sleepTasks,
  startWorker,
  status,
  submit,
  submitTasks,
  teardown,
  waitFor,
  waitLogged,
  waitReady,
  waitRunEnd,
  withCluster,
  type WorkerProcess,
} from "./worker_cluster.ts";

Deno.test("workers share a detached run's tasks; results flow; SIGTERM stops them cleanly", () =>
  withCluster(async (c) => {
    const [w1, w2] = [startWorker(c, "--concurrency", "1"), startWorker(c, "--concurrency", "1")];
    await Promise.all([waitReady(w1!), waitReady(w2!)]);
    const file = await writeWorkflow(
      c.dir,
      "fan.yaml",
      "name: fan\ntasks:\n" + sleepTask("a", 0.4, 1) + sleepTask("b", 0.4, 2) +
        sleepTask("c", 0.4, 3) + sleepTask("d", 0.4, 4) +
        '  - id: total\n    method: python/execute\n    params:\n      code: "result = sum(xs)"\n' +
        '      context: {xs: ["${a.result}", "${b.result}", "${c.result}", "${d.result}"]}\n',
    );
    const sys = await gleitzeit(["--json", "system", "status"], { env: c.env, cwd: c.dir });
    assertEquals(sys.code, 0, sys.stderr);
    assertEquals(JSON.parse(sys.stdout).workers.length, 2, sys.stdout);
    for (const w of JSON.parse(sys.stdout).workers) assertEquals(w.concurrency, 1, sys.stdout);
    const human = await gleitzeit(["system", "status"], { env: c.env, cwd: c.dir });
    assertStringIncludes(human.stdout, "workers: 2 (2 tasks at once in all)");
    assertStringIncludes(human.stdout, ": 0 of 1 task, 0 of 16 runs");
    const runId = await submit(c, file);
    const report = await waitRunEnd(c, runId);
    assertEquals(report.state, "completed", JSON.stringify(report));
    const tasks = report.tasks as { id: string; attempts: number; result: { result: unknown } }[];
    assertEquals(tasks.find((t) => t.id === "total")?.result.result, 10);
    // One task at a time each: four parallel tasks can only finish if both workers took some.
    const executed = [w1!, w2!].map((w) => w.log.filter((l) => l.includes("executing ")).length);
    assert(executed.every((n) => n > 0), `both workers executed tasks: ${executed}`);
    assertEquals(executed[0]! + executed[1]!, 5);
    w1!.child.kill("SIGTERM");
    w2!.child.kill("SIGTERM");
    assertEquals((await w1!.child.status).code, 0);
    assertEquals((await w2!.child.status).code, 0);
  }));

Deno.test("a worker says when Python tasks run with a weaker sandbox than bubblewrap: at start, and on each such attempt", () =>
  withCluster(async (c) => {
    const w = await readyWorker(c, "--sandbox", "none", "--concurrency", "1");
    assert(
      logged(w, "warning: Python tasks run with sandbox 'none' (chosen by --sandbox)"),
      w.log.join("\n"),
    );
    const runId = await submitTasks(
      c,
      "weaker",
      '  - id: plain\n    method: python/execute\n    params: {code: "result = 1"}\n' +
        '  - id: own\n    method: python/execute\n    params: {code: "result = 2"}\n' +
        "    sandbox: basic\n" +
        '  - id: boxed\n    method: python/execute\n    params: {code: "result = 3"}\n' +
        "    sandbox: bwrap\n",
    );
    const report = await waitRunEnd(c, runId);
    assertEquals(report.state, "completed", JSON.stringify(report));
    const executing = (id: string) => w.log.find((l) => l.includes(`executing ${runId}/${id}`));
    assertStringIncludes(
      executing("plain") ?? "",
      "warning: sandbox 'none' (chosen by this worker's --sandbox): weaker isolation",
    );
    assertStringIncludes(
      executing("own") ?? "",
      "warning: sandbox 'basic' (chosen by the task): weaker isolation than bubblewrap" +
        (Deno.uid() === 0 ? ", and as root" : ""),
    );
    assert(executing("boxed") !== undefined, w.log.join("\n"));
    assert(!executing("boxed")!.includes("warning"), executing("boxed"));
  }));

Deno.test("task result --wait on a run workers execute outlasts the worker's stop: a worker started later ends it", () =>
  withCluster(async (c) => {
    const first = await readyWorker(c, "--concurrency", "1", "--lease", "30s");
    const d = await gleitzeit([
      "--json",
      "task",
      "submit",
      "python/execute",
      "--code",
      "import time; time.sleep(1.5); result = 5",
      "--detach",
    ], { env: c.env, cwd: c.dir });
    assertEquals(d.code, 0, d.stderr);
    const { run_id: runId, task_id: taskId } = JSON.parse(d.stdout);
    const waiting = spawnGleitzeit(["task", "result", taskId, "--wait"], {
      env: c.env,
      cwd: c.dir,
    });
    await waitLogged(first, "executing ", "the worker to start the task");
    first.child.kill("SIGTERM");
    assertEquals((await first.child.status).code, 0);
    // the run is nobody's now, for a moment: the wait goes on
    await new Promise((r) => setTimeout(r, 1500));
    await readyWorker(c, "--concurrency", "1", "--lease", "30s");
    const waited = await waiting.output();
    const text = new TextDecoder();
    assertEquals(waited.code, 0, text.decode(waited.stderr));
    assertEquals(JSON.parse(text.decode(waited.stdout)).result, 5);
    // (it may have said meanwhile that nothing executed the run: only then, and of this run)
    const told = text.decode(waited.stderr).trim();
    assert(told === "" || told.includes(`run ${runId}`), told);
  }));

Deno.test("task submit --depends-on ... --detach on Redis: both queued at once; a worker runs the dependent once its dependency completed, with its result", () =>
  withCluster(async (c) => {
    const detach = (...args: string[]) => detachTask({ env: c.env, cwd: c.dir }, ...args);
    // both queued before a worker starts: the dependent waits, holding no slot, for the other
    const a = await detach("python/execute", "--code", "import time; time.sleep(1); result = 6");
    const b = await detach(
      "python/execute",
      "--depends-on",
      a.task_id,
      "--code",
      `result = \${${a.task_id}.result} * 7`,
    );
    const w = await readyWorker(c, "--concurrency", "2");
    const report = await waitRunEnd(c, b.run_id);
    assertEquals(report.state, "completed", JSON.stringify(report));
    const tasks = report.tasks as { id: string; result: { result: unknown } }[];
    assertEquals(tasks[0]?.result.result, 42);
    // what it waited for, in the log of the worker that coordinated it
    assert(logged(w, `${b.run_id}/task waits for ${a.task_id}`), w.log.join("\n"));
  }));

Deno.test("on a worker too, a task's timeout does not count its wait for a provider's free place there: one Ollama slot, three 1 s tasks with timeout 2.5 s all finish", () =>
  withCluster(async (c) => {
    // (a server of its own: the shared one's slot may be busy with other tests' requests,
    // a wait on the server that counts, as it should)
    const port = await deadPort();
    const url = await startTestServer(port);
    try {
      const config = `${c.dir}/config.yaml`;
      await Deno.writeTextFile(
        config,
        `${await Deno.readTextFile(config)}ollama:\n  max_concurrent: 1\n`,
      );
      await readyWorker(
        { ...c, env: { ...c.env, GLEITZEIT_OLLAMA_URL: url } },
        "--concurrency",
        "3",
      );
      const ask = (id: string) =>
        `  - id: ${id}\n    method: llm/chat\n    timeout: 2.5\n` +
        '    params: {model: "fault-slow:1s", max_tokens: 4, messages: [{role: user, content: ping}]}\n';
      const runId = await submitTasks(c, "three", ask("a") + ask("b") + ask("c"));
      const report = await waitRunEnd(c, runId);
      assertEquals(report.state, "completed", JSON.stringify(report));
    } finally {
      await stopTestServer(port);
    }
  }));

Deno.test("a worker whose --max-runs are all runs waiting for another run's task still takes that run over (no deadlock)", () =>
  withCluster(async (c) => {
    const first = await readyWorker(c, "--max-runs", "1", "--lease", "3s");
    const a = await detachTask(
      { env: c.env, cwd: c.dir },
      "python/execute",
      "--code",
      "import time; time.sleep(2); result = 6",
    );
    await waitLogged(first, `coordinating run ${a.run_id}`, "the first run to be coordinated");
    const b = await detachTask(
      { env: c.env, cwd: c.dir },
      "python/execute",
      "--depends-on",
      a.task_id,
      "--code",
      `result = \${${a.task_id}.result} * 7`,
    );
    first.child.kill("SIGTERM");
    assertEquals((await first.child.status).code, 0);
    // its one run slot goes to the waiting run (read first); the run it waits for, handed
    // over, is taken over all the same
    const second = await readyWorker(c, "--max-runs", "1", "--lease", "3s");
    const report = await waitRunEnd(c, b.run_id);
    assertEquals(report.state, "completed", JSON.stringify(report));
    assertEquals((report.tasks as { result: { result: unknown } }[])[0]?.result.result, 42);
    assert(logged(second, `taking over run ${a.run_id}`), second.log.join("\n"));
  }));

Deno.test("a worker killed mid-task loses nothing: its attempt ends interrupted and another runs", () =>
  withCluster(async (c) => {
    // The coordinator executes one task at a time; the other worker takes the other task and
    // is the victim. Which of the two coordinates is up to Redis: the test asks the logs.
    const workers = [
      await readyWorker(c, "--concurrency", "1"),
      await readyWorker(c, "--concurrency", "1"),
    ];
    const runId = await submitTasks(c, "pair", sleepTask("one", 1.5, 1) + sleepTask("two", 1.5, 2));
    const coordinating = `coordinating run ${runId}`;
    await waitFor(
      "a worker to coordinate the run",
      () => workers.some((w) => logged(w, coordinating)),
    );
    const [coordinator, victim] = logged(workers[0]!, coordinating) ? workers : workers.reverse();
    await waitLogged(victim!, "executing ", "the victim to start a task");
    const taken = victim.log.find((l) => l.includes("executing "))!;
    const taskId = /\/(\w+) attempt/.exec(taken)![1]!;
    const killedAt = Date.now();
    victim.child.kill("SIGKILL");
    await victim.child.status;
    const rescuer = startWorker(c, "--concurrency", "1");
    const report = await waitRunEnd(c, runId);
    assertEquals(report.state, "completed", JSON.stringify(report));
    const tasks = report.tasks as {
      id: string;
      task_id: string;
      attempts: number;
      state: string;
    }[];
    const task = tasks.find((t) => t.id === taskId)!;
    assertEquals(task.state, "completed");
    // on record as it happened: the first attempt died with its worker, a second one ran
    // (the task runs once by default: a lost worker is not the task's failure)
    assertEquals(task.attempts, 2, JSON.stringify(task));
    const shown = await gleitzeit(["--json", "task", "status", task.task_id], {
      env: c.env,
      cwd: c.dir,
    });
    assertEquals(shown.code, 0, shown.stderr);
    const history = JSON.parse(shown.stdout).attempt_history as {
      attempt: number;
      state: string;
      started_at: string;
      finished_at: string;
      error: { code: string; message: string } | null;
    }[];
    assertEquals(history.map((a) => [a.attempt, a.state]), [[1, "interrupted"], [2, "completed"]]);
    assertEquals(history[0]!.error?.code, "LEASE_EXPIRED");
    assertStringIncludes(history[0]!.error!.message, "died while executing");
    // it ended with its worker's last sign of life (or as it began, when the coordinator heard
    // of that only after the kill), not when another worker found it, a lease later
    const ended = Date.parse(history[0]!.finished_at);
    assert(
      ended <= Math.max(killedAt, Date.parse(history[0]!.started_at)),
      JSON.stringify(history[0]),
    );
    const victimId = /lost with worker (\S+):/.exec(
      [...rescuer.log, ...coordinator.log].find((l) => l.includes(`lost with worker`)) ?? "",
    );
    assert(
      victimId !== null && history[0]!.error!.message.includes(victimId[1]!),
      `a live worker reported the lost attempt:\n${rescuer.log.join("\n")}\n${
        coordinator.log.join("\n")
      }`,
    );
    // each attempt names the worker that executed it
    const executors = (JSON.parse(shown.stdout).attempt_history as { executor: string }[])
      .map((a) => a.executor);
    assertEquals(executors[0], victimId![1]);
    assert(
      executors[1] !== victimId![1] && /^vm:|:/.test(executors[1] ?? ""),
      JSON.stringify(executors),
    );
    // and `system status` no longer lists it among the live workers (its lease key is gone)
    const sys = await gleitzeit(["--json", "system", "status"], { env: c.env, cwd: c.dir });
    const live = (JSON.parse(sys.stdout).workers as { owner: string }[]).map((w) => w.owner);
    assert(!live.includes(victimId![1]!) && live.length === 2, JSON.stringify(live));
    const byId = resultsOf(await status(c, runId));
    assertEquals(byId.one, 1);
    assertEquals(byId.two, 2);
  }));

Deno.test("a dead worker's attempt is answered as lost by a worker whose slots are all busy (no false timeout)", () =>
  withCluster(async (c) => {
    const workers = [
      await readyWorker(c, "--concurrency", "1"),
      await readyWorker(c, "--concurrency", "1"),
    ];
    const task = (id: string, value: number) =>
      `  - id: ${id}\n    method: python/execute\n    timeout: 7\n` +
      `    params: {code: "import time; time.sleep(5); result = ${value}"}\n`;
    const runId = await submitTasks(c, "busy", task("one", 1) + task("two", 2));
    const coordinating = `coordinating run ${runId}`;
    await waitFor("a coordinator", () => workers.some((w) => logged(w, coordinating)));
    const [busy, victim] = logged(workers[0]!, coordinating) ? workers : workers.reverse();
    await waitLogged(victim!, "executing ", "the victim to start its task");
    await waitLogged(busy!, "executing ", "the other worker to start its task");
    victim!.child.kill("SIGKILL");
    await victim!.child.status;
    // the busy worker (its one slot taken) answers the dead worker's attempt as lost at once
    await waitLogged(busy!, "lost with worker", "the lost attempt to be answered", 15_000);
    const lostAt = busy!.log.findIndex((l) => l.includes("lost with worker"));
    const ownDone = busy!.log.findIndex((l) => /completed \S+ attempt 1/.test(l));
    assert(ownDone === -1 || lostAt < ownDone, busy!.log.join("\n"));
    const report = await waitRunEnd(c, runId);
    assertEquals(report.state, "completed", JSON.stringify(report));
    assertEquals(resultsOf(report), { one: 1, two: 2 });
  }));

Deno.test("a worker stopped with SIGTERM mid-task answers its attempt as stopped: interrupted, and run again elsewhere at once", () =>
  withCluster(async (c) => {
    const workers = [
      await readyWorker(c, "--concurrency", "1", "--lease", "30s"),
      await readyWorker(c, "--concurrency", "1", "--lease", "30s"),
    ];
    const runId = await submitTasks(c, "pair", sleepTask("one", 3, 1) + sleepTask("two", 3, 2));
    const coordinating = `coordinating run ${runId}`;
    await waitFor(
      "a worker to coordinate the run",
      () => workers.some((w) => logged(w, coordinating)),
    );
    const [coordinator, stopped] = logged(workers[0]!, coordinating) ? workers : workers.reverse();
    await waitLogged(stopped!, "executing ", "the other worker to start a task");
    const taskId = /\/(\w+) attempt/.exec(stopped!.log.find((l) => l.includes("executing "))!)![1]!;
    const at = Date.now();
    stopped!.child.kill("SIGTERM");
    assertEquals((await stopped!.child.status).code, 0);
    const report = await waitRunEnd(c, runId);
    assertEquals(report.state, "completed", JSON.stringify(report));
    // not after the 30 s lease: the stopped worker said so itself
    assert(Date.now() - at < 25_000, "sent again at once");
    const task = (report.tasks as { id: string; task_id: string; attempts: number }[])
      .find((t) => t.id === taskId)!;
    assertEquals(task.attempts, 2, JSON.stringify(task));
    const shown = await gleitzeit(["--json", "task", "status", task.task_id], {
      env: c.env,
      cwd: c.dir,
    });
    const history = JSON.parse(shown.stdout).attempt_history as {
      state: string;
      error: { message: string; details?: { stopped?: boolean } } | null;
    }[];
    assertEquals(history.map((a) => a.state), ["interrupted", "completed"]);
    assertStringIncludes(history[0]!.error!.message, "was stopped (SIGTERM)");
    assertEquals(history[0]!.error!.details?.stopped, true);
    assert(!logged(coordinator!, "lost with worker"), coordinator!.log.join("\n"));
    assertEquals(resultsOf(report), { one: 1, two: 2 });
  }));

Deno.test("a coordinating worker killed mid-run: another machine's worker resumes the run", () =>
  withCluster(async (c) => {
    // Another host name: its death is seen through the stale heartbeat, not a pid check.
    const first = await readyWorker(c, "@machine-b", "--concurrency", "1");
    const runId = await submitTasks(
      c,
      "chain",
      sleepTask("quick", 0, 1) +
        // (long enough to be seen running by `workflow status`, which takes seconds on a
        // loaded machine)
        '  - id: slow\n    method: python/execute\n    params:\n      code: "import time; time.sleep(6); result = x + 1"\n      context: {x: "${quick.result}"}\n',
    );
    await waitLogged(first, `executing ${runId}/slow`, "the slow task to start");
    const slowState = async () =>
      ((await status(c, runId)).tasks as { id: string; state: string }[])
        .find((t) => t.id === "slow")!.state;
    // and on record as begun (within milliseconds of the notice)
    await waitFor("the slow task to be recorded", async () => await slowState() === "running");
    first.child.kill("SIGKILL");
    await first.child.status;
    // no worker is live: nothing can be executing it, and it shows so, like its run
    await waitFor("the run to show interrupted", async () => {
      const shown = await status(c, runId);
      return shown.state === "interrupted";
    });
    assertEquals(await slowState(), "interrupted");
    const second = startWorker(c, "--concurrency", "2");
    const report = await waitRunEnd(c, runId);
    assertEquals(report.state, "completed", JSON.stringify(report));
    const tasks = report.tasks as { id: string; attempts: number }[];
    assertEquals(tasks.find((t) => t.id === "quick")?.attempts, 1, "not run again");
    assertEquals(tasks.find((t) => t.id === "slow")?.attempts, 2, "run again as a new attempt");
    assertEquals(resultsOf(report).slow, 2);
    assert(logged(second, `taking over run ${runId}`), second.log.join("\n"));
    assert(logged(first, "worker machine-b:"), first.log.join("\n"));
  }));

Deno.test("attempts queued by a coordinator that died are dropped, not executed for nothing", () =>
  withCluster(async (c) => {
    const first = await readyWorker(c, "--concurrency", "1");
    const runId = await submitTasks(c, "three", sleepTasks(["a", "b", "c"], 2));
    // one attempt running on the coordinator, two waiting in the stream
    await waitLogged(first, `executing ${runId}/`, "a task to start");
    first.child.kill("SIGKILL");
    await first.child.status;
    const second = startWorker(c, "--concurrency", "3");
    const report = await waitRunEnd(c, runId);
    assertEquals(report.state, "completed", JSON.stringify(report));
    assertEquals(resultsOf(report), { a: 1, b: 2, c: 3 });
    const ran = second.log.filter((l) =>
      l.includes(`executing ${runId}/`) || l.includes(`took over ${runId}/`)
    );
    assertEquals(
      ran.length,
      3,
      `only the new coordinator's attempts run:\n${second.log.join("\n")}`,
    );
    assert(logged(second, "dropped"), second.log.join("\n"));
  }));

Deno.test("SIGTERM to the coordinating worker leaves its run to the others, unharmed", () =>
  withCluster(async (c) => {
    const first = await readyWorker(c, "--concurrency", "2");
    const runId = await submitTasks(c, "four", sleepTasks(["a", "b", "c", "d"], 3));
    await waitLogged(first, `coordinating run ${runId}`, "the run to be coordinated");
    const second = await readyWorker(c, "--concurrency", "2");
    first.child.kill("SIGTERM");
    assertEquals((await first.child.status).code, 0);
    const report = await waitRunEnd(c, runId);
    assertEquals(report.state, "completed", JSON.stringify(report));
    assertEquals(resultsOf(report), { a: 1, b: 2, c: 3, d: 4 });
    assert(logged(second, `taking over run ${runId}`), second.log.join("\n"));
  }));

Deno.test("a worker started after the only one was stopped (SIGTERM) takes its run over within a second or so of its start, not a third of its lease later", () =>
  withCluster(async (c) => {
    const first = await readyWorker(c, "--concurrency", "1", "--lease", "90s");
    const runId = await submitTasks(c, "one", sleepTask("a", 1, 1));
    await waitLogged(first, `coordinating run ${runId}`, "the run to be coordinated");
    first.child.kill("SIGTERM");
    assertEquals((await first.child.status).code, 0);
    const second = await readyWorker(c, "--concurrency", "1", "--lease", "90s");
    // a third of its lease is 30 s: the first look comes at once, the second once an entry
    // handed over just before can be taken (1 s idle); bound generous for a busy machine, far
    // below 30 s
    await waitLogged(second, `taking over run ${runId}`, "the takeover", 15_000);
    const report = await waitRunEnd(c, runId);
    assertEquals(report.state, "completed", JSON.stringify(report));
    assertEquals(resultsOf(report), { a: 1 });
  }));

Deno.test("`workflow cancel` reaches the worker coordinating the run", () =>
  withCluster(async (c) => {
    const w = await readyWorker(c);
    const runId = await submitTasks(c, "long", sleepTask("nap", 30, 1));
    await waitLogged(w, `executing ${runId}/nap`, "the task to start");
    const r = await gleitzeit(["workflow", "cancel", runId], { env: c.env, cwd: c.dir });
    assertEquals(r.code, 0, r.stderr);
    assertStringIncludes(r.stdout + r.stderr, "asked worker");
    const report = await waitRunEnd(c, runId);
    assertEquals(report.state, "cancelled");
    assert(logged(w, `cancelling run ${runId}`), w.log.join("\n"));
    await waitLogged(w, `cancelled ${runId}/nap attempt 1`, "the attempt to be logged cancelled");
  }));

Deno.test("`workflow cancel` of a run whose coordinator just died: nothing of it starts again", () =>
  withCluster(async (c) => {
    const first = await readyWorker(c, "@machine-b", "--lease", "4s", "--concurrency", "1");
    const runId = await submitTasks(c, "two", sleepTask("a", 3, 1) + sleepTask("b", 3, 2));
    await waitLogged(first, `executing ${runId}/a`, "a to start");
    first.child.kill("SIGKILL");
    await first.child.status;
    // within its lease: the cancel cannot tell it is dead, and leaves the word for its successor
    const r = await gleitzeit(["workflow", "cancel", runId], { env: c.env, cwd: c.dir });
    assertEquals(r.code, 0, r.stderr);
    const second = startWorker(c, "--concurrency", "2");
    const report = await waitRunEnd(c, runId);
    assertEquals(report.state, "cancelled", JSON.stringify(report));
    await waitLogged(second, `taking over run ${runId}`, "the takeover");
    assert(
      !second.log.some((l) => l.includes(`executing ${runId}/`)),
      `nothing started again:\n${second.log.join("\n")}`,
    );
    const tasks = report.tasks as { id: string; state: string }[];
    assertEquals(tasks.map((t) => t.state), ["cancelled", "cancelled"], JSON.stringify(tasks));
  }));

Deno.test("`workflow cancel` of a run whose coordinator died a lease ago: cancelled at once", () =>
  withCluster(async (c) => {
    const first = await readyWorker(c, "@machine-b", "--lease", "1s", "--concurrency", "1");
    const runId = await submitTasks(c, "two", sleepTask("a", 3, 1) + sleepTask("b", 3, 2));
    await waitLogged(first, `executing ${runId}/a`, "a to start");
    first.child.kill("SIGKILL");
    await first.child.status;
    await new Promise((r) => setTimeout(r, 1500)); // its lease key is gone; its heartbeat is not old
    const r = await gleitzeit(["workflow", "cancel", runId], { env: c.env, cwd: c.dir });
    assertEquals(r.code, 0, r.stderr);
    assertStringIncludes(r.stdout, `cancelled run ${runId}`);
    assertEquals((await status(c, runId)).state, "cancelled");
  }));

Deno.test("a task's timeout stops the attempt on the worker executing it, lease or not", () =>
  withCluster(async (c) => {
    const w = await readyWorker(c, "--lease", "60s"); // the later --lease wins
    const started = Date.now();
    const runId = await submitTasks(
      c,
      "slow",
      "  - id: nap\n    method: python/execute\n    timeout: 1\n" +
        '    params: {code: "import time; time.sleep(60)"}\n',
    );
    const report = await waitRunEnd(c, runId);
    assertEquals(report.state, "failed");
    const nap = (report.tasks as { id: string; error: { code: string } }[])[0]!;
    assertEquals(nap.error.code, "TASK_TIMEOUT");
    await waitLogged(
      w,
      `cancelled ${runId}/nap attempt 1`,
      "the worker to stop the attempt",
      30_000,
    );
    // (submitting and starting a cold sandbox count too: slow on a loaded machine)
    assert(Date.now() - started < 30_000, "stopped long before the 60 s lease");
  }));

Deno.test("a task waiting for a free worker is queued, not running, and its timeout counts from when a worker begins it", () =>
  withCluster(async (c) => {
    await readyWorker(c, "--concurrency", "1");
    // one worker, one task at a time: the second waits for the first (longer than its own
    // timeout would allow, counted from the dispatch)
    const runId = await submitTasks(
      c,
      "inline",
      ["first", "second"].map((id, i) =>
        `  - id: ${id}\n    method: python/execute\n    timeout: 4\n` +
        `    params: {code: "import time; time.sleep(2.5); result = ${i + 1}"}\n`
      ).join(""),
    );
    type Task = { id: string; state: string; attempts: number; duration_ms: number | null };
    let seen: Task[] = [];
    await waitFor("one task to run while the other waits", async () => {
      seen = (await status(c, runId)).tasks as Task[];
      return seen.some((t) => t.state === "running");
    });
    assertEquals(seen.map((t) => t.state).sort(), ["queued", "running"], JSON.stringify(seen));
    assertEquals(seen.find((t) => t.state === "queued")!.attempts, 0);
    const report = await waitRunEnd(c, runId);
    assertEquals(report.state, "completed", JSON.stringify(report));
    const tasks = report.tasks as Task[];
    assertEquals(resultsOf(report), { first: 1, second: 2 });
    for (const t of tasks) {
      assertEquals(t.attempts, 1);
      // its own 2.5 s, not the other's too
      assert(t.duration_ms !== null && t.duration_ms < 4000, JSON.stringify(t));
    }
  }));

Deno.test("a task that fails for want of something on its worker (a model) names that worker", () =>
  withCluster(async (c) => {
    // (a worker whose Ollama is not there takes no LLM tasks at all: worker_health_test.ts)
    const url = await startTestServer();
    const w = await readyWorker({ ...c, env: { ...c.env, GLEITZEIT_OLLAMA_URL: url } });
    assert(logged(w, "warning: a lease of 1s: a worker held up that long"), w.log.join("\n"));
    const runId = await submitTasks(
      c,
      "ask",
      "  - id: ask\n    method: llm/chat\n" +
        '    params: {model: nosuch-model, messages: [{role: user, content: "hi"}]}\n',
    );
    const report = await waitRunEnd(c, runId);
    assertEquals(report.state, "failed");
    const ask =
      (report.tasks as { error: { code: string; message: string; details: { worker: string } } }[])[
        0
      ]!;
    assertEquals(ask.error.code, "MODEL_NOT_FOUND");
    const owner = /worker (\S+) on /.exec(w.log.find((l) => l.includes(" at once, lease "))!)![1]!;
    assertStringIncludes(ask.error.message, `(on worker ${owner})`);
    assertEquals(ask.error.details.worker, owner);
  }));

Deno.test("a run a live worker coordinates never lists as interrupted (long lease)", () =>
  withCluster(async (c) => {
    await readyWorker(c, "--lease", "60s");
    // Longer than the 6 s after which a silent owner's run lists as interrupted.
    const runId = await submitTasks(c, "long", sleepTask("nap", 7.5, 1));
    const seen = new Set<string>();
    let runningText = "";
    let busy = false; // `system status` showed the worker's load while it ran
    let report: Record<string, unknown> = {};
    await waitFor(`run ${runId} to end`, async () => {
      const r = await gleitzeit(["--json", "workflow", "list", "--limit", "5"], {
        env: c.env,
        cwd: c.dir,
      });
      const run = (JSON.parse(r.stdout) as { run_id?: string; id?: string; state: string }[])
        .find((x) => (x.run_id ?? x.id) === runId);
      if (run) seen.add(run.state);
      if (run?.state === "running" && !busy) {
        const sys = await gleitzeit(["--json", "system", "status"], { env: c.env, cwd: c.dir });
        const workers = JSON.parse(sys.stdout).workers as { tasks: number; runs: number }[];
        busy = workers.length === 1 && workers[0]!.tasks === 1 && workers[0]!.runs === 1;
      }
      if (run?.state === "running" && !runningText) {
        runningText = (await gleitzeit(["workflow", "status", runId], { env: c.env, cwd: c.dir }))
          .stdout;
      }
      report = await status(c, runId);
      return report.state === "completed";
    }, 30_000);
    assert(!seen.has("interrupted"), `states seen: ${[...seen]}`);
    assert(seen.has("running"), `states seen: ${[...seen]}`);
    assertStringIncludes(runningText, `▶ run ${runId} running for `);
    assert(busy, "system status showed the worker with 1 task and 1 run");
  }));

Deno.test("Redis restarted empty: the worker reconnects and goes on; gone for good: exit 3", async () => {
  const port = 20000 + Math.floor(Math.random() * 20000);
  const startRedis = () =>
    new Deno.Command("redis-server", {
      args: ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
      stdout: "null",
      stderr: "null",
    }).spawn();
  const redisUp = () =>
    waitFor("the private Redis", async () => {
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port })).close();
        return true;
      } catch {
        return false;
      }
    });
  let redis = startRedis();
  const c = await cluster();
  try {
    await redisUp();
    c.env.GLEITZEIT_REDIS_URL = `redis://127.0.0.1:${port}`;
    const w = await readyWorker(c, "--give-up-after", "8s");
    // Down for 3 s, back without its data (no persistence): groups and all are gone.
    redis.kill("SIGKILL");
    await redis.status;
    await new Promise((r) => setTimeout(r, 3000));
    redis = startRedis();
    await redisUp();
    const runId = await submitTasks(c, "after", sleepTask("a", 0, 7));
    const report = await waitRunEnd(c, runId);
    assertEquals(report.state, "completed", `${JSON.stringify(report)}\n${w.log.join("\n")}`);
    assertEquals(resultsOf(report).a, 7);
    // Now for good.
    redis.kill("SIGKILL");
    await redis.status;
    const status = await Promise.race([
      w.child.status,
      new Promise<null>((r) => setTimeout(() => r(null), 30_000)),
    ]);
    assert(status !== null, "the worker did not stop");
    assertEquals(status.code, 3);
    await w.done;
    const errors = w.log.filter((l) => l.startsWith("error: "));
    assertEquals(
      errors.at(-1),
      `error: Redis at redis://127.0.0.1:${port} has not answered for 8s: the worker stopped`,
    );
    assertStringIncludes(w.log.at(-1)!, "hint: check that Redis is up");
  } finally {
    try {
      redis.kill("SIGKILL");
    } catch {
      // already gone
    }
    await redis.status;
    await teardown(c);
  }
});

Deno.test("`gleitzeit worker` without Redis: one clear error", async () => {
  const { dir, env } = await scratch();
  try {
    const r = await gleitzeit(["worker"], { env, cwd: dir });
    assertEquals(r.code, 2);
    assertStringIncludes(r.stderr, "workers share their work through Redis");
    assertStringIncludes(r.stderr, "hint: start workers with `--backend redis`");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a coordinator stopped while another took its run over leaves the run to it, and to a later one", () =>
  withCluster(async (c) => {
    const first = await readyWorker(c, "--concurrency", "2");
    const runId = await submitTasks(
      c,
      "paused",
      sleepTask("a", 0.2, 1) +
        `  - id: b\n    method: python/execute\n    dependencies: [a]\n` +
        `    params: {code: "import time; time.sleep(3); result = 2"}\n` +
        `  - {id: c, method: echo, protocol: echo/v1, dependencies: [b], params: {x: 3}}\n`,
    );
    await waitLogged(first, `coordinating run ${runId}`, "the first worker to coordinate");
    await waitLogged(first, "/b attempt", "task b to start");
    first.child.kill("SIGSTOP"); // Ctrl-Z, a debugger, a paused VM
    const second = startWorker(c, "--concurrency", "2");
    await waitLogged(second, `taking over run ${runId}`, "the second worker to take over");
    first.child.kill("SIGCONT");
    await waitFor(
      "the first worker to end its part",
      () =>
        logged(first, "is no longer this process's") || logged(first, `run ${runId} interrupted`),
    );
    // The second goes too: the run's entry in the queue of runs must still be there for a third
    second.child.kill("SIGKILL");
    await second.child.status;
    const third = startWorker(c, "--concurrency", "2");
    const report = await waitRunEnd(c, runId);
    assertEquals(report.state, "completed", JSON.stringify(report));
    assert(logged(first, "is no longer this process's"), first.log.join("\n"));
    // (the first, alive again, may be the one that takes it over after the second's end)
    assert(
      logged(third, `taking over run ${runId}`) || logged(first, `taking over run ${runId}`),
      [...first.log, ...third.log].join("\n"),
    );
  }));

Deno.test("a worker with a short lease leaves a live worker's run and task alone (each worker is judged by its own lease)", () =>
  withCluster(async (c) => {
    // It touches what it holds every 10 s; the other would call 1 s of that silence dead.
    const patient = await readyWorker(c, "--lease", "30s", "--concurrency", "2");
    const runId = await submitTasks(c, "patient", sleepTask("nap", 4, 1));
    await waitLogged(patient, `executing ${runId}/nap`, "the task to start");
    const eager = await readyWorker(c); // --lease 1s: it looks every third of a second
    const report = await waitRunEnd(c, runId);
    assertEquals(report.state, "completed", JSON.stringify(report));
    const tasks = report.tasks as { id: string; attempts: number }[];
    assertEquals(tasks.find((t) => t.id === "nap")?.attempts, 1);
    assertEquals(resultsOf(report).nap, 1);
    assert(
      !eager.log.some((l) => l.includes(runId)),
      `the short-lease worker took nothing of the run over:\n${eager.log.join("\n")}`,
    );
    assert(logged(patient, `run ${runId} completed`), patient.log.join("\n"));
  }));

Deno.test("a coordinator with a long lease killed on another machine: its run is taken over once its lease key is gone, its queued attempts dropped, not run", () =>
  withCluster(async (c) => {
    const first = await readyWorker(c, "@machine-b", "--lease", "6s", "--concurrency", "4");
    const runId = await submitTasks(c, "wide", sleepTasks(["a", "b", "c"], 5));
    for (const id of ["a", "b", "c"]) {
      await waitLogged(first, `executing ${runId}/${id}`, `task ${id} to start`);
    }
    // and on record as begun (within milliseconds of the notices)
    await waitFor(
      "the attempts to be recorded",
      async () =>
        ((await status(c, runId)).tasks as { state: string }[]).every((t) => t.state === "running"),
    );
    first.child.kill("SIGKILL");
    await first.child.status;
    const second = startWorker(c, "--concurrency", "4"); // --lease 1s
    const report = await waitRunEnd(c, runId);
    assertEquals(report.state, "completed", JSON.stringify(report));
    assertEquals(resultsOf(report), { a: 1, b: 2, c: 3 });
    const tasks = report.tasks as { id: string; attempts: number }[];
    assertEquals(tasks.map((t) => t.attempts), [2, 2, 2], JSON.stringify(tasks));
    assert(logged(second, `taking over run ${runId}`), second.log.join("\n"));
    assert(
      !second.log.some((l) => l.includes(`took over ${runId}/`)),
      `the dead coordinator's attempts were dropped, not run again:\n${second.log.join("\n")}`,
    );
    assert(
      !second.log.some((l) => l.includes("is being executed by")),
      `taken over at once, not after the run's heartbeat went stale:\n${second.log.join("\n")}`,
    );
  }));

Deno.test("a coordinator killed while another worker executes its attempt: on record as begun and interrupted, stopped, and run again under the next number", () =>
  withCluster(async (c) => {
    const first = await readyWorker(c, "@machine-b", "--lease", "3s", "--concurrency", "1");
    const runId = await submitTasks(c, "pair", sleepTask("a", 2, 1) + sleepTask("b", 8, 2));
    await waitLogged(first, `executing ${runId}/a`, "a to start on the coordinator");
    first.child.kill("SIGKILL");
    await first.child.status;
    // b waited on the stream: this worker begins it, its notice going to the dead coordinator
    const second = startWorker(c, "--concurrency", "3");
    await waitLogged(second, `executing ${runId}/b attempt 1`, "b to start on the other worker");
    const report = await waitRunEnd(c, runId);
    assertEquals(report.state, "completed", JSON.stringify(report));
    assertEquals(resultsOf(report), { a: 1, b: 2 });
    const b = (report.tasks as { id: string; task_id: string }[]).find((t) => t.id === "b")!;
    const shown = await gleitzeit(["--json", "task", "status", b.task_id], {
      env: c.env,
      cwd: c.dir,
    });
    const history = JSON.parse(shown.stdout).attempt_history as {
      attempt: number;
      state: string;
    }[];
    assertEquals(history.map((x) => [x.attempt, x.state]), [[1, "interrupted"], [2, "completed"]]);
    // the first one was told to stop at the takeover, not left to run on for nothing
    await waitLogged(second, `cancelled ${runId}/b attempt 1`, "b's first attempt to stop");
    assertEquals(second.log.filter((l) => l.includes(`executing ${runId}/b attempt 1`)).length, 1);
  }));

Deno.test("SIGTERM to the coordinator while tasks wait for workers: the next coordinator runs them", () =>
  withCluster(async (c) => {
    const workers = [
      await readyWorker(c, "--concurrency", "2", "--lease", "6s"),
      await readyWorker(c, "--concurrency", "2", "--lease", "6s"),
    ];
    const ids = Array.from({ length: 8 }, (_, i) => `t${i + 1}`);
    const runId = await submitTasks(c, "wide", sleepTasks(ids, 2));
    const coordinating = `coordinating run ${runId}`;
    await waitFor("a coordinator", () => workers.some((w) => logged(w, coordinating)));
    const coordinator = workers.find((w) => logged(w, coordinating))!;
    await waitFor(
      "four tasks to run",
      async () =>
        ((await status(c, runId)).tasks as { state: string }[])
          .filter((t) => t.state === "running").length === 4,
    );
    coordinator.child.kill("SIGTERM");
    assertEquals((await coordinator.child.status).code, 0);
    await readyWorker(c, "--concurrency", "2", "--lease", "6s"); // restarted
    const report = await waitRunEnd(c, runId);
    assertEquals(report.state, "completed", JSON.stringify(report));
    assertEquals(resultsOf(report), Object.fromEntries(ids.map((id, i) => [id, i + 1])));
  }));

Deno.test("SIGTERM to a coordinator with a long lease: its run is left to the others at once", () =>
  withCluster(async (c) => {
    const first = await readyWorker(c, "@machine-b", "--lease", "30s", "--concurrency", "2");
    // (long enough to be still running when the second worker is up, on a loaded machine)
    const runId = await submitTasks(c, "handover", sleepTasks(["a", "b"], 4));
    await waitLogged(first, `coordinating run ${runId}`, "the run to be coordinated");
    const second = await readyWorker(c, "--concurrency", "2");
    first.child.kill("SIGTERM");
    const stopped = Date.now();
    assertEquals((await first.child.status).code, 0);
    const report = await waitRunEnd(c, runId);
    assertEquals(report.state, "completed", JSON.stringify(report));
    assertEquals(resultsOf(report), { a: 1, b: 2 });
    assert(logged(second, `taking over run ${runId}`), second.log.join("\n"));
    assert(Date.now() - stopped < 20_000, "taken over long before the 30 s lease");
  }));

Deno.test("a dead worker's entries are taken over however many of a live worker's come before them", () =>
  withCluster(async (c) => {
    const { createClient } = await import("redis");
    const client = createClient({ url: "redis://127.0.0.1:6379" });
    await client.connect();
    try {
      const stream = `${c.prefix}queue:tasks`;
      await client.sendCommand(["XGROUP", "CREATE", stream, "workers", "$", "MKSTREAM"]);
      // 1100 entries held by a live worker (its lease key is there), then 5 of a dead one
      await client.set(`${c.prefix}lease:live`, "60000", { PX: 60_000 });
      const add = async (n: number, consumer: string) => {
        for (let i = 0; i < n; i++) await client.sendCommand(["XADD", stream, "*", "x", "1"]);
        await client.sendCommand([
          "XREADGROUP",
          "GROUP",
          "workers",
          consumer,
          "COUNT",
          String(n),
          "STREAMS",
          stream,
          ">",
        ]);
      };
      await add(1100, "live");
      await add(5, "dead");
      await new Promise((r) => setTimeout(r, 1200)); // idle past the takeover floor
      const w = await readyWorker(c); // --lease 1s: looks every third of a second
      const pendingOf = async (consumer: string) =>
        (await client.sendCommand([
          "XPENDING",
          stream,
          "workers",
          "-",
          "+",
          "2000",
          consumer,
        ]) as unknown[]).length;
      await waitFor(
        "the dead worker's entries to be taken",
        async () => await pendingOf("dead") === 0,
        15_000,
      );
      assertEquals(await pendingOf("live"), 1100, "the live worker keeps its own");
      // (each is looked at once taken: its log line follows the claim)
      await waitLogged(w, "dropped a malformed task entry", "the entries to be looked at");
    } finally {
      await client.close();
    }
  }));

Deno.test("a worker stopped (SIGSTOP) for longer than --give-up-after tries Redis again when it goes on, and works", () =>
  withCluster(async (c) => {
    const w = await readyWorker(c, "--give-up-after", "2s");
    w.child.kill("SIGSTOP");
    await new Promise((r) => setTimeout(r, 5_000));
    w.child.kill("SIGCONT");
    const runId = await submitTasks(c, "after", sleepTask("a", 0, 1));
    const report = await waitRunEnd(c, runId);
    assertEquals(report.state, "completed", JSON.stringify(report));
    assert(!logged(w, "has not answered"), w.log.join("\n"));
    const status = await Promise.race([
      w.child.status,
      new Promise<undefined>((r) => setTimeout(() => r(undefined), 500)),
    ]);
    assertEquals(status, undefined, "the worker is still running");
  }));

/**
 * A coordinator on another host executes a (long; it is the only worker when the run comes),
 * a helper b and c; `stop` ends the coordinator once the helper has taken both. The helper's
 * answers are recorded (at the takeover), not run again. Returns the helper.
 */
async function helperAnswersKept(
  c: Cluster,
  coordinatorLease: string,
  helperArgs: string[],
  stop: (coordinator: WorkerProcess) => Promise<void>,
): Promise<WorkerProcess> {
  const coordinator = await readyWorker(
    c,
    "@machine-b",
    "--lease",
    coordinatorLease,
    "--concurrency",
    "1",
  );
  const runId = await submitTasks(
    c,
    "answered",
    sleepTask("a", 5, 1) + sleepTask("b", 3, 2) + sleepTask("c", 3, 3),
  );
  await waitLogged(coordinator, `coordinating run ${runId}`, "the run to be coordinated");
  const helper = await readyWorker(c, "--concurrency", "2", ...helperArgs);
  await waitFor(
    "the helper to take two attempts",
    () => helper.log.filter((l) => l.includes(`executing ${runId}/`)).length >= 2,
  );
  // (a worker looks for work to take over at its start, again ~1 s later, then every third
  // of its lease: the stop comes after its second look, so that the answers come in before
  // the next; attempts executing at a takeover are run again, not adopted)
  await new Promise((r) => setTimeout(r, 2500));
  await stop(coordinator);
  const report = await waitRunEnd(c, runId);
  assertEquals(report.state, "completed", JSON.stringify(report));
  assertEquals(resultsOf(report), { a: 1, b: 2, c: 3 });
  const helped = helper.log.filter((l) => /executing \S+ attempt 1/.test(l) && l.includes(runId))
    .map((l) => /\/(\w+) attempt/.exec(l)![1]!);
  assertEquals(helped.length, 2, helper.log.join("\n"));
  const tasks = report.tasks as { id: string; attempts: number }[];
  for (const id of helped) {
    assertEquals(
      tasks.find((t) => t.id === id)?.attempts,
      1,
      `${id}: answered, not run again\n${coordinator.log.join("\n")}\n--\n${helper.log.join("\n")}`,
    );
  }
  return helper;
}

Deno.test("a coordinator killed after other workers answered: those answers are recorded at takeover, not run again", () =>
  withCluster(async (c) => {
    // its lease leaves the helper's answers time to come in before the takeover, on a loaded
    // machine too
    const helper = await helperAnswersKept(c, "6s", [], async (coordinator) => {
      coordinator.child.kill("SIGKILL");
      await coordinator.child.status;
    });
    assert(
      logged(helper, "answer(s) its previous coordinator never recorded"),
      helper.log.join("\n"),
    );
  }));

Deno.test("a coordinator stopped (SIGSTOP) for a few seconds inside its lease goes on: its attempts' answers still count", () =>
  withCluster(async (c) => {
    const w = await readyWorker(c, "--lease", "30s", "--concurrency", "2");
    const runId = await submitTasks(c, "paused", sleepTasks(["a", "b"], 6));
    for (const id of ["a", "b"]) {
      await waitLogged(w, `executing ${runId}/${id}`, `task ${id} to start`);
    }
    w.child.kill("SIGSTOP");
    await new Promise((r) => setTimeout(r, 5_000)); // past the 3 s a Redis command may take
    w.child.kill("SIGCONT");
    const report = await waitRunEnd(c, runId);
    assertEquals(report.state, "completed", `${JSON.stringify(report)}\n${w.log.join("\n")}`);
    assertEquals(resultsOf(report), { a: 1, b: 2 });
    const tasks = report.tasks as { id: string; attempts: number }[];
    assertEquals(tasks.map((t) => t.attempts), [1, 1]);
  }));

Deno.test("a coordinator stopped with SIGTERM after other workers answered: those answers are recorded too", () =>
  withCluster(async (c) => {
    // the helper looks for work to take over at its start, ~1 s later, then every 10 s: the
    // answers are in by its third look
    await helperAnswersKept(c, "3s", ["--lease", "30s"], async (coordinator) => {
      coordinator.child.kill("SIGTERM");
      assertEquals((await coordinator.child.status).code, 0);
    });
  }));
