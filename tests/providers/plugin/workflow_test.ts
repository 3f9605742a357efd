/**
 * External providers and MCP servers in real runs of the `gleitzeit` command: the calc
 * example workflow, a task whose provider process dies on the first attempt (the retry
 * succeeds on the restarted process), 50 tasks shared by two instances, and MCP workflows
 * (including ../shared/seed-examples/mcp_test_workflow.yaml) against server-everything.
 */

import { assertEquals, assertOk } from "../jsonrpc/assert.ts";
import { EXAMPLES, gleitzeit, ROOT, scratch, tempDir } from "../../cli/helpers.ts";
import { everythingServer } from "../mcp/everything_server.ts";
import { requirePython } from "./helpers.ts";

interface Report {
  state: string;
  results: Record<string, unknown>;
  tasks: { id: string; state: string; attempts: number; result: unknown; error: unknown }[];
}

async function run(config: string, workflow: string, extra: string[] = []): Promise<Report> {
  await requirePython();
  const { env } = await scratch();
  const r = await gleitzeit([
    "--config",
    config,
    "--json",
    "run",
    workflow,
    "--sandbox",
    "none",
    ...extra,
  ], { env });
  assertEquals(r.code, 0, `exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** A config next to the calc provider, in a scratch folder. */
async function calcConfig(extra = ""): Promise<{ dir: string; config: string }> {
  const dir = await tempDir("gleitzeit-calc-");
  const config = `${dir}/config.yaml`;
  await Deno.writeTextFile(
    config,
    `providers:
  - id: calc
    protocol: calc/v1
    command: python3
    args: ["-u", "${EXAMPLES}/providers/calc_provider.py"]
    describe: true
    restart: {base_delay_ms: 50}
${extra}`,
  );
  return { dir, config };
}

Deno.test("example calc_workflow.yaml runs with examples/providers/config.yaml", async () => {
  const report = await run(
    `${EXAMPLES}/providers/config.yaml`,
    `${EXAMPLES}/providers/calc_workflow.yaml`,
  );
  assertEquals(report.state, "completed");
  assertEquals(report.results.area, 42);
  assertEquals(report.results.squares_total, 55);
  assertEquals((report.results.report as { result: unknown }).result, {
    area: 42,
    sum_of_squares: 55,
    combined: 97,
    consistent: true,
  });
});

Deno.test("--config with a bare relative file name: the provider's relative paths resolve against the config file's folder", async () => {
  await requirePython();
  const { env } = await scratch();
  const dir = await tempDir("gleitzeit-calc-rel-");
  await Deno.copyFile(`${EXAMPLES}/providers/calc_provider.py`, `${dir}/calc_provider.py`);
  await Deno.writeTextFile(
    `${dir}/pcfg.yaml`,
    'providers:\n  - {id: calc, protocol: calc/v1, command: python3, args: ["-u", "calc_provider.py"], describe: true}\n',
  );
  await Deno.writeTextFile(
    `${dir}/c.yaml`,
    "name: c\ntasks:\n  - id: a\n    method: calc/add\n    params: {a: 1, b: 2}\n",
  );
  for (const config of ["pcfg.yaml", "./pcfg.yaml"]) {
    const r = await gleitzeit(["--config", config, "--json", "run", "c.yaml"], { env, cwd: dir });
    assertEquals(r.code, 0, `${config}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
    assertEquals(JSON.parse(r.stdout).results.a, 3, config);
  }
});

Deno.test("a provider process that dies mid-task: the task's retry succeeds on the restarted process", async () => {
  const { dir, config } = await calcConfig();
  const wf = `${dir}/crash.yaml`;
  await Deno.writeTextFile(
    wf,
    `name: crash and retry
tasks:
  - id: flaky
    method: calc/crash_once
    params: {marker: "${dir}/crashed"}
    retry: {max_attempts: 3, backoff: fixed, base_delay: 0.1}
  - id: after
    method: calc/add
    params: {a: 1, b: 2}
    dependencies: [flaky]
`,
  );
  const report = await run(config, wf);
  const flaky = report.tasks.find((t) => t.id === "flaky")!;
  assertEquals([flaky.state, flaky.attempts], ["completed", 2]);
  const firstPid = Number(await Deno.readTextFile(`${dir}/crashed`));
  const result = flaky.result as { recovered: boolean; pid: number };
  assertEquals(result.recovered, true);
  assertOk(result.pid !== firstPid, "served by a new process");
  assertEquals(report.results.after, 3);
});

Deno.test("two instances of one provider share 50 tasks", async () => {
  const { dir, config } = await calcConfig("    instances: 2\n    max_concurrency: 8\n");
  const tasks = Array.from(
    { length: 50 },
    (_, i) => `  - id: t${i}\n    method: calc/sleep\n    params: {seconds: 0.05, value: ${i}}\n`,
  ).join("");
  const wf = `${dir}/fifty.yaml`;
  await Deno.writeTextFile(wf, `name: fifty\ntasks:\n${tasks}`);
  const t0 = performance.now();
  const report = await run(config, wf);
  const ms = performance.now() - t0;
  assertEquals(report.state, "completed");
  const pids = new Map<number, number>();
  for (const t of report.tasks) {
    const pid = (t.result as { pid: number }).pid;
    pids.set(pid, (pids.get(pid) ?? 0) + 1);
  }
  assertEquals(pids.size, 2, "both instances served tasks");
  for (const n of pids.values()) assertOk(n >= 5, `each served several: ${[...pids.values()]}`);
  console.log(
    `50 tasks on 2 instances: ${[...pids.values()].join("/")} in ${
      ms.toFixed(0)
    } ms (whole CLI run)`,
  );
});

async function mcpConfig(): Promise<string> {
  const server = await everythingServer();
  const dir = await tempDir("gleitzeit-mcp-");
  const config = `${dir}/config.yaml`;
  await Deno.writeTextFile(
    config,
    `mcp_servers:\n  - name: everything\n    command: ${server.command}\n    args: ${
      JSON.stringify(server.args)
    }\n`,
  );
  return config;
}

Deno.test("example mcp_workflow.yaml: get-sum's text flows into echo (server-everything)", async () => {
  const report = await run(await mcpConfig(), `${EXAMPLES}/providers/mcp_workflow.yaml`);
  assertEquals(report.state, "completed");
  assertEquals((report.results.sum as { text: string }).text, "The sum of 19 and 23 is 42.");
  assertEquals((report.results.echo as { text: string }).text, "Echo: The sum of 19 and 23 is 42.");
  const tools = (report.results.tools as { tools: { name: string }[] }).tools.map((t) => t.name);
  assertOk(tools.includes("get-sum") && tools.includes("echo"));
});

Deno.test("seed example mcp_test_workflow.yaml runs against server-everything", async () => {
  const report = await run(
    await mcpConfig(),
    `${ROOT}/../shared/seed-examples/mcp_test_workflow.yaml`,
  );
  assertEquals(report.state, "completed");
  assertEquals((report.results.health_check as { ok: boolean }).ok, true);
  assertOk((report.results.discover_tools as { tools: unknown[] }).tools.length > 5);
});
