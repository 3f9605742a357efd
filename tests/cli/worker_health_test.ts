/**
 * `gleitzeit worker` and provider health (SPEC section 5: the registry routes to a healthy
 * provider and takes unhealthy ones out until they recover): real worker processes on the
 * real Redis, one with an Ollama at a port where nothing listens, the Ollama test server
 * (../shared/ollama-test-server) for a healthy one. A worker takes no tasks of a protocol it
 * has no healthy provider of, and takes them again once one recovers; an attempt no live
 * worker can take fails after `--unserved-after`.
 */

import { assert, assertEquals, assertStringIncludes } from "../assert.ts";
import { deadPort, startTestServer, stopTestServer } from "../providers/ollama/test_server.ts";
import { gleitzeit } from "./helpers.ts";
import {
  type Cluster,
  logged,
  NO_BWRAP,
  readyWorker,
  sleepTasks,
  status,
  submitTasks,
  waitFor,
  waitLogged,
  waitRunEnd,
  withCluster,
  type WorkerProcess,
} from "./worker_cluster.ts";

/** The cluster as seen by a worker whose Ollama is at `url`. */
function withOllama(c: Cluster, url: string): Cluster {
  return { ...c, env: { ...c.env, GLEITZEIT_OLLAMA_URL: url } }; // (same list of workers)
}

/** The worker's id, from the line it logs once it takes work. */
function ownerOf(w: WorkerProcess): string {
  const line = w.log.find((l) => l.includes(" at once, lease ")) ?? "";
  const id = /worker (\S+) on /.exec(line)?.[1];
  assert(id, `no start line:\n${w.log.join("\n")}`);
  return id;
}

/** An llm/chat task the test server answers ("ping" -> "pong"). */
function llmTask(id: string, extra = ""): string {
  return `  - id: ${id}\n    method: llm/chat\n` +
    "    params: {model: llama3.2, options: {temperature: 0}, " +
    '      messages: [{role: user, content: "ping"}]}\n' + extra;
}

/** The workers that executed each attempt of `taskId` (`task status --json`). */
async function executors(c: Cluster, runId: string, taskId: string): Promise<string[]> {
  const r = await gleitzeit(["--json", "task", "status", `${runId}/${taskId}`], {
    env: c.env,
    cwd: c.dir,
  });
  assertEquals(r.code === 0 || r.code === 1, true, r.stderr);
  return (JSON.parse(r.stdout).attempt_history as { executor: string }[]).map((a) => a.executor);
}

/** `system status --json`'s workers, by owner. */
async function workers(c: Cluster) {
  const r = await gleitzeit(["--json", "system", "status"], { env: c.env, cwd: c.dir });
  assertEquals(r.code, 0, r.stderr);
  const list = JSON.parse(r.stdout).workers as {
    owner: string;
    protocols?: string[];
    unhealthy?: string[];
  }[];
  return new Map(list.map((w) => [w.owner, w]));
}

/** Whether a worker executed (began) an attempt of `runId/taskId`. */
function executed(w: WorkerProcess, runId: string, taskId: string): boolean {
  return w.log.some((l) => l.includes(`executing ${runId}/${taskId} attempt`));
}

Deno.test("two workers, one whose Ollama is down: every LLM task runs on the other, Python tasks on both", () =>
  withCluster(async (c) => {
    const url = await startTestServer();
    const dead = `http://127.0.0.1:${deadPort()}`;
    const sick = await readyWorker(withOllama(c, dead), "--concurrency", "2");
    assert(logged(sick, `provider ollama@${dead} (llm/v1) is unhealthy`), sick.log.join("\n"));
    assert(
      logged(sick, "this worker takes no llm/v1 tasks until it recovers"),
      sick.log.join("\n"),
    );
    const well = await readyWorker(withOllama(c, url), "--concurrency", "1");
    const [sickId, wellId] = [ownerOf(sick), ownerOf(well)];
    // what each takes, as coordinators see it
    const seen = await workers(c);
    assert(!seen.get(sickId)?.protocols?.includes("llm/v1"), JSON.stringify([...seen]));
    assertEquals(seen.get(sickId)?.unhealthy, ["llm/v1"]);
    assert(seen.get(sickId)?.protocols?.includes("python/v1"), JSON.stringify([...seen]));
    assert(seen.get(wellId)?.protocols?.includes("llm/v1"), JSON.stringify([...seen]));
    const human = await gleitzeit(["system", "status"], { env: c.env, cwd: c.dir });
    assertStringIncludes(human.stdout, `${sickId}: 0 of 2 tasks, 0 of 16 runs; unhealthy: llm/v1`);
    // and why, under it
    assertStringIncludes(human.stdout, `\n    llm/v1: `);

    const llm = ["q1", "q2", "q3", "q4"];
    const py = ["p1", "p2", "p3", "p4"];
    const runId = await submitTasks(
      c,
      "mixed",
      llm.map((id) => llmTask(id)).join("") + sleepTasks(py, 1),
    );
    const report = await waitRunEnd(c, runId);
    assertEquals(report.state, "completed", JSON.stringify(report));
    for (const id of llm) {
      assertEquals(await executors(c, runId, id), [wellId], `${id} ran on the healthy worker`);
      assert(!executed(sick, runId, id), sick.log.join("\n"));
    }
    const pyBy = await Promise.all(py.map(async (id) => (await executors(c, runId, id))[0]));
    // (the healthy worker takes one task at a time and has the LLM tasks too)
    assert(pyBy.includes(sickId), `the sick worker still takes Python tasks: ${pyBy}`);
  }));

Deno.test("a lone worker whose Ollama is down: its LLM task fails after --unserved-after (retry applies), the Python task of the run completes", () =>
  withCluster(async (c) => {
    const dead = `http://127.0.0.1:${deadPort()}`;
    const w = await readyWorker(withOllama(c, dead), "--unserved-after", "2s");
    const id = ownerOf(w);
    const started = Date.now();
    const runId = await submitTasks(
      c,
      "half",
      '  - id: calc\n    method: python/execute\n    params: {code: "result = 6 * 7"}\n' +
        llmTask(
          "ask",
          "    retry: {max_attempts: 2, backoff: fixed, base_delay: 0.2, jitter: false}\n",
        ),
    );
    const report = await waitRunEnd(c, runId);
    assertEquals(report.state, "failed", JSON.stringify(report));
    type Task = {
      id: string;
      state: string;
      attempts: number;
      result: { result: unknown } | null;
      error: { code: string; message: string; hint?: string; retryable: boolean } | null;
    };
    const tasks = report.tasks as Task[];
    const calc = tasks.find((t) => t.id === "calc")!;
    assertEquals([calc.state, calc.result?.result], ["completed", 42], JSON.stringify(calc));
    const ask = tasks.find((t) => t.id === "ask")!;
    assertEquals(ask.state, "failed", JSON.stringify(ask));
    assertEquals(ask.attempts, 2, "its retry applied");
    assertEquals([ask.error?.code, ask.error?.retryable], ["PROVIDER_UNHEALTHY", true]);
    const message = ask.error!.message;
    assert(!message.includes("\n"), message);
    assertStringIncludes(message, "no worker can take llm/v1 tasks");
    assertStringIncludes(message, `unhealthy on worker ${id}`);
    assertStringIncludes(ask.error!.hint ?? "", "start a worker with a healthy provider of llm/v1");
    assertStringIncludes(ask.error!.hint ?? "", "gleitzeit provider health");
    assert(!executed(w, runId, "ask"), `never taken:\n${w.log.join("\n")}`);
    assert(executed(w, runId, "calc"), w.log.join("\n"));
    // two waits of 2 s and a short retry delay: generously bounded
    assert(Date.now() - started < 45_000, `took ${Date.now() - started} ms`);
    // the human status shows the one line and its hint
    const human = await gleitzeit(["workflow", "status", runId], { env: c.env, cwd: c.dir });
    assertStringIncludes(human.stdout + human.stderr, "gleitzeit provider health");
  }));

Deno.test("a worker whose Ollama comes up after it started takes LLM tasks from then on", () =>
  withCluster(async (c) => {
    const port = deadPort();
    const w = await readyWorker(withOllama(c, `http://127.0.0.1:${port}`));
    const id = ownerOf(w);
    assert(logged(w, "(llm/v1) is unhealthy"), w.log.join("\n"));
    const runId = await submitTasks(c, "later", llmTask("ask"));
    // it waits (not taken, not failed: the default wait for a worker is a minute)
    await waitLogged(w, `coordinating run ${runId}`, "the run to be coordinated");
    await new Promise((r) => setTimeout(r, 2500));
    const waiting = (await status(c, runId)).tasks as { state: string; attempts: number }[];
    assertEquals([waiting[0]!.state, waiting[0]!.attempts], ["queued", 0], JSON.stringify(waiting));
    assert(!executed(w, runId, "ask"), w.log.join("\n"));
    try {
      await startTestServer(port);
      const report = await waitRunEnd(c, runId);
      assertEquals(report.state, "completed", JSON.stringify(report));
      assertEquals(await executors(c, runId, "ask"), [id]);
      assert(logged(w, "taking llm/v1 tasks (a healthy provider)"), w.log.join("\n"));
      await waitFor(
        "the worker to say it serves llm/v1",
        async () => (await workers(c)).get(id)?.protocols?.includes("llm/v1") === true,
      );
    } finally {
      await stopTestServer(port);
    }
  }));

Deno.test("a worker without bubblewrap runs the Python tasks that ask for sandbox basic; one that needs bubblewrap fails with one line and a hint", () =>
  withCluster(async (c) => {
    // (a machine without bubblewrap: a mount namespace where it is hidden, which needs root)
    assertEquals(Deno.uid(), 0, "this test hides bubblewrap with unshare --mount: run it as root");
    const w = await readyWorker(c, NO_BWRAP, "--unserved-after", "2s");
    const id = ownerOf(w);
    assert(logged(w, "(python/v1) is unhealthy"), w.log.join("\n"));
    const runId = await submitTasks(
      c,
      "nobwrap",
      "  - id: light\n    method: python/execute\n    sandbox: basic\n" +
        '    params: {code: "result = 6 * 7"}\n' +
        "  - id: bare\n    method: python/execute\n    sandbox: {mode: none}\n" +
        '    params: {code: "result = 1"}\n' +
        '  - id: boxed\n    method: python/execute\n    params: {code: "result = 2"}\n',
    );
    const report = await waitRunEnd(c, runId);
    assertEquals(report.state, "failed", JSON.stringify(report));
    type Task = {
      id: string;
      state: string;
      result: { result: unknown } | null;
      error: { code: string; message: string; hint?: string } | null;
    };
    const tasks = report.tasks as Task[];
    const by = (tid: string) => tasks.find((t) => t.id === tid)!;
    assertEquals([by("light").state, by("light").result?.result], ["completed", 42]);
    assertEquals([by("bare").state, by("bare").result?.result], ["completed", 1]);
    assertEquals(await executors(c, runId, "light"), [id]);
    const boxed = by("boxed");
    assertEquals([boxed.state, boxed.error?.code], ["failed", "PROVIDER_UNHEALTHY"]);
    const message = boxed.error!.message;
    assert(!message.includes("\n"), message);
    assertStringIncludes(message, "no worker can take python/v1 tasks");
    assertStringIncludes(message, `unhealthy on worker ${id}`);
    assertStringIncludes(message, "bubblewrap"); // the worker's reason
    assertStringIncludes(boxed.error!.hint ?? "", "gleitzeit provider health");
    assert(!executed(w, runId, "boxed"), w.log.join("\n"));
    const seen = (await workers(c)).get(id);
    // (llm/v1 too: no Ollama here)
    for (const p of ["python/v1", "python/v1#bwrap"]) {
      assert(seen?.unhealthy?.includes(p), JSON.stringify(seen));
    }
    assert(seen?.protocols?.includes("python/v1#basic"), JSON.stringify(seen));
  }));

/**
 * A run of one `ping` task of `protocol` (up to `attempts` attempts), once it has failed: that
 * task, whose error is PROVIDER_NOT_FOUND.
 */
async function failedPing(c: Cluster, protocol: string, attempts: number) {
  const runId = await submitTasks(
    c,
    "m",
    `  - id: p\n    protocol: ${protocol}\n    method: ping\n` +
      `    retry: {max_attempts: ${attempts}, backoff: fixed, base_delay: 0.1, jitter: false}\n`,
  );
  const report = await waitRunEnd(c, runId);
  assertEquals(report.state, "failed", JSON.stringify(report));
  const task = (report.tasks as { attempts: number; error: Record<string, unknown> }[])[0]!;
  assertEquals(task.error.code, "PROVIDER_NOT_FOUND", JSON.stringify(task.error));
  return task;
}

Deno.test("an ambiguous mcp/v1 (two MCP servers configured) fails at once, not retried, with the configuration error", () =>
  withCluster(async (c) => {
    const config = await Deno.readTextFile(`${c.dir}/config.yaml`);
    await Deno.writeTextFile(
      `${c.dir}/config.yaml`,
      config + "mcp_servers:\n  - {name: a, command: /nonexistent/a}\n" +
        "  - {name: b, command: /nonexistent/b}\n",
    );
    // (a wait that would end it otherwise: the attempt must not wait for it)
    const w = await readyWorker(c, "--unserved-after", "3s");
    const task = await failedPing(c, "mcp/v1", 3);
    assertStringIncludes(String(task.error.message), "mcp/v1 is ambiguous");
    assertStringIncludes(String(task.error.message), ownerOf(w));
    assertEquals(task.attempts, 1, JSON.stringify(task));
  }));

Deno.test("an MCP server no live worker has (mcp/nosuch) fails after a short grace, not --unserved-after, naming the servers configured; retryable (one that has it may be restarting)", () =>
  withCluster(async (c) => {
    const config = await Deno.readTextFile(`${c.dir}/config.yaml`);
    await Deno.writeTextFile(
      `${c.dir}/config.yaml`,
      config + "mcp_servers:\n  - {name: a, command: /nonexistent/a}\n",
    );
    await Deno.writeTextFile(`${c.dir}/bare.yaml`, config); // (no MCP server)
    // (after --unserved-after, an attempt no worker takes fails as PROVIDER_UNAVAILABLE; the
    // grace for a protocol every live worker lacks is 10 s)
    const w = await readyWorker(c, "--unserved-after", "50s");
    // and a worker with no MCP server configured at all says the same of it
    const bare = await readyWorker(
      { ...c, env: { ...c.env, GLEITZEIT_CONFIG: `${c.dir}/bare.yaml` } },
      "--unserved-after",
      "50s",
    );
    const task = await failedPing(c, "mcp/nosuch", 2);
    const message = String(task.error.message);
    assert(
      message.includes("mcp/nosuch: no MCP server of that name (configured: a)") ||
        message.includes("mcp/nosuch: no MCP server is configured"),
      message,
    );
    assert(message.includes(ownerOf(w)) || message.includes(ownerOf(bare)), message);
    assertStringIncludes(String(task.error.hint), "mcp_servers:");
    // retried, as a retryable failure is
    assertEquals(task.attempts, 2, JSON.stringify(task));
  }));
