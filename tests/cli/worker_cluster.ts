/**
 * A cluster of real `gleitzeit worker` processes for CLI tests: one Redis prefix and scratch
 * directory per cluster, workers started as subprocesses, everything removed at the end.
 *
 * @module
 */

import { assertEquals } from "../assert.ts";
import { gleitzeit, ROOT, scratch, writeWorkflow } from "./helpers.ts";

export interface Cluster {
  dir: string;
  env: Record<string, string>;
  prefix: string;
  workers: WorkerProcess[];
}

export interface WorkerProcess {
  child: Deno.ChildProcess;
  log: string[];
  done: Promise<void>;
}

export async function cluster(): Promise<Cluster> {
  const { dir, env } = await scratch();
  const prefix = `gz-worker-test-${crypto.randomUUID().slice(0, 8)}:`;
  await Deno.writeTextFile(
    `${dir}/config.yaml`,
    `persistence:\n  backend: redis\n  redis_prefix: "${prefix}"\n`,
  );
  return { dir, env, prefix, workers: [] };
}

/**
 * Starts `gleitzeit worker` and collects its log lines (stderr). With `host`, in a UTS
 * namespace of that host name: another machine as far as run owners go (no pid checks). With
 * NO_BWRAP first, in a mount namespace where bubblewrap is not there (a machine without it).
 */
export function startWorker(c: Cluster, ...args: string[]): WorkerProcess {
  const noBwrap = args[0] === NO_BWRAP ? args.shift() !== undefined : false;
  const host = args[0]?.startsWith("@") ? args.shift()!.slice(1) : undefined;
  const command = host
    ? ["unshare", "--uts", "sh", "-c", `hostname ${host} && exec "$@"`, "sh", `${ROOT}/gleitzeit`]
    : noBwrap
    ? ["unshare", "--mount", "sh", "-c", `${HIDE_BWRAP} && exec "$@"`, "sh", `${ROOT}/gleitzeit`]
    : [`${ROOT}/gleitzeit`];
  const child = new Deno.Command(command[0]!, {
    args: [...command.slice(1), "worker", "--lease", "1s", ...args],
    env: c.env,
    cwd: c.dir,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const log: string[] = [];
  const done = (async () => {
    const lines = child.stderr.pipeThrough(new TextDecoderStream());
    let rest = "";
    for await (const chunk of lines) {
      rest += chunk;
      const parts = rest.split("\n");
      rest = parts.pop()!;
      log.push(...parts);
    }
    if (rest) log.push(rest);
  })();
  const w = { child, log, done };
  c.workers.push(w);
  return w;
}

/** startWorker's first argument for a worker on a machine without bubblewrap (needs root). */
export const NO_BWRAP = "--test-no-bwrap";

/** Hides every bwrap Gleitzeit would find (bind-mounts /dev/null, not a file, over each). */
const HIDE_BWRAP =
  "for b in /usr/bin/bwrap /usr/local/bin/bwrap /bin/bwrap $(command -v bwrap); do " +
  '[ -e "$b" ] && mount --bind /dev/null "$b"; done; ! command -v bwrap >/dev/null || true';

export async function waitFor(what: string, check: () => boolean | Promise<boolean>, ms = 20_000) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

export async function waitReady(w: WorkerProcess): Promise<void> {
  await waitLogged(w, " at once, lease ", "the worker to start");
}

/** Whether a worker has logged a line containing `text`. */
export function logged(w: WorkerProcess, text: string): boolean {
  return w.log.some((l) => l.includes(text));
}

/** Waits until a worker logs a line containing `text`. */
export async function waitLogged(w: WorkerProcess, text: string, what: string, ms?: number) {
  await waitFor(what, () => logged(w, text), ms);
}

export async function status(c: Cluster, runId: string): Promise<Record<string, unknown>> {
  const r = await gleitzeit(["--json", "workflow", "status", runId], { env: c.env, cwd: c.dir });
  assertEquals(r.code === 0 || r.code === 1, true, r.stderr);
  return JSON.parse(r.stdout);
}

export async function waitRunEnd(c: Cluster, runId: string): Promise<Record<string, unknown>> {
  let last: Record<string, unknown> = {};
  try {
    await waitFor(`run ${runId} to end`, async () => {
      last = await status(c, runId);
      return ["completed", "failed", "cancelled"].includes(String(last.state));
    }, 60_000); // generous: this machine is shared and at times heavily loaded
  } catch (e) {
    const logs = c.workers.map((w, i) => `worker ${i}:\n  ${w.log.join("\n  ")}`);
    throw new Error(`${(e as Error).message} (last state ${last.state})\n${logs.join("\n")}`);
  }
  return last;
}

export async function submit(c: Cluster, file: string): Promise<string> {
  const r = await gleitzeit(["--json", "run", file, "--detach"], { env: c.env, cwd: c.dir });
  assertEquals(r.code, 0, r.stderr);
  return JSON.parse(r.stdout).run_id;
}

/** Starts a worker and waits until it takes work. */
export async function readyWorker(c: Cluster, ...args: string[]): Promise<WorkerProcess> {
  const w = startWorker(c, ...args);
  await waitReady(w);
  return w;
}

/** Writes a workflow `name` of the given task lines and submits it with --detach. */
export async function submitTasks(c: Cluster, name: string, tasks: string): Promise<string> {
  return await submit(
    c,
    await writeWorkflow(c.dir, `${name}.yaml`, `name: ${name}\ntasks:\n${tasks}`),
  );
}

/** Runs `fn` with a fresh cluster (config, Redis prefix), cleaned up whatever happens. */
export async function withCluster(fn: (c: Cluster) => Promise<void>): Promise<void> {
  const c = await cluster();
  try {
    await fn(c);
  } finally {
    await teardown(c);
  }
}

export async function teardown(c: Cluster): Promise<void> {
  for (const w of c.workers) {
    try {
      w.child.kill("SIGKILL");
    } catch {
      // already gone
    }
    await w.child.status;
    await w.done;
  }
  const { createClient } = await import("redis");
  const client = createClient({ url: "redis://127.0.0.1:6379" });
  await client.connect();
  for await (const keys of client.scanIterator({ MATCH: `${c.prefix}*`, COUNT: 500 })) {
    if (keys.length > 0) await client.unlink(keys);
  }
  await client.close();
  await Deno.remove(c.dir, { recursive: true });
}

/** `task id -> result value` from `workflow status --json`. */
export function resultsOf(report: Record<string, unknown>): Record<string, unknown> {
  const tasks = report.tasks as { id: string; result?: { result: unknown } | null }[];
  return Object.fromEntries(tasks.map((t) => [t.id, t.result?.result]));
}

/** Tasks `ids` sleeping `seconds` each, with results 1, 2, ... in order. */
export function sleepTasks(ids: string[], seconds: number): string {
  return ids.map((id, i) => sleepTask(id, seconds, i + 1)).join("");
}

export function sleepTask(id: string, seconds: number, value: number): string {
  return `  - id: ${id}\n    method: python/execute\n    params: {code: "import time; time.sleep(${seconds}); result = ${value}"}\n`;
}
