/**
 * The bubblewrap command line of a sandboxed Python process: own PID, network, IPC, UTS and
 * mount namespaces; the system read-only; only the task directory (and declared paths)
 * writable; dies with its parent. When the orchestrator runs as root, bwrap runs without a
 * user namespace and the runner drops to uid/gid 65534 itself (bwrap grants it only
 * CAP_SETUID/CAP_SETGID for that, with no_new_privs set); otherwise bwrap maps the sandbox
 * into a user namespace of the calling user.
 *
 * @module
 */

import { dirname } from "node:path";
import { GleitzeitError } from "../../core/errors.ts";
import type { PythonInterpreter } from "./python_interpreter.ts";

/** The unprivileged user tasks run as when the orchestrator is root. */
export const SANDBOX_UID = 65534;

/**
 * Size cap of a sandbox's private /dev/shm (POSIX shared memory and semaphores): memory, not
 * disk, shared by a warm parent's tasks one at a time (leftovers retire the parent).
 */
export const SHM_TMPFS_BYTES = 256 * 1024 * 1024;

/** How to install bubblewrap, for error hints. */
export const BWRAP_INSTALL_HINT =
  "install bubblewrap (Debian/Ubuntu: `apt-get install -y bubblewrap`; Fedora: `dnf install " +
  "bubblewrap`), or choose a weaker sandbox explicitly with `sandbox: basic` (limits only) or " +
  "`sandbox: none`";

const BWRAP_CANDIDATES = ["/usr/bin/bwrap", "/usr/local/bin/bwrap", "/bin/bwrap"];

/**
 * Finds the bwrap executable: an explicit path wins; else the system's usual places, then
 * PATH (bubblewrap from Nix, or in ~/.local/bin); or fails with how to install it.
 */
export function findBwrap(explicit?: string): string {
  let path = "";
  try {
    path = Deno.env.get("PATH") ?? "";
  } catch {
    // not permitted to read it: the usual places only
  }
  const onPath = path.split(":")
    .filter((dir) => dir.startsWith("/"))
    .map((dir) => `${dir.replace(/\/+$/, "")}/bwrap`);
  for (const candidate of explicit ? [explicit] : [...BWRAP_CANDIDATES, ...onPath]) {
    try {
      const info = Deno.statSync(candidate);
      if (info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0) return candidate; // executable
    } catch {
      // Try the next one.
    }
  }
  throw new GleitzeitError(
    "SANDBOX_UNAVAILABLE",
    `the Python sandbox needs bubblewrap, which was not found (${
      explicit ?? `${BWRAP_CANDIDATES.join(", ")} or on PATH`
    })`,
    { hint: BWRAP_INSTALL_HINT },
  );
}

/** What one sandbox needs to see. */
export interface BwrapMounts {
  /**
   * The task (or pool) directory: writable, bound at the same path. A cold sandboxed task
   * has none: its work dir is a tmpfs and its result file is bound in on its own.
   */
  taskDir?: string;
  /** Bind `taskDir` read-only (a warm parent whose tasks live on a tmpfs below it). */
  taskDirReadOnly?: boolean;
  /** Working directory inside. */
  cwd: string;
  network: boolean;
  read: string[];
  write: string[];
  /** The sandbox's /etc/hosts (network grants name their hosts there). */
  hostsFile?: string;
  /** Lets the runner listen on ports below 1024 of its own network namespace (grants). */
  bindLowPorts?: boolean;
  /** As root: keep root's capabilities (a warm parent); otherwise all but setuid/setgid go. */
  keepRootCaps?: boolean;
  /** As root, without keepRootCaps: CAP_SYS_ADMIN too (a cold runner capping its tmpfs). */
  remountCap?: boolean;
  /** Further mounts (bwrap arguments): made before the sandbox's root is sealed read-only. */
  extra?: string[];
  /** The command is the PID namespace's init (`--as-pid-1`): no bwrap reaper process. */
  asPid1?: boolean;
  /**
   * Cover /proc/1 (bwrap's reaper, PID 1) with an empty read-only directory: without root the
   * reaper is the task's own user's, and a task could otherwise open its memory (the filter
   * refuses the system calls that reach it: see seccomp.ts).
   */
  hideInit?: boolean;
  /**
   * Without root: CAP_SYS_ADMIN in the task's user namespace, for the runner to mount its
   * tmpfs anew with a cap on files (it drops every capability then: see its _own_tmpfs).
   */
  ownTmpfsCap?: boolean;
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

function isSymlink(path: string): string | undefined {
  try {
    return Deno.readLinkSync(path);
  } catch {
    return undefined;
  }
}

/** The bwrap arguments (everything before the command to run). */
export function bwrapArgs(py: PythonInterpreter, mounts: BwrapMounts): string[] {
  const args = [
    "--unshare-pid",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-cgroup-try",
    "--die-with-parent",
    "--new-session",
    "--hostname",
    "sandbox",
  ];
  if (mounts.asPid1) args.push("--as-pid-1");
  if (!mounts.network) args.push("--unshare-net");
  if (py.uid === 0) {
    // As root, bwrap would keep every capability. A cold runner needs only these, until it
    // drops to the sandbox user (setresuid clears them) before user code runs; a warm parent
    // keeps root's to set up each child's files (the children drop them all the same way).
    if (!mounts.keepRootCaps) args.push("--cap-drop", "ALL");
    args.push("--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID");
    if (mounts.remountCap && !mounts.keepRootCaps) args.push("--cap-add", "CAP_SYS_ADMIN");
  } else {
    // Binding a port below 1024 needs the capability in the user namespace that owns the
    // network namespace; bwrap switches to any other uid through a nested one. So grants of
    // such ports run as uid 0 of the task's own user namespace: the calling user on the host,
    // as uid 65534 would be too, without capabilities but that one.
    const uid = String(mounts.bindLowPorts && !mounts.network ? 0 : SANDBOX_UID);
    args.push("--unshare-user", "--uid", uid, "--gid", uid);
    if (mounts.ownTmpfsCap) {
      args.push("--cap-add", "CAP_SYS_ADMIN");
      // uid 0 there (low ports): its bounding set must lose CAP_SYS_ADMIN too, or what it
      // executes as that uid would have it again; dropping it takes CAP_SETPCAP
      if (mounts.bindLowPorts && !mounts.network) args.push("--cap-add", "CAP_SETPCAP");
    }
  }
  // Only ever with its own network namespace: low ports there reach nothing else.
  if (mounts.bindLowPorts && !mounts.network) args.push("--cap-add", "CAP_NET_BIND_SERVICE");
  args.push("--ro-bind", "/usr", "/usr");
  for (const top of ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"]) {
    const target = isSymlink(top);
    if (target !== undefined) args.push("--symlink", target, top);
    else if (exists(top)) args.push("--ro-bind", top, top);
  }
  const etc = [
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/alternatives",
    "/etc/mime.types",
  ];
  if (mounts.network) etc.push("/etc/resolv.conf", "/etc/hosts", "/etc/gai.conf", "/etc/services");
  // bwrap would create /etc as 0700: nothing in it would be readable by the sandbox user.
  args.push("--perms", "0755", "--dir", "/etc");
  for (const path of etc) args.push("--ro-bind-try", path, path);
  if (mounts.hostsFile && !mounts.network) args.push("--ro-bind", mounts.hostsFile, "/etc/hosts");
  // The IPC namespace's POSIX message queues, visible so a warm parent can see leftovers; a
  // private /dev/shm for POSIX shared memory and semaphores (multiprocessing needs them).
  args.push("--proc", "/proc", "--dev", "/dev", "--mqueue", "/dev/mqueue");
  if (mounts.hideInit) args.push("--tmpfs", "/proc/1", "--remount-ro", "/proc/1");
  args.push("--perms", "1777", "--size", String(SHM_TMPFS_BYTES), "--tmpfs", "/dev/shm");
  // No tmpfs: TMPDIR is the task's work dir. /tmp, like everything bwrap makes in the
  // sandbox's root and /dev (tmpfs of no size cap), is read-only below: without root, the
  // task's user owns them, and could fill memory there or leave files for a warm parent's
  // next task.
  args.push("--perms", "0755", "--dir", "/tmp");
  const made = new Set<string>();
  const bind = (flag: string, path: string) => {
    // bwrap would create missing parents with the host's modes (e.g. /root is 0700, which
    // the sandbox user could not traverse): create them traversable instead.
    for (const dir of ancestors(path)) {
      if (made.has(dir) || dir === "/usr" || dir.startsWith("/usr/") || dir === "/tmp") continue;
      made.add(dir);
      args.push("--perms", "0755", "--dir", dir);
    }
    args.push(flag, path, path);
  };
  // The interpreter's own tree, when it lives outside /usr (pyenv, a venv, /opt).
  const trees = new Set([py.prefix, py.basePrefix, dirname(dirname(py.executable))]);
  for (const tree of trees) {
    if (tree && !tree.startsWith("/usr/") && tree !== "/usr") bind("--ro-bind", tree);
  }
  for (const path of mounts.read) bind("--ro-bind", path);
  for (const path of mounts.write) bind("--bind", path);
  if (mounts.taskDir !== undefined) {
    bind(mounts.taskDirReadOnly ? "--ro-bind" : "--bind", mounts.taskDir);
  }
  args.push("--chdir", mounts.cwd);
  // (not recursive: the mounts on them, /dev/shm or a work dir, stay writable)
  args.push(...mounts.extra ?? [], "--remount-ro", "/", "--remount-ro", "/dev");
  return args;
}

/** `/a/b/c` -> [`/a`, `/a/b`]. */
function ancestors(path: string): string[] {
  const out: string[] = [];
  let dir = dirname(path);
  while (dir !== "/" && dir !== ".") {
    out.unshift(dir);
    dir = dirname(dir);
  }
  return out;
}

const probes = new Map<string, Promise<void>>();

/**
 * Checks once per process (and bwrap path + interpreter) that bubblewrap can start the
 * interpreter, so a broken setup fails with a clear error instead of a crashed task.
 */
export function probeBwrap(bwrap: string, py: PythonInterpreter, scratch: string): Promise<void> {
  const key = `${bwrap}\0${py.executable}`;
  let probe = probes.get(key);
  if (!probe) {
    probe = (async () => {
      const args = bwrapArgs(py, {
        taskDir: scratch,
        cwd: scratch,
        network: false,
        read: [],
        write: [],
      });
      let out: Deno.CommandOutput;
      try {
        out = await new Deno.Command(bwrap, {
          args: [...args, "--", py.executable, "-I", "-S", "-c", "pass"],
          clearEnv: true,
          stdin: "null",
          stdout: "null",
          stderr: "piped",
        }).output();
      } catch (e) {
        throw new GleitzeitError(
          "SANDBOX_UNAVAILABLE",
          `cannot start bubblewrap (${bwrap}): ${(e as Error).message}`,
          { hint: BWRAP_INSTALL_HINT, cause: e },
        );
      }
      if (!out.success) {
        const why = new TextDecoder().decode(out.stderr).trim().slice(-500);
        throw new GleitzeitError(
          "SANDBOX_UNAVAILABLE",
          `bubblewrap cannot set up the Python sandbox on this machine: ${
            why || `exit ${out.code}`
          }`,
          {
            hint: "bubblewrap needs unprivileged user namespaces (sysctl " +
              "kernel.unprivileged_userns_clone=1) or root; otherwise choose `sandbox: basic` " +
              "or `sandbox: none`",
          },
        );
      }
    })();
    probes.set(key, probe);
    probe.catch(() => probes.delete(key));
  }
  return probe;
}
