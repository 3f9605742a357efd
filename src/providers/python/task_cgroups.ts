/**
 * Per-task process limits for warm tasks through the pids cgroup controller. `max_processes`
 * as an rlimit (RLIMIT_NPROC) counts every process of the sandbox user, so concurrent tasks
 * would share one budget: a fork bomb in one task could make forks fail in another. Where
 * Gleitzeit runs as root and the cgroup v1 `pids` controller is mounted, each warm task gets
 * a cgroup of its own with `pids.max`, and the rlimit is not set for it. Elsewhere (cold
 * tasks, cgroup v2, not root) the rlimit stays, shared per user, as the README states.
 *
 * Layout: `<Gleitzeit's own pids cgroup>/gleitzeit-<pid>/` per Gleitzeit process (below its
 * own, so tasks stay within the limits of the service that runs it); below that `pool-<n>`
 * per warm parent, bound into its sandbox, where the parent keeps three task cgroups `t<n>`
 * in turn. In each lives a forker, a child of the warm parent that clones the spares of that
 * cgroup (as the warm parent's children, CLONE_PARENT), so no process moves between cgroups
 * per task: a move can wait milliseconds for an RCU grace period. Where a forker cannot be
 * used, a spare moves itself into its cgroup (as root, before it drops to the sandbox user)
 * while it waits for its job. `pids.max` counts the forker: the task's limit plus one.
 *
 * @module
 */

/** Where a warm parent sees its pool's cgroup directory (bound there by bwrap). */
export const SANDBOX_POOL_CGROUP = "/run/gleitzeit-cgroup";

let detected: PidsCgroups | null | undefined;

/** Tries of a mkdir whose parent another provider of this process may remove meanwhile. */
const RETRIES = 5;

/**
 * The pids cgroups of this process, or undefined where they cannot be used. Only for an
 * orchestrator that runs as root (the caller knows: the interpreter probe reports the uid).
 */
export function pidsCgroups(): PidsCgroups | undefined {
  if (detected === undefined) detected = PidsCgroups.open() ?? null;
  return detected ?? undefined;
}

/** Removes this process's cgroup directory when nothing is left in it (if ever made). */
export function closePidsCgroups(): void {
  detected?.close();
}

/** One Gleitzeit process's directory in the pids hierarchy. */
export class PidsCgroups {
  readonly base: string;
  #serial = 0;

  private constructor(base: string) {
    this.base = base;
  }

  /** Finds a writable pids hierarchy (root only) and makes this process's directory. */
  static open(): PidsCgroups | undefined {
    const found = findPidsHierarchy();
    if (!found) return undefined;
    sweepDead(found.root);
    const base = `${found.root}/gleitzeit-${Deno.pid}`;
    // A trial child: pids.max must be there and writable. A name of its own, and again
    // when the directory went meanwhile: providers of this process (workers, threads of
    // their own) open and close at once, and closing removes the directory when empty.
    for (let attempt = 1;; attempt++) {
      const probe = `${base}/probe-${crypto.randomUUID().slice(0, 8)}`;
      try {
        Deno.mkdirSync(base, { recursive: true });
        Deno.mkdirSync(probe);
        try {
          Deno.writeTextFileSync(`${probe}/pids.max`, "1");
        } finally {
          Deno.removeSync(probe);
        }
        return new PidsCgroups(base);
      } catch (e) {
        const raced = e instanceof Deno.errors.NotFound || e instanceof Deno.errors.AlreadyExists;
        if (raced && attempt < RETRIES) continue;
        try {
          Deno.removeSync(base);
        } catch {
          // not made, or not empty
        }
        return undefined;
      }
    }
  }

  /** A new cgroup below this process's directory with `pids.max` set (`"max"`: none). */
  create(prefix: string, max: number | "max"): string {
    let dir = `${this.base}/${prefix}-${++this.#serial}`;
    for (let gone = 0, taken = 0;;) {
      try {
        Deno.mkdirSync(dir);
        break;
      } catch (e) {
        if (e instanceof Deno.errors.AlreadyExists && ++taken < 1000) {
          // another provider of this process (its own numbers) has that one: the next
          dir = `${this.base}/${prefix}-${++this.#serial}`;
        } else if (e instanceof Deno.errors.NotFound && ++gone < RETRIES) {
          // this process's directory went with a close() (of another provider, maybe just
          // now): make it again (unless another provider just did)
          try {
            Deno.mkdirSync(this.base, { recursive: true });
          } catch (e) {
            if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
          }
        } else {
          throw e;
        }
      }
    }
    try {
      Deno.writeTextFileSync(`${dir}/pids.max`, String(max));
    } catch (e) {
      removeCgroupSync(dir);
      throw e;
    }
    return dir;
  }

  /**
   * Removes a cgroup and the ones below it once their processes are gone (a killed process
   * leaves its cgroup a moment after its kill): retries for up to `waitMs`.
   */
  async remove(dir: string, waitMs = 5_000): Promise<boolean> {
    const until = Date.now() + waitMs;
    while (true) {
      if (removeCgroupSync(dir)) return true;
      if (Date.now() > until) return false;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** Removes this process's directory if no cgroup is left below it. */
  close(): void {
    try {
      Deno.removeSync(this.base);
    } catch {
      // cgroups of other providers of this process, or gone already
    }
  }
}

/** rmdir of a cgroup and its child cgroups, deepest first; true when it is gone. */
function removeCgroupSync(dir: string): boolean {
  try {
    for (const entry of Deno.readDirSync(dir)) {
      if (entry.isDirectory) removeCgroupSync(`${dir}/${entry.name}`);
    }
    Deno.removeSync(dir);
    return true;
  } catch (e) {
    return e instanceof Deno.errors.NotFound;
  }
}

/**
 * This process's own cgroup in the v1 `pids` hierarchy: tasks' cgroups go below it, so they
 * stay within whatever limits the service that runs Gleitzeit has. Not cgroup v2: there a
 * cgroup with processes (Gleitzeit's own) cannot have child cgroups with controllers, and a
 * cgroup elsewhere would take tasks out of the service's limits.
 */
function findPidsHierarchy(): { root: string } | undefined {
  let mountinfo: string;
  let own: string;
  try {
    mountinfo = Deno.readTextFileSync("/proc/self/mountinfo");
    own = Deno.readTextFileSync("/proc/self/cgroup");
  } catch {
    return undefined;
  }
  const path = own.split("\n").map((l) => l.split(":")).find((f) => f[1] === "pids")?.[2];
  if (path === undefined) return undefined;
  for (const line of mountinfo.split("\n")) {
    const [left, right] = line.split(" - ");
    if (!left || !right) continue;
    const [, , , mountRoot, mountPoint] = left.split(" ");
    const [fsType, , superOptions = ""] = right.split(" ");
    if (fsType !== "cgroup" || !superOptions.split(",").includes("pids")) continue;
    // The mount shows the hierarchy from mountRoot down (a container's view starts lower).
    const inside = mountRoot === "/" || path === mountRoot || path.startsWith(`${mountRoot}/`);
    if (!inside) return undefined;
    const below = path.slice(mountRoot.length).replace(/^\/+|\/+$/g, "");
    return { root: below ? `${mountPoint}/${below}` : mountPoint };
  }
  return undefined;
}

/** Directories of Gleitzeit processes that are gone (killed before they could clean up). */
function sweepDead(root: string): void {
  try {
    for (const entry of Deno.readDirSync(root)) {
      const m = /^gleitzeit-(\d+)$/.exec(entry.name);
      if (!m || !entry.isDirectory || Number(m[1]) === Deno.pid) continue;
      try {
        Deno.statSync(`/proc/${m[1]}`);
        continue; // alive
      } catch {
        removeCgroupSync(`${root}/${entry.name}`);
      }
    }
  } catch {
    // nothing to sweep
  }
}
