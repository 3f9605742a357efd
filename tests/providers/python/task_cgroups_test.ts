/**
 * `max_processes` per task in the warm pool: as root with a pids cgroup controller (this
 * project's test machines have one: cgroup v1 `pids`), each warm task counts its processes in
 * a cgroup of its own, so a task at its limit does not stop another task's forks (the rlimit
 * that cold tasks get counts every process of uid 65534).
 */

import assert from "node:assert/strict";
import { PythonProvider } from "../../../src/providers/python/python_provider.ts";
import { closePidsCgroups, pidsCgroups } from "../../../src/providers/python/task_cgroups.ts";
import { makeCtx, withTracefs } from "./helpers.ts";

const asRoot = Deno.uid() === 0;

/** The task's pids cgroup (v1) or its v2 line, as the task sees it. */
const CGROUP = `[line for line in open("/proc/self/cgroup").read().splitlines() ` +
  `if ":pids:" in line or line.startswith("0::")]`;

/** Forks `n` children that live for `hold` seconds; reports when and how many (and why
 * not, should a fork fail: the failing test then says where the task ran). */
const holder = (n: number, hold: number) => `
import os, time
started, error = [], None
for _ in range(${n}):
    try:
        pid = os.fork()
    except OSError as e:
        error = str(e)
        break
    if pid == 0:
        time.sleep(${hold})
        os._exit(0)
    started.append(pid)
forked_at = time.time()
for pid in started:
    os.waitpid(pid, 0)
result = {"forked": len(started), "forked_at": forked_at, "until": forked_at + ${hold},
          "error": error, "cgroup": ${CGROUP}}
`;

/** Waits `delay` seconds, then forks up to `n` short-lived children; counts successes. */
const forker = (n: number, delay: number) => `
import os, time
time.sleep(${delay})
began = time.time()
ok, failed = 0, 0
for _ in range(${n}):
    try:
        pid = os.fork()
    except OSError:
        failed += 1
        continue
    if pid == 0:
        time.sleep(0.2)
        os._exit(0)
    ok += 1
ended = time.time()
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
result = {"ok": ok, "failed": failed, "began": began, "ended": ended, "cgroup": ${CGROUP}}
`;

Deno.test("[bwrap, warm] max_processes is per task: one task at its limit leaves another's forks alone", async () => {
  if (!asRoot) {
    // Only root makes cgroups; the shared rlimit applies (tests/cli/unprivileged_test.ts).
    assert.equal(pidsCgroups(), undefined);
    return;
  }
  assert.ok(pidsCgroups(), "this machine runs the tests as root with a pids cgroup controller");
  const p = new PythonProvider({ sandbox: "bwrap", poolSize: 2 });
  const sandbox = { task: { max_processes: 20 } };
  let used = "";
  try {
    await p.prewarm();
    const [a, b] = await Promise.all([
      p.call("python/execute", { code: holder(17, 6) }, makeCtx({ sandbox })),
      p.call("python/execute", { code: forker(10, 2) }, makeCtx({ sandbox })),
    ]) as { result: Record<string, number> }[];
    // A held 17 children (18 processes of uid 65534 with itself) the whole time B forked:
    // with one count per user, B's forks would have failed past the limit of 20.
    assert.equal(a.result.forked, 17, JSON.stringify(a.result));
    assert.ok(a.result.forked_at < b.result.began, "A had forked before B began");
    assert.ok(b.result.ended < a.result.until, "A's children lived until B had forked");
    assert.equal(b.result.ok, 10, JSON.stringify(b.result));
    const inside = /\/gleitzeit-\d+\/pool-\d+\/t\d+/.exec(String(b.result.cgroup));
    assert.ok(inside, `not in a task cgroup: ${b.result.cgroup}`);
    used = inside[0].replace(/\/t\d+$/, "");
  } finally {
    await p.close();
  }
  // The warm parent's cgroup, with its tasks', is gone once the provider is closed.
  const root = pidsCgroups()!.base.replace(/\/gleitzeit-\d+$/, "");
  assert.throws(() => Deno.statSync(root + used), Deno.errors.NotFound);
});

Deno.test("[bwrap, warm] a warm task starts inside its pids cgroup: no process is moved per task", async () => {
  if (!asRoot) return assert.equal(pidsCgroups(), undefined);
  // Moving a process between cgroups takes a lock whose writer can wait for an RCU grace
  // period (milliseconds): the kernel's cgroup_attach_task event, in a trace instance of
  // this test's own, counts the moves into this process's cgroups.
  await withTracefs(async (tracing) => {
    const instance = `${tracing}/instances/gleitzeit-test-${Deno.pid}`;
    await Deno.mkdir(instance);
    const p = new PythonProvider({ sandbox: "bwrap", poolSize: 1 });
    try {
      const run = async () =>
        ((await p.call("python/execute", { code: `result = ${CGROUP}` }, makeCtx())) as {
          result: string[];
        }).result.join();
      for (let i = 0; i < 5; i++) await run(); // the pool starts (a few moves, once)
      const event = `${instance}/events/cgroup/cgroup_attach_task/enable`;
      await Deno.writeTextFile(event, "1");
      const seen = new Set<string>();
      for (let i = 0; i < 12; i++) seen.add(await run());
      await Deno.writeTextFile(event, "0");
      // This pool's cgroup (test files running at once share this process's).
      const pool = /\/gleitzeit-\d+\/pool-\d+\//.exec([...seen][0])![0];
      const moves = (await Deno.readTextFile(`${instance}/trace`)).split("\n")
        .filter((l) => l.includes("cgroup_attach_task") && l.includes(`dst_path=${pool}`));
      assert.deepEqual(moves, [], "processes moved into task cgroups");
      assert.equal(seen.size, 3, `tasks take three cgroups in turn: ${[...seen]}`);
      for (const line of seen) assert.match(line, /:pids:\/gleitzeit-\d+\/pool-\d+\/t\d,/);
    } finally {
      await p.close();
      await Deno.remove(instance);
    }
  });
});

const KILLS = [
  "killed",
  "killed, but those of the waiting spares' cgroups",
  "killed while asked for a spare",
] as const;

for (const how of KILLS) {
  Deno.test(`[bwrap, warm] when the processes that make spares in task cgroups are ${how}, tasks go on within their limits`, async () => {
    if (!asRoot) return assert.equal(pidsCgroups(), undefined);
    const p = new PythonProvider({ sandbox: "bwrap", poolSize: 1 });
    const code = `import os\nresult = [os.readlink("/proc/self/ns/pid"), ${CGROUP}]`;
    const run = async () =>
      ((await p.call("python/execute", { code }, makeCtx())) as { result: [string, string[]] })
        .result;
    // Forks until it cannot: with itself, exactly its max_processes.
    const limited = async () =>
      ((await p.call(
        "python/execute",
        { code: forker(10, 0) },
        makeCtx({
          sandbox: { task: { max_processes: 3 } },
        }),
      )) as { result: Record<string, number> }).result;
    try {
      const before = [];
      for (let i = 0; i < 4; i++) before.push(await run());
      const ns = before[0][0];
      // Two spares wait: the next task's, and the one after, which the parent asks for once
      // the task before has ended and is cleaned up (a moment after its result is in).
      // (A spare just cloned holds its forker's socket too, for a moment.)
      // (A finished task may not be gone yet either: it ran as the sandbox user; forkers and
      // the waiting spares are root's.)
      const settled = (procs: ReturnType<typeof taskCgroupProcs>) =>
        procs.filter((x) => x.forker).length === 3 &&
        procs.filter((x) => !x.forker && x.root).length === 2;
      let procs = taskCgroupProcs(pidsCgroups()!.base, ns);
      for (let i = 0; i < 100 && !settled(procs); i++) {
        await new Promise((r) => setTimeout(r, 20));
        procs = taskCgroupProcs(pidsCgroups()!.base, ns);
      }
      const forkers = procs.filter((x) => x.forker);
      assert.equal(forkers.length, 3, "one forker per task cgroup");
      const spare = new Set(procs.filter((x) => !x.forker && x.root).map((x) => x.cgroup));
      assert.equal(spare.size, 2, "two spares wait, each in a task cgroup of its own");
      const counts: Record<string, number>[] = [];
      if (how === "killed while asked for a spare") {
        // The parent asks a stopped forker for the next spare while this task runs, and
        // waits for its answer before it reports the task's end; the forker dies instead.
        for (const f of forkers) Deno.kill(f.pid, "SIGSTOP");
        const asked = limited();
        await new Promise((r) => setTimeout(r, 300));
        for (const f of forkers) Deno.kill(f.pid, "SIGKILL");
        counts.push(await asked);
      } else {
        for (const f of forkers) {
          if (how === "killed" || !spare.has(f.cgroup)) Deno.kill(f.pid, "SIGKILL");
        }
      }
      for (let i = 0; i < 4; i++) counts.push(await limited());
      const after = [];
      for (let i = 0; i < 6; i++) after.push(await run());
      assert.equal(new Set([...before, ...after].map((r) => r[0])).size, 1, "one warm parent");
      for (const [, cgroup] of after) {
        assert.match(cgroup.join(), /:pids:\/gleitzeit-\d+\/pool-\d+\/t\d,/);
      }
      // 3 with the task itself, however its forker fared
      for (const c of counts) assert.equal(c.ok, 2, JSON.stringify(counts));
    } finally {
      await p.close();
    }
  });
}

/**
 * Processes in task cgroups below `base`, in the PID namespace `ns` (one warm parent's
 * sandbox); those that hold a socket (to their warm parent) are forkers; `root`: its real
 * uid is 0 (a forker, or a spare that has not dropped to the sandbox user).
 */
function taskCgroupProcs(
  base: string,
  ns: string,
): { pid: number; cgroup: string; forker: boolean; root: boolean }[] {
  const found: { pid: number; cgroup: string; forker: boolean; root: boolean }[] = [];
  // (another test's pool, in this same process, may be removed while this looks)
  const list = (dir: string) => {
    try {
      return [...Deno.readDirSync(dir)].filter((e) => e.isDirectory).map((e) => e.name);
    } catch {
      return [];
    }
  };
  for (const pool of list(base)) {
    for (const t of list(`${base}/${pool}`)) {
      const cgroup = `${base}/${pool}/${t}`;
      let procs = "";
      try {
        procs = Deno.readTextFileSync(`${cgroup}/cgroup.procs`);
      } catch {
        continue;
      }
      for (const pid of procs.split("\n").filter(Boolean).map(Number)) {
        try {
          if (Deno.readLinkSync(`/proc/${pid}/ns/pid`) !== ns) continue;
          const links = [...Deno.readDirSync(`/proc/${pid}/fd`)].map((e) => {
            try {
              return Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`);
            } catch {
              return "";
            }
          });
          const uid = Deno.readTextFileSync(`/proc/${pid}/status`).match(/^Uid:\s+(\d+)/m);
          found.push({
            pid,
            cgroup,
            forker: links.some((l) => l.startsWith("socket:")),
            root: uid?.[1] === "0",
          });
        } catch {
          // ended meanwhile (a task)
        }
      }
    }
  }
  return found;
}

for (const poolSize of [0, 1]) {
  Deno.test(`[bwrap, ${poolSize ? "warm" : "cold"}] a task's own max_processes holds`, async () => {
    const p = new PythonProvider({ sandbox: "bwrap", poolSize });
    try {
      const c = await p.call(
        "python/execute",
        { code: forker(10, 0) },
        makeCtx({
          sandbox: { task: { max_processes: 5 } },
        }),
      ) as { result: Record<string, number> };
      // 5 with the task itself. Cold, the rlimit counts every process of uid 65534 (other
      // tasks' too), so fewer may start; warm, the task's cgroup counts its own only.
      if (poolSize) assert.equal(c.result.ok, 4, JSON.stringify(c.result));
      else assert.ok(c.result.ok <= 4, JSON.stringify(c.result));
      assert.equal(c.result.ok + c.result.failed, 10);
    } finally {
      await p.close();
    }
  });
}

Deno.test("[bwrap, warm] task cgroups are made below Gleitzeit's own (its service's limits hold)", async () => {
  if (!asRoot) return assert.equal(pidsCgroups(), undefined);
  const root = pidsCgroups()!.base.replace(/\/gleitzeit-\d+$/, "");
  const service = `${root}/gleitzeit-test-service-${Deno.pid}`;
  const dir = await Deno.makeTempDir();
  Deno.mkdirSync(service);
  try {
    Deno.writeTextFileSync(`${service}/pids.max`, "500");
    const provider = new URL("../../../src/providers/python/python_provider.ts", import.meta.url);
    await Deno.writeTextFile(
      `${dir}/driver.ts`,
      `import { PythonProvider } from ${JSON.stringify(provider.href)};
const p = new PythonProvider({ sandbox: "bwrap", poolSize: 1 });
const ctx = { signal: new AbortController().signal, runId: "r", taskId: "t", attempt: 1 };
const code = "result = [l for l in open('/proc/self/cgroup').read().splitlines() if ':pids:' in l]";
console.log(JSON.stringify(((await p.call("python/execute", { code }, ctx)) as { result: unknown }).result));
await p.close();
`,
    );
    // Gleitzeit started inside a service's cgroup, as systemd would.
    const run = await new Deno.Command("bash", {
      args: [
        "-c",
        `echo $$ > "$1/cgroup.procs" && exec "$2" run -A "$3/driver.ts"`,
        "-",
        service,
        Deno.execPath(),
        dir,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(run.success, new TextDecoder().decode(run.stderr));
    const [line] = JSON.parse(new TextDecoder().decode(run.stdout)) as string[];
    // The sandbox's cgroup namespace starts at the service's cgroup.
    assert.match(line, /:pids:\/gleitzeit-\d+\/pool-\d+\/t\d+$/);
    assert.doesNotMatch(line, /\.\./, "outside the service's cgroup");
  } finally {
    closePidsCgroups();
    await Deno.remove(dir, { recursive: true });
    for (let i = 0; i < 100; i++) {
      try {
        Deno.removeSync(service, { recursive: false });
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }
});

Deno.test("[bwrap, warm] providers of one process (workers) opening and closing cgroups at once all get theirs", async () => {
  if (!asRoot) return assert.equal(pidsCgroups(), undefined);
  const module = new URL("../../../src/providers/python/task_cgroups.ts", import.meta.url).href;
  const dir = await Deno.makeTempDir({ prefix: "gleitzeit-cgroup-race-" });
  try {
    // Each worker, like a provider in a worker of its own: find the hierarchy, make a pool
    // cgroup, remove it, close (which removes this process's directory when empty).
    await Deno.writeTextFile(
      `${dir}/worker.ts`,
      `import { PidsCgroups } from ${JSON.stringify(module)};
const failed = [];
for (let i = 0; i < 150; i++) {
  const c = PidsCgroups.open();
  if (!c) {
    failed.push("open");
    continue;
  }
  try {
    await c.remove(c.create("race", "max"));
  } catch (e) {
    failed.push(String(e));
  }
  c.close();
}
self.postMessage(failed);
`,
    );
    const failures = await Promise.all(Array.from({ length: 4 }, () => {
      const w = new Worker(new URL(`file://${dir}/worker.ts`).href, { type: "module" });
      return new Promise<string[]>((resolve, reject) => {
        w.onmessage = (e) => {
          w.terminate();
          resolve(e.data as string[]);
        };
        w.onerror = (e) => {
          w.terminate();
          reject(new Error(e.message));
        };
      });
    }));
    assert.deepEqual(failures, [[], [], [], []]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
