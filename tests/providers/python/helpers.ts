/** Shared helpers for the python/v1 tests. @module */

import assert from "node:assert/strict";
import type { CallContext } from "../../../src/providers/provider.ts";
import { canReadProc, isAlive } from "../../../src/providers/python/process_tree.ts";

/** A call context with its own AbortController. */
export function makeCtx(
  extra: Partial<CallContext> = {},
): CallContext & { controller: AbortController } {
  const controller = new AbortController();
  return {
    signal: controller.signal,
    runId: "run-test",
    taskId: "task-test",
    attempt: 1,
    controller,
    ...extra,
  };
}

/** Waits until `file` holds a JSON array of at least `n` pids, and returns them. */
export async function waitForPids(file: string, n: number, timeoutMs = 10_000): Promise<number[]> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    try {
      const pids = JSON.parse(await Deno.readTextFile(file)) as number[];
      if (pids.length >= n) return pids;
    } catch {
      // Not written yet.
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`the task never wrote ${n} pids to ${file}`);
}

interface PsRow {
  pid: number;
  stat: string;
  args: string;
}

/** Every process, from /proc when Deno may read it, else from `ps` (scoped permissions). */
async function processes(): Promise<PsRow[]> {
  if (!canReadProc()) {
    const out = await new Deno.Command("ps", { args: ["-eo", "pid=,stat=,args="], stdout: "piped" })
      .output();
    return new TextDecoder().decode(out.stdout).split("\n").filter((l) => l.trim()).map((l) => {
      const [pid, stat, ...args] = l.trim().split(/\s+/);
      return { pid: Number(pid), stat, args: args.join(" ") };
    });
  }
  const rows: PsRow[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    const pid = Number(entry.name);
    if (!Number.isInteger(pid)) continue;
    try {
      const args = Deno.readTextFileSync(`/proc/${pid}/cmdline`).replaceAll("\0", " ");
      rows.push({ pid, stat: isAlive(pid) ? "R" : "Z", args });
    } catch {
      // Gone.
    }
  }
  return rows;
}

/** True when `pid` exists and is not a zombie. */
export async function alive(pid: number): Promise<boolean> {
  if (canReadProc()) return isAlive(pid);
  const row = (await processes()).find((r) => r.pid === pid);
  return row !== undefined && !row.stat.startsWith("Z");
}

/** Polls until none of `pids` is alive; returns how long that took, or fails after `withinMs`. */
export async function assertAllDead(pids: number[], withinMs: number): Promise<number> {
  const start = performance.now();
  while (true) {
    const rows = await processes();
    const live = new Set(rows.filter((r) => !r.stat.startsWith("Z")).map((r) => r.pid));
    const alive = pids.filter((p) => live.has(p));
    const elapsed = performance.now() - start;
    if (alive.length === 0) return elapsed;
    if (elapsed > withinMs) {
      for (const pid of alive) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch { /* gone */ }
      }
      assert(false, `still alive ${withinMs} ms after the abort: ${alive.join(", ")}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Pids (host view) of live processes whose command line contains `marker`. */
export async function pidsWithMarker(marker: string): Promise<number[]> {
  return (await processes())
    .filter((r) => r.pid !== Deno.pid && !r.stat.startsWith("Z") && r.args.includes(marker))
    .map((r) => r.pid);
}

/** Waits until at least `n` live processes carry `marker`; returns their pids. */
export async function waitForMarked(marker: string, n: number, timeoutMs = 10_000) {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const pids = await pidsWithMarker(marker);
    if (pids.length >= n) return pids;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(
    `never saw ${n} processes marked ${marker} (saw ${(await pidsWithMarker(marker)).length})`,
  );
}

/** A unique marker for command lines. */
export function newMarker(): string {
  return `gz-marker-${crypto.randomUUID()}`;
}

/**
 * Python that starts three sleepers carrying `marker` in their command line (a plain child,
 * a `setsid` child and a double-forked `setsid` grandchild whose parent exits), then sleeps.
 */
export function spawnMarked(marker: string): string {
  return `
import os, sys, subprocess, time
sleeper = [sys.executable, "-c", "import time; time.sleep(120)", ${JSON.stringify(marker)}]
subprocess.Popen(sleeper)
subprocess.Popen(sleeper, start_new_session=True)
pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, sleeper)
    os._exit(0)
os.waitpid(pid, 0)
time.sleep(120)
`;
}

/**
 * Runs `fn` with tracefs mounted at a directory of its own (root only), unmounted after: a
 * fresh machine may have none mounted, and tests running at once do not unmount each other's.
 */
export async function withTracefs<T>(fn: (tracing: string) => Promise<T>): Promise<T> {
  if (Deno.uid() !== 0) throw new Error("this test needs root to use tracefs");
  const dir = await Deno.makeTempDir({ prefix: "gleitzeit-tracefs-" });
  const run = async (cmd: string, ...args: string[]) => {
    const r = await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).output();
    if (!r.success) {
      throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(r.stderr).trim()}`);
    }
  };
  try {
    await run("mount", "-t", "tracefs", "nodev", dir);
    try {
      return await fn(dir);
    } finally {
      await run("umount", dir);
    }
  } finally {
    await Deno.remove(dir);
  }
}

/** Python: [this task's pid, the next task's spare's] in a warm sandbox's PID namespace: the
 * newest process but this task (the spare after it is asked for only once this task ends). */
export const NEXT_SPARE = `
import os, time
me = os.getpid()
deadline = time.time() + 5
newer = []
while not newer and time.time() < deadline:
    newer = [int(n) for n in os.listdir("/proc") if n.isdigit() and int(n) > me]
    time.sleep(0.005)
result = [me, max(newer)]
`;
