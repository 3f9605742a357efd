/** Whether a run's owner is still alive: heartbeats, plus a pid check on the same host. @module */

import type { RunState } from "../core/states.ts";
import type { RunRecord, Store, TaskRecord } from "../persistence/store.ts";

/** How often an executing engine records its heartbeat (ms), unless told otherwise. */
export const HEARTBEAT_MS = 2_000;

/** Default: a run whose heartbeat is older than this is interrupted (3 missed heartbeats). */
export const STALE_AFTER_MS = 3 * HEARTBEAT_MS;

function hostname(): string | undefined {
  try {
    return Deno.hostname();
  } catch {
    return undefined;
  }
}

/** The pid in an owner string `host:pid:nonce`, when the owner runs on this host. */
export function localOwnerPid(owner: string | undefined): number | undefined {
  if (!owner) return undefined;
  const parts = owner.split(":");
  if (parts.length < 3) return undefined;
  const pid = Number(parts[parts.length - 2]);
  const host = parts.slice(0, -2).join(":");
  return host === hostname() && Number.isInteger(pid) ? pid : undefined;
}

/**
 * True when a process with this pid exists: signal 0, which only checks. (Deno asks for
 * --allow-all to read /proc, which the CLI does not have; kill needs only --allow-run.)
 */
export function pidAlive(pid: number): boolean {
  try {
    // Deno's types list only named signals; 0 is POSIX's existence check
    (Deno.kill as (pid: number, signal: number) => void)(pid, 0);
  } catch (e) {
    // EPERM: it exists but belongs to someone else
    return e instanceof Deno.errors.PermissionDenied;
  }
  // a killed process its parent has not reaped yet (a zombie) answers too: it is gone
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return true; // no /proc to ask (or not allowed): it answered
  }
}

/**
 * True while the run's owner shows signs of life: its process is there (same host) and its
 * last heartbeat is within its own lease ({@link RunRecord.leaseMs}), or within
 * `staleAfterMs` for an owner that declared none.
 */
export function ownerAlive(run: RunRecord, now: number, staleAfterMs = STALE_AFTER_MS): boolean {
  if (!run.owner) return false;
  const pid = localOwnerPid(run.owner);
  if (pid !== undefined && !pidAlive(pid)) return false;
  return run.heartbeatAt !== undefined && now - run.heartbeatAt <= (run.leaseMs ?? staleAfterMs);
}

/** The state to show: a running run whose owner is gone is `interrupted`. */
export function displayState(run: RunRecord, now: number = Date.now()): RunState {
  if (run.state === "running" && !ownerAlive(run, now)) return "interrupted";
  return run.state;
}

/**
 * Whether the process that executed run `runId` is gone for good (none, or its pid is dead
 * on this machine), not only silent for a while (stopped with Ctrl-Z, say: it may go on).
 */
export async function ownerGone(store: Store, runId: string): Promise<boolean> {
  const run = await store.getRun(runId);
  if (!run?.owner) return true;
  const pid = localOwnerPid(run.owner);
  return pid !== undefined && !pidAlive(pid);
}

/**
 * When a run whose owner died last showed a sign of life, as far as the store tells: its last
 * heartbeat, or a later start or end of one of its tasks (heartbeats come every
 * {@link HEARTBEAT_MS}: a task that started or ended after the last one is later news).
 */
export function lastSignOfLife(run: RunRecord, tasks: TaskRecord[]): number | undefined {
  let last = run.heartbeatAt;
  for (const t of tasks) {
    for (const at of [t.startedAt, t.finishedAt]) {
      if (at !== undefined && (last === undefined || at > last)) last = at;
    }
  }
  return last;
}

/**
 * When an attempt a dead owner left running ended, as far as anyone knows: at the owner's last
 * sign of life, though not before the attempt began, nor after `now` (when it is found).
 */
export function leftAttemptEnd(
  lastSign: number | undefined,
  startedAt: number | undefined,
  now: number,
): number {
  return lastSign === undefined ? now : Math.min(now, Math.max(lastSign, startedAt ?? lastSign));
}
