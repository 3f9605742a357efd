/**
 * python/v1 start-up costs against raw baselines measured in the same run:
 *
 *   raw spawn            `python3 -I -S -c pass`
 *   bwrap spawn          the same inside our bubblewrap sandbox (its setup = the difference)
 *   cold sandboxed task  PythonProvider, sandbox bwrap, no pool, `result = 1`
 *   raw warm round trip  a JSON line to a long-running Python process and back
 *   ... + fork           the same, the Python side forking and reaping a child per message
 *   warm-pool task       PythonProvider, sandbox bwrap, pool of 1, `result = 1`
 *
 * Targets (issue 5): cold <= 1.25 x raw spawn + sandbox setup; warm p50 <= 2 x (round trip
 * + fork); warm p99 <= 5 ms. Also printed: the second task of bursts that follow 50 ms of idle
 * (the first runs on a spare made long before; the second on one made while the first ran),
 * and both, pool and fork trip, paced: each task 2 ms after the one before.
 *
 * The warm pool and its round-trip baselines run in turn, in blocks of 25, and the two spawns
 * and the cold task in blocks of 10, so that each ratio's two sides see the same machine. Also printed, to tell what the machine costs: the machine's CPU time per
 * task (all CPUs, from /proc/stat: what a fork-per-task design is bound by when the CPUs are
 * busy) for the fork baseline and the warm pool, and the first touch of a 4 KiB page in a
 * freshly forked child against the same in its parent (a hypervisor that shadows page tables
 * makes the child's cost microseconds a page, and a Python child touches hundreds) and the
 * child's first write to it (the page's copy), the share of CPU time the host gave others
 * while the warm measures ran (steal), and whether the pool's spares take pages ahead.
 *
 * Run: deno run --allow-all bench/python_bench.ts [--cold N] [--warm N] [--bursts N] [--paced N] [--json]
 */

import { bwrapArgs, findBwrap } from "../src/providers/python/bubblewrap.ts";
import { resolvePython } from "../src/providers/python/python_interpreter.ts";
import { PythonProvider } from "../src/providers/python/python_provider.ts";

function arg(name: string, fallback: number): number {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Number(Deno.args[i + 1]) : fallback;
}
const COLD = arg("--cold", 60);
const WARM = arg("--warm", 500);
const BURSTS = arg("--bursts", 100);
const PACED = arg("--paced", 200);

interface Stats {
  n: number;
  mean: number;
  p50: number;
  p99: number;
}

function stats(samples: number[]): Stats {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))];
  return {
    n: s.length,
    mean: s.reduce((a, b) => a + b, 0) / s.length,
    p50: at(0.5),
    p99: at(0.99),
  };
}

/** [steal, all] CPU ticks of the whole machine so far (steal: time the host gave others). */
function machineSteal(): [number, number] {
  try {
    const f = Deno.readTextFileSync("/proc/stat").split("\n")[0].trim().split(/\s+/).slice(1, 9)
      .map(Number);
    return [f[7], f.reduce((a, b) => a + b, 0)];
  } catch {
    return [NaN, NaN];
  }
}

/** Busy CPU time of the whole machine so far, in ms (user, nice, system, irq, softirq). */
function machineBusyMs(): number {
  try {
    const f = Deno.readTextFileSync("/proc/stat").split("\n")[0].trim().split(/\s+/).slice(1)
      .map(Number);
    return (f[0] + f[1] + f[2] + f[5] + f[6]) * 10; // USER_HZ = 100
  } catch {
    return NaN;
  }
}

/**
 * `n` runs of each of `fns`, in blocks of `block` taking turns (after a warm-up of each);
 * with `pauseMs`, each timed run follows a pause of that long (not timed).
 */
async function interleaved(
  n: number,
  block: number,
  fns: (() => Promise<unknown>)[],
  warmup = 20,
  pauseMs = 0,
): Promise<(Stats & { cpu_per_task_ms: number })[]> {
  const samples = fns.map(() => [] as number[]);
  const busy = fns.map(() => 0);
  for (const fn of fns) for (let i = 0; i < warmup; i++) await fn();
  for (let done = 0; done < n; done += block) {
    for (const [k, fn] of fns.entries()) {
      const b = machineBusyMs();
      for (let i = 0; i < Math.min(block, n - done); i++) {
        if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
        const t = performance.now();
        await fn();
        samples[k].push(performance.now() - t);
      }
      busy[k] += machineBusyMs() - b;
    }
  }
  return samples.map((s, k) => ({ ...stats(s), cpu_per_task_ms: busy[k] / s.length }));
}

/** Microseconds per first read of a 4 KiB page in the parent and in a freshly forked child. */
async function firstTouch(
  python: string,
): Promise<{ parent_us: number; child_us: number; child_write_us: number }> {
  const probe = `
import mmap, os, time
n = 4096
m = mmap.mmap(-1, n * 4096)
for i in range(0, n * 4096, 4096):
    m[i] = 1
def touch():
    t = time.perf_counter()
    s = 0
    for i in range(0, n * 4096, 4096):
        s += m[i]
    return (time.perf_counter() - t) / n * 1e6
p = mmap.mmap(-1, n * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for i in range(0, n * 4096, 4096):
    p[i] = 1
def write():
    t = time.perf_counter()
    for i in range(0, n * 4096, 4096):
        p[i] = 2
    return (time.perf_counter() - t) / n * 1e6
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(w, b"%f %f" % (touch(), write()))
    os._exit(0)
os.close(w)
child, child_write = (float(x) for x in os.read(r, 64).split())
os.waitpid(pid, 0)
print(touch(), child, child_write)
`;
  const out = await new Deno.Command(python, { args: ["-I", "-S", "-c", probe] }).output();
  const [parent_us, child_us, child_write_us] = new TextDecoder().decode(out.stdout).trim().split(
    /\s+/,
  ).map(Number);
  return { parent_us, child_us, child_write_us };
}

const py = await resolvePython("python3");
const bwrap = findBwrap();
const ctx = () => ({
  signal: new AbortController().signal,
  runId: "bench",
  taskId: "t",
  attempt: 1,
});

const scratch = await Deno.makeTempDir();
const sandboxArgs = bwrapArgs(py, {
  taskDir: scratch,
  cwd: scratch,
  network: false,
  read: [],
  write: [],
});
const cold = new PythonProvider({ sandbox: "bwrap" });
// The three in turn, a block of each at a time, like the warm measures below: on this
// shared, noisy machine, measured one after the other, they saw different loads (the ratio
// moved between 0.97x and 1.28x from run to run).
const [rawSpawn, bwrapSpawn, coldTask] = await interleaved(COLD, 10, [
  () =>
    new Deno.Command(py.executable, { args: ["-I", "-S", "-c", "pass"], stdout: "null" }).output(),
  () =>
    new Deno.Command(bwrap, {
      args: [...sandboxArgs, "--", py.executable, "-I", "-S", "-c", "pass"],
      stdout: "null",
    }).output(),
  () => cold.call("python/execute", { code: "result = 1" }, ctx()),
], 3);
await cold.close();
await Deno.remove(scratch, { recursive: true });

// A long-running Python that answers each JSON line; with "fork", it forks and reaps a child
// per message first (the floor of a fork-per-task design).
const echo = new Deno.Command(py.executable, {
  args: [
    "-I",
    "-S",
    "-c",
    "import sys, os, json\nfor line in sys.stdin:\n    m = json.loads(line)\n    if m.get('fork'):\n" +
    "        pid = os.fork()\n        if pid == 0: os._exit(0)\n        os.waitpid(pid, 0)\n" +
    "    sys.stdout.write(json.dumps({'id': m['id'], 'result': 1}) + '\\n')\n    sys.stdout.flush()\n",
  ],
  stdin: "piped",
  stdout: "piped",
}).spawn();
const writer = echo.stdin.getWriter();
const reader = echo.stdout.pipeThrough(new TextDecoderStream()).getReader();
let buffered = "";
async function roundTrip(fork: boolean, id: number): Promise<void> {
  await writer.write(new TextEncoder().encode(JSON.stringify({ id, fork }) + "\n"));
  while (!buffered.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("echo process ended");
    buffered += value;
  }
  buffered = buffered.slice(buffered.indexOf("\n") + 1);
}
let seq = 0;
const warm = new PythonProvider({ sandbox: "bwrap", poolSize: 1 });
await warm.prewarm();
// The warm pool and its baselines in turn, a block of each at a time, so that all three see
// the same machine (on a shared one, minutes apart can differ by a third).
const stealBefore = machineSteal();
const [rawRoundTrip, rawForkTrip, warmTask] = await interleaved(WARM, 25, [
  () => roundTrip(false, seq++),
  () => roundTrip(true, seq++),
  () => warm.call("python/execute", { code: "result = 1" }, ctx()),
]);
const stealAfter = machineSteal();
// Whether its spares take pages ahead (see the README): the warm parent's own measure.
const pagesAhead = warm.poolStats().bwrap?.pagesAhead;
// The host's share taken from this guest meanwhile (printed with the results): one sign of a
// busy host, where the pool, which needs about three times the fork trip's CPU per task,
// loses more than the baseline does.
const stealPercent = 100 * (stealAfter[0] - stealBefore[0]) /
  Math.max(1, stealAfter[1] - stealBefore[1]);
// Paced: each task 2 ms after the one before, for the pool and the fork trip alike, so that
// what the pool does in the background for the next task (the next spare's clone and set-up,
// the finished task's clean-up) has ended: one task's latency, where the back-to-back loop
// above is bound by the machine's CPU time per task (see "machine CPU per task").
const [pacedForkTrip, pacedTask] = await interleaved(
  PACED,
  25,
  [
    () => roundTrip(true, seq++),
    () => warm.call("python/execute", { code: "result = 1" }, ctx()),
  ],
  5,
  2,
);
// Bursts: tasks come after idle stretches in real workflows. Each burst's second task runs on
// the spare made while the first ran (where that spare had to wait for the kernel, e.g. to
// move into a cgroup after some 20 ms without a move, this is where it shows).
// The same for the fork baseline, in turn with the pool's bursts: after idle, a machine
// (a virtual one above all) wakes slowly, whatever runs on it.
const burstSecond: number[] = [];
const rawBurstSecond: number[] = [];
for (let i = 0; i < BURSTS; i++) {
  await new Promise((r) => setTimeout(r, 50));
  await warm.call("python/execute", { code: "result = 1" }, ctx());
  const t = performance.now();
  await warm.call("python/execute", { code: "result = 1" }, ctx());
  burstSecond.push(performance.now() - t);
  await new Promise((r) => setTimeout(r, 50));
  await roundTrip(true, seq++);
  const u = performance.now();
  await roundTrip(true, seq++);
  rawBurstSecond.push(performance.now() - u);
}
const burstTask = stats(burstSecond);
const rawBurstTask = stats(rawBurstSecond);
await warm.close();
await writer.close();
await echo.status;

const touch = await firstTouch(py.executable);
const setup = Math.max(0, bwrapSpawn.p50 - rawSpawn.p50);
const report = {
  python: py.executable,
  version: py.version,
  raw_spawn_ms: rawSpawn,
  bwrap_spawn_ms: bwrapSpawn,
  sandbox_setup_ms: setup,
  cold_sandboxed_task_ms: coldTask,
  raw_warm_round_trip_ms: rawRoundTrip,
  raw_warm_round_trip_with_fork_ms: rawForkTrip,
  warm_pool_task_ms: warmTask,
  warm_pool_paced_task_ms: pacedTask,
  raw_fork_trip_paced_ms: pacedForkTrip,
  warm_pool_second_task_of_burst_ms: burstTask,
  raw_fork_trip_second_of_burst_ms: rawBurstTask,
  first_page_touch_us: touch,
  pages_ahead: pagesAhead ?? null,
  host_steal_percent_during_warm: stealPercent,
  ratios: {
    cold_vs_raw_spawn_plus_setup: coldTask.p50 / (rawSpawn.p50 + setup),
    warm_p50_vs_round_trip_plus_fork: warmTask.p50 / rawForkTrip.p50,
    warm_p50_vs_round_trip: warmTask.p50 / rawRoundTrip.p50,
    warm_p99_vs_round_trip_plus_fork_p99: warmTask.p99 / rawForkTrip.p99,
    paced_p50_vs_fork_trip: pacedTask.p50 / pacedForkTrip.p50,
    burst_second_p50_vs_raw: burstTask.p50 / rawBurstTask.p50,
    warm_cpu_vs_fork_trip_cpu: warmTask.cpu_per_task_ms / rawForkTrip.cpu_per_task_ms,
  },
};

if (Deno.args.includes("--json")) {
  console.log(JSON.stringify(report, null, 2));
} else {
  const f = (x: number) => x.toFixed(2).padStart(8);
  const row = (name: string, s: Stats) =>
    console.log(
      `${name.padEnd(34)} p50 ${f(s.p50)} ms  p99 ${f(s.p99)} ms  mean ${f(s.mean)} ms  (n=${s.n})`,
    );
  console.log(`python/v1 benchmark — ${py.executable} (Python ${py.version})`);
  row("raw spawn (python3 -I -S -c pass)", rawSpawn);
  row("bwrap spawn (same, sandboxed)", bwrapSpawn);
  console.log(`${"sandbox setup (difference of p50s)".padEnd(34)}     ${f(setup)} ms`);
  row("cold sandboxed task", coldTask);
  row("raw warm round trip (JSON line)", rawRoundTrip);
  row("raw warm round trip + fork", rawForkTrip);
  row("warm-pool task (sandboxed)", warmTask);
  row("  paced (2 ms between tasks)", pacedTask);
  row("  fork trip, paced (same)", pacedForkTrip);
  row("  2nd task of a burst (50 ms idle)", burstTask);
  row("  2nd fork trip of a burst (same)", rawBurstTask);
  const r = report.ratios;
  console.log(
    `cold / (raw spawn + setup)      = ${
      r.cold_vs_raw_spawn_plus_setup.toFixed(2)
    }x  (target <= 1.25x)`,
  );
  console.log(
    `warm p50 / (round trip + fork)  = ${
      r.warm_p50_vs_round_trip_plus_fork.toFixed(2)
    }x  (target <= 2x)`,
  );
  console.log(`warm p50 / round trip           = ${r.warm_p50_vs_round_trip.toFixed(2)}x`);
  console.log(
    `warm p99                        = ${warmTask.p99.toFixed(2)} ms  (target <= 5 ms; ` +
      `${r.warm_p99_vs_round_trip_plus_fork_p99.toFixed(2)}x the fork trip's p99)`,
  );
  console.log(
    `paced warm p50 / fork trip's    = ${r.paced_p50_vs_fork_trip.toFixed(2)}x  ` +
      `(not back to back: no CPU contention with its own background work)`,
  );
  console.log(
    `burst 2nd task p50 / raw's      = ${r.burst_second_p50_vs_raw.toFixed(2)}x`,
  );
  const cpus = navigator.hardwareConcurrency;
  console.log(
    `machine CPU per task (${cpus} CPUs): fork trip ${
      rawForkTrip.cpu_per_task_ms.toFixed(2)
    } ms, ` +
      `warm-pool task ${warmTask.cpu_per_task_ms.toFixed(2)} ms (${
        r.warm_cpu_vs_fork_trip_cpu.toFixed(2)
      }x)`,
  );
  console.log(
    `first touch of a 4 KiB page: parent ${touch.parent_us.toFixed(2)} us, ` +
      `forked child ${touch.child_us.toFixed(2)} us; its first write (a copy) ` +
      `${touch.child_write_us.toFixed(2)} us`,
  );
  console.log(
    pagesAhead
      ? `pages taken ahead: ${pagesAhead.taken ? "yes" : "no"} (a calibration child's CPU ` +
        `${(pagesAhead.cpu_ns_without / 1e6).toFixed(2)} ms without, ` +
        `${(pagesAhead.cpu_ns_with / 1e6).toFixed(2)} ms with)`
      : "pages taken ahead: not measured (not root, or not available here)",
  );
  console.log(
    `host steal during the warm measures: ${stealPercent.toFixed(1)}% of this machine's CPU ` +
      "time (given to other guests)",
  );
}
