/**
 * Hostile Python snippets and how to tell that each was contained. Used by
 * sandbox_escape_test.ts directly and by escape_driver.ts, which runs the same suite in a
 * subprocess under the CLI's scoped Deno permissions.
 *
 * @module
 */

import { GleitzeitError } from "../../../src/core/errors.ts";
import type { PythonProvider } from "../../../src/providers/python/python_provider.ts";
import { killProcessTree } from "../../../src/providers/python/process_tree.ts";
import { alive, makeCtx, newMarker, pidsWithMarker } from "./helpers.ts";

/** Host-side fixtures the snippets attack. */
export interface EscapeEnv {
  /** A world-readable, world-writable directory outside the sandbox (only namespaces protect it). */
  secretDir: string;
  /** A stand-in for the Gleitzeit database, world-readable, holding `secret`. */
  dbFile: string;
  secret: string;
  /** The project tree (source of the orchestrator). */
  projectDir: string;
  /**
   * Whether the orchestrator runs as root (tasks then run as uid 65534); otherwise tasks are
   * its own user, mapped into a user namespace.
   */
  root: boolean;
  /**
   * A process outside any sandbox, running as the sandbox user (uid 65534; without root, the
   * orchestrator's own user), carrying `sentinelMarker`.
   */
  sentinel: Deno.ChildProcess;
  sentinelMarker: string;
}

/** What one case observed. */
export interface EscapeOutcome {
  name: string;
  contained: boolean;
  detail: string;
  ms: number;
}

interface Observed {
  /** The task's `result` value. */
  result?: unknown;
  /** The whole provider result (output, truncation flags). */
  full?: Record<string, unknown>;
  error?: GleitzeitError;
}

/** One hostile snippet. */
export interface EscapeCase {
  name: string;
  code: (env: EscapeEnv, marker: string) => string;
  /** Task-level `sandbox:` declaration. */
  sandbox?: unknown;
  timeout?: number;
  /** Returns undefined when contained, else what escaped. */
  check: (
    o: Observed,
    env: EscapeEnv,
    marker: string,
  ) => Promise<string | undefined> | string | undefined;
}

const py = JSON.stringify;

// 3 s: killing is done by a process of its own, slow to start on a loaded machine; what
// escapes lives on for minutes.
async function noneAlive(marker: string, withinMs = 3000): Promise<string | undefined> {
  const until = performance.now() + withinMs;
  while (performance.now() < until) {
    if ((await pidsWithMarker(marker)).length === 0) return undefined;
    await new Promise((r) => setTimeout(r, 20));
  }
  return `processes still alive ${withinMs} ms after the task: ${
    (await pidsWithMarker(marker)).join(", ")
  }`;
}

function expectError(o: Observed, ...codes: string[]): string | undefined {
  if (!o.error) return `the task succeeded: ${JSON.stringify(o.result).slice(0, 300)}`;
  if (!codes.includes(o.error.code)) return `unexpected error ${o.error.code}: ${o.error.message}`;
  return undefined;
}

/** The suite. */
export const ESCAPE_CASES: EscapeCase[] = [
  {
    name: "read files outside the work dir (database, /etc/shadow, home, project)",
    code: (env) => `
import os
paths = [${py(env.dbFile)}, "/etc/shadow", "/root/.bashrc", "/root/.gleitzeit/gleitzeit.db",
         os.path.expanduser("~root/.profile"), ${py(`${env.projectDir}/deno.json`)},
         "/proc/1/environ", "/etc/hostname"]
got = {}
for p in paths:
    try:
        with open(p, "rb") as f:
            got[p] = f.read(200).decode("utf-8", "replace")
    except Exception as e:
        pass
result = {"read": got, "root_listing": sorted(os.listdir("/")), "home": sorted(os.listdir("/root")) if os.path.isdir("/root") else None}
`,
    check: (o, env) => {
      if (o.error) return `unexpected failure: ${o.error.message}`;
      const got = (o.result as { read: Record<string, string> }).read;
      const leaked = Object.entries(got).filter(([, text]) =>
        text.includes(env.secret) || /root:/.test(text) || text.includes("gleitzeit") ||
        text.includes("PATH=")
      );
      return leaked.length > 0 ? `read: ${leaked.map(([p]) => p).join(", ")}` : undefined;
    },
  },
  {
    name: "write outside the work dir",
    code: (env, marker) => `
import os
targets = [${py(`${env.secretDir}/pwned-${marker}`)}, "/tmp/pwned-${marker}",
           ${py(`${env.projectDir}/pwned-${marker}`)}, "/root/pwned-${marker}",
           "/etc/pwned-${marker}", "/dev/shm/pwned-${marker}", "/pwned-${marker}",
           "/usr/pwned-${marker}"]
wrote = []
for t in targets:
    try:
        with open(t, "w") as f:
            f.write("x")
        wrote.append(t)
    except Exception:
        pass
result = {"wrote_inside_sandbox_view": wrote}
`,
    check: (o, env, marker) => {
      if (o.error) return `unexpected failure: ${o.error.message}`;
      const host = [
        `${env.secretDir}/pwned-${marker}`,
        `/tmp/pwned-${marker}`,
        `${env.projectDir}/pwned-${marker}`,
        `/root/pwned-${marker}`,
        `/etc/pwned-${marker}`,
        `/dev/shm/pwned-${marker}`,
        `/pwned-${marker}`,
        `/usr/pwned-${marker}`,
      ];
      const landed = host.filter((p) => {
        try {
          Deno.statSync(p);
          Deno.removeSync(p);
          return true;
        } catch {
          return false;
        }
      });
      return landed.length > 0 ? `files appeared on the host: ${landed.join(", ")}` : undefined;
    },
  },
  {
    name: "connect to Redis on 127.0.0.1:6379 (and anything else)",
    code: () => `
import socket
reached = []
for host, port in [("127.0.0.1", 6379), ("localhost", 6379), ("1.1.1.1", 53), ("::1", 6379)]:
    try:
        s = socket.create_connection((host, port), timeout=1)
        s.close()
        reached.append("%s:%d" % (host, port))
    except Exception:
        pass
result = {"reached": reached}
`,
    check: (o) => {
      if (o.error) return `unexpected failure: ${o.error.message}`;
      const reached = (o.result as { reached: string[] }).reached;
      return reached.length > 0 ? `connected to ${reached.join(", ")}` : undefined;
    },
  },
  {
    name: "with one grant: reach anything else, or talk the proxy into it",
    // Port 1: nothing listens there outside, so even the granted destination answers nothing.
    sandbox: { network: ["127.0.0.1:1"] },
    code: () => `
import os, socket
reached = []
for host, port in [("127.0.0.1", 6379), ("localhost", 6379), ("127.0.0.1", 5432), ("::1", 6379)]:
    try:
        socket.create_connection((host, port), timeout=1).close()
        reached.append("%s:%d" % (host, port))
    except Exception:
        pass
# The proxy's socket (bound in there): ask it for grants that do not exist, and for
# destinations by address.
path = "/gleitzeit/net.sock"
answers = []
for header in [b"1\\n", b"7\\n", b"-1\\n", b"127.0.0.1:6379\\n", b"0 6379\\n", b"x" * 64 + b"\\n"]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        s.sendall(header + b"PING\\r\\n")
        s.settimeout(2)
        answers.append(s.recv(64).decode("latin-1"))
    except OSError as e:
        answers.append(type(e).__name__)
    finally:
        s.close()
result = {"reached": reached, "socket": os.path.exists(path), "answers": answers}
`,
    check: (o) => {
      if (o.error) return `unexpected failure: ${o.error.message}`;
      const r = o.result as { reached: string[]; socket: boolean; answers: string[] };
      if (!r.socket) return "test broken: the proxy socket was not found";
      if (r.reached.length > 0) return `connected to ${r.reached.join(", ")}`;
      const opened = r.answers.filter((a) => a !== "" && !a.endsWith("Error"));
      return opened.length > 0 ? `the proxy answered forged requests: ${opened}` : undefined;
    },
  },
  {
    name: "fork bomb",
    sandbox: { max_processes: 64 },
    timeout: 4,
    code: (_env, marker) => `
import os, sys
bomb = "import os\\nwhile True:\\n    try:\\n        os.fork()\\n    except OSError:\\n        pass\\n"
os.execv(sys.executable, [sys.executable, "-c", bomb, ${py(marker)}])
`,
    check: async (o, _env, marker) => {
      const err = expectError(o, "TASK_TIMEOUT", "TASK_EXECUTION_FAILED");
      if (err) return err;
      const left = await noneAlive(marker);
      if (left) return left;
      const probe = await new Deno.Command("true").output();
      return probe.success ? undefined : "the host cannot start processes any more";
    },
  },
  {
    name: "memory bomb (one huge allocation, then a growing list)",
    sandbox: { memory_mb: 512 },
    timeout: 30,
    code: () => `
errors = []
try:
    x = bytearray(16 << 30)
except MemoryError:
    errors.append("MemoryError")
hoard = []
while True:
    hoard.append(bytearray(32 << 20))
`,
    check: (o) => {
      const err = expectError(o, "TASK_EXECUTION_FAILED");
      if (err) return err;
      return o.error!.details.exception_type === "MemoryError"
        ? undefined
        : `expected a MemoryError, got: ${o.error!.message}`;
    },
  },
  {
    name: "infinite loop (CPU limit)",
    sandbox: { cpu_seconds: 1 },
    timeout: 20,
    code: () => "while True:\n    pass\n",
    check: (o) => {
      const err = expectError(o, "TASK_EXECUTION_FAILED");
      if (err) return err;
      if (!/CPU limit/.test(o.error!.message)) return `not the CPU limit: ${o.error!.message}`;
      return /sandbox: \{cpu_seconds: N\}/.test(o.error!.hint ?? "")
        ? undefined
        : `no hint naming cpu_seconds: ${o.error!.hint}`;
    },
  },
  {
    name: "infinite loop (wall-clock timeout)",
    timeout: 1,
    code: () => "while True:\n    pass\n",
    check: (o) => expectError(o, "TASK_TIMEOUT"),
  },
  {
    name: "1 GB of output (print and raw fd writes)",
    timeout: 60,
    code: () => `
import sys, os
chunk = "x" * (1 << 20)
for i in range(1024):
    sys.stdout.write(chunk)
sys.stdout.flush()
raw = b"y" * (1 << 20)
try:
    for i in range(1024):
        os.write(1, raw)
    stopped = None
except OSError as e:
    stopped = str(e)
result = {"raw_stopped": stopped}
`,
    check: (o) => {
      if (o.error) {
        return (o.error.details.output as string | undefined ?? "").length <= 8192
          ? undefined
          : "the error carried the whole output";
      }
      const r = o.full as { output: string; output_truncated: boolean };
      if (r.output.length > 1024 * 1024) return `kept ${r.output.length} bytes of output`;
      return r.output_truncated ? undefined : "output not marked truncated";
    },
  },
  {
    name: "os.setsid() + sleep to outlive the task",
    code: (_env, marker) => `
import os, sys, subprocess
sleeper = [sys.executable, "-c", "import time; time.sleep(300)", ${py(marker)}]
subprocess.Popen(sleeper, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, sleeper)
    os._exit(0)
os.waitpid(pid, 0)
result = "detached"
`,
    check: async (o, _env, marker) => {
      if (o.error) return `unexpected failure: ${o.error.message}`;
      return await noneAlive(marker);
    },
  },
  {
    name: "signal the parent, pid 1 and every process (kill -1)",
    code: () => `
import os, signal
tried = []
for target in (os.getppid(), 1, -1):
    try:
        os.kill(target, signal.SIGKILL)
        tried.append("%d: sent" % target)
    except OSError as e:
        tried.append("%d: %s" % (target, e.strerror))
result = tried
`,
    check: async (_o, env) => {
      // The task itself may die of its own kill -1; what matters is everything outside.
      if (!(await alive(env.sentinel.pid))) return "a host process of the sandbox user was killed";
      return undefined;
    },
  },
  {
    // Without root, the sandbox's init and a warm task's parent are the task's own user's: a
    // warm parent's being non-dumpable, and for a cold task's init (bwrap's reaper) the filter
    // (ptrace of PID 1) and its covered /proc directory, keep a task from stopping them or
    // writing their memory.
    name: "trace the sandbox's init and the task's parent, or open their memory",
    code: () => `
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
out = {}
for pid in sorted({1, os.getppid()}):
    if libc.ptrace(16, pid, 0, 0) == 0:  # PTRACE_ATTACH
        os.waitpid(pid, 0x40000000)  # __WALL
        libc.ptrace(17, pid, 0, 0)  # PTRACE_DETACH
        traced = "attached"
    else:
        traced = os.strerror(ctypes.get_errno())
    try:
        open("/proc/%d/mem" % pid, "r+b").close()
        mem = "opened"
    except OSError as e:
        mem = e.strerror
    out[pid] = [traced, mem]
result = out
`,
    check: (o) => {
      if (o.error) return `unexpected failure: ${o.error.message}`;
      const r = o.result as Record<string, [string, string]>;
      if (!r["1"]) return `pid 1 not tried: ${JSON.stringify(r)}`;
      const reached = Object.entries(r).filter(([, [t, m]]) => t === "attached" || m === "opened");
      return reached.length ? `reached: ${JSON.stringify(Object.fromEntries(reached))}` : undefined;
    },
  },
  {
    name: "the old ().__class__.__base__.__subclasses__() trick",
    code: (env) => `
klasses = ().__class__.__base__.__subclasses__()
wrap = [c for c in klasses if c.__name__ == "_wrap_close"][0]
g = wrap.__init__.__globals__
out = g["popen"]("cat /etc/shadow ${env.dbFile} /root/.bashrc 2>&1; id -u").read()
result = out
`,
    check: (o, env) => {
      if (o.error) return undefined;
      const out = String(o.result);
      if (out.includes(env.secret) || /^root:/m.test(out)) return "read a protected file";
      return /^65534$/m.test(out) ? undefined : `unexpected identity: ${out.slice(-200)}`;
    },
  },
  {
    name: "disk blocks past the file-size limit: fallocate(KEEP_SIZE) on its files and stdout",
    code: () => `
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
out = {}
fd = os.open("big", os.O_WRONLY | os.O_CREAT, 0o600)
targets = [("file", fd), ("stdout", 1)]
if os.path.exists("/gleitzeit/result.json"):  # a cold task's result file, on the host's disk
    targets.append(("result", os.open("/gleitzeit/result.json", os.O_WRONLY)))
for name, target in targets:
    # FALLOC_FL_KEEP_SIZE, 300 MiB: more than the file-size limit (256), less than the tmpfs
    r = libc.fallocate(target, 1, 0, 300 << 20)
    out[name] = r if r != -1 else -ctypes.get_errno()
out["blocks_mib"] = max(os.fstat(t).st_blocks * 512 >> 20 for _, t in targets)
result = out
`,
    check: (o) => {
      if (o.error) return `unexpected failure: ${o.error.message}`;
      const r = o.result as Record<string, number>;
      // -95: EOPNOTSUPP, as on a file system without fallocate
      const calls = Object.entries(r).filter(([k]) => k !== "blocks_mib");
      return calls.every(([, v]) => v === -95) && r.blocks_mib === 0
        ? undefined
        : `reserved blocks: ${JSON.stringify(r)}`;
    },
  },
  {
    name: "a user namespace of its own (a tmpfs past the caps), io_uring (calls the filter misses)",
    code: () => `
import ctypes, os, threading, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
out = {}
out["unshare"] = libc.unshare(0x10000000) == -1 and ctypes.get_errno() == 1
pid = libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0)  # clone(CLONE_NEWUSER | SIGCHLD)
if pid == 0:
    os._exit(0)
out["clone"] = pid == -1 and ctypes.get_errno() == 1
params = ctypes.create_string_buffer(120)
out["io_uring"] = libc.syscall(425, 8, params) == -1 and ctypes.get_errno() == 1
# what still works: threads (clone3 gives ENOSYS, the C library uses clone), fork, exec
t = threading.Thread(target=lambda: None)
t.start()
t.join()
child = os.fork()
if child == 0:
    os._exit(7)
out["fork"] = os.waitpid(child, 0)[1] >> 8 == 7
out["exec"] = subprocess.run([sys.executable, "-c", "print(6 * 7)"], capture_output=True,
                             text=True).stdout.strip() == "42"
result = out
`,
    check: (o) => {
      if (o.error) return `unexpected failure: ${o.error.message}`;
      const r = o.result as Record<string, boolean>;
      const wrong = Object.entries(r).filter(([, ok]) => !ok).map(([k]) => k);
      return wrong.length ? `not as expected: ${wrong.join(", ")}` : undefined;
    },
  },
  {
    name: "memory outside the address-space limit: anonymous files, System V shared memory",
    sandbox: { memory_mb: 128 },
    code: () => `
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
out = {}
try:
    fd = os.memfd_create("hoard")
    for _ in range(4):
        os.write(fd, b"x" * (64 << 20))  # no mapping: RLIMIT_AS does not see it
    out["memfd"] = "filled"
except OSError as e:
    out["memfd"] = errno.errorcode.get(e.errno, e.errno)
r = libc.shmget(0x686f6172, 256 << 20, 0o1600)
out["shmget"] = r if r >= 0 else errno.errorcode.get(ctypes.get_errno())
result = out
`,
    check: (o) => {
      if (o.error) return `unexpected failure: ${o.error.message}`;
      const r = o.result as Record<string, unknown>;
      return r.memfd === "ENOSYS" && r.shmget === "ENOSYS"
        ? undefined
        : `held: ${JSON.stringify(r)}`;
    },
  },
  {
    name: "kernel keyrings (not namespaced): the session keyring, a key left for later tasks",
    code: () => `
import ctypes, platform
libc = ctypes.CDLL(None, use_errno=True)
nrs = {"x86_64": (248, 250), "aarch64": (217, 219)}[platform.machine()]
out = {}
# keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING / KEY_SPEC_USER_KEYRING, 0)
for name, spec in (("session", -3), ("user", -4)):
    r = libc.syscall(nrs[1], 0, spec, 0)
    out[name] = r if r >= 0 else -ctypes.get_errno()
# add_key("user", "gleitzeit-left", "x", 1, KEY_SPEC_USER_KEYRING)
r = libc.syscall(nrs[0], b"user", b"gleitzeit-left", b"x", 1, -4)
out["add_key"] = r if r >= 0 else -ctypes.get_errno()
if platform.machine() == "x86_64":
    # the i386 ABI through int 0x80: keyctl is 288 there. In a child: where the kernel has
    # no 32-bit entry (some VMs), int 0x80 is a SIGSEGV, and nothing was reached.
    import mmap, os, signal
    code = bytes([0x53, 0xb8, 0x20, 0x01, 0, 0, 0xbb, 0, 0, 0, 0, 0xb9, 0xfd, 0xff, 0xff, 0xff,
                  0xba, 0, 0, 0, 0, 0xcd, 0x80, 0x5b, 0xc3])
    rd, wr = os.pipe()
    pid = os.fork()
    if pid == 0:
        m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        m.write(code)
        call = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(m)))
        os.write(wr, str(call()).encode())  # -errno on failure
        os._exit(0)
    os.close(wr)
    _, status = os.waitpid(pid, 0)
    answer = os.read(rd, 64)
    if answer:
        out["int80_session"] = int(answer)
    elif not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSEGV):
        out["int80_session"] = "child ended with status %d" % status
result = out
`,
    check: (o) => {
      if (o.error) return `unexpected failure: ${o.error.message}`;
      const r = o.result as Record<string, number>;
      const reached = Object.entries(r).filter(([, v]) => v !== -1); // -EPERM
      return reached.length ? `reached keyrings: ${JSON.stringify(r)}` : undefined;
    },
  },
  {
    // As root, the warm pool's parent, forkers and waiting spares are root's: the kernel
    // refuses a task (uid 65534) any change to them. Without root, tasks are the pool's own
    // user, and the pool reads those settings around each task instead (see
    // unprivileged_pool_test.ts): here no process of another user is even in the task's
    // sight. Its own settings and its own child's stay its to change.
    name: "change the limits, priority, scheduling, CPUs or I/O priority of the pool's processes",
    code: () => `
import ctypes, os, platform, resource, time
libc = ctypes.CDLL(None, use_errno=True)
machine = platform.machine()
IOPRIO_SET = {"x86_64": 251, "aarch64": 30}[machine]
SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}[machine]
def tried(change):
    try:
        change()
        return "changed"
    except OSError as e:
        return e.strerror
def raw(nr, *args):
    def call():
        if libc.syscall(nr, *args) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return call
def uid(pid):
    try:
        return [l for l in open("/proc/%d/status" % pid) if l.startswith("Uid:")][0].split()[1]
    except (OSError, IndexError):
        return None
# sched_attr: size 48, SCHED_OTHER, a 50 ms slice (sched_runtime)
attr = ctypes.create_string_buffer((48).to_bytes(4, "little") + bytes(20) +
                                   (50000000).to_bytes(8, "little") + bytes(16))
def attacks(pid):
    cpu = {min(os.sched_getaffinity(0))}
    return {
        "prlimit": tried(lambda: resource.prlimit(pid, resource.RLIMIT_NOFILE, (16, 16))),
        # (the slice, at nice 0, before the nice value and SCHED_IDLE: back from either
        # takes a nice limit a task has not)
        "sched_setattr": tried(raw(SCHED_SETATTR, pid, attr, 0)),
        "nice": tried(lambda: os.setpriority(os.PRIO_PROCESS, pid, 19)),
        "affinity": tried(lambda: os.sched_setaffinity(pid, cpu)),
        "scheduler": tried(lambda: os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))),
        "ioprio": tried(raw(IOPRIO_SET, 1, pid, 3 << 13)),  # IOPRIO_CLASS_IDLE
    }
child = os.fork()
if child == 0:
    time.sleep(30)
    os._exit(0)
try:
    me = uid(os.getpid())
    others = [int(n) for n in os.listdir("/proc")
              if n.isdigit() and int(n) not in (os.getpid(), child) and uid(int(n)) not in (me, None)]
    out = {"others": {pid: attacks(pid) for pid in others}, "child": attacks(child),
           "own": attacks(0)}
finally:
    os.kill(child, 9)
    os.waitpid(child, 0)
result = out
`,
    check: (o, env) => {
      if (o.error) return `unexpected failure: ${o.error.message}`;
      const r = o.result as {
        others: Record<string, Record<string, string>>;
        child: Record<string, string>;
        own: Record<string, string>;
      };
      if (!env.root && Object.keys(r.others).length) {
        return `processes of another user in sight: ${JSON.stringify(r.others)}`;
      }
      if (env.root && !Object.keys(r.others).length) return "no process of the pool's to attack";
      const changed = Object.entries(r.others).filter(([, a]) =>
        Object.values(a).some((v) => v !== "Operation not permitted")
      );
      if (changed.length) return `changed: ${JSON.stringify(Object.fromEntries(changed))}`;
      for (const [who, a] of [["own", r.own], ["child", r.child]] as const) {
        if (Object.values(a).some((v) => v !== "changed")) {
          return `${who} settings refused: ${JSON.stringify(a)}`;
        }
      }
      return undefined;
    },
  },
];

/**
 * Creates the fixtures (a secret directory, a sentinel process of the sandbox user: uid 65534,
 * or without root the orchestrator's own).
 */
export async function prepareEscapeEnv(projectDir: string): Promise<EscapeEnv> {
  const secretDir = await Deno.makeTempDir({ prefix: "gleitzeit-secret-" });
  // Its owner is who runs this (Deno.uid() and /proc/self are not among the CLI's
  // permissions: the escape driver runs under them).
  const root = (await Deno.stat(secretDir)).uid === 0;
  await Deno.chmod(secretDir, 0o777);
  const secret = `SECRET-${crypto.randomUUID()}`;
  const dbFile = `${secretDir}/gleitzeit.db`;
  await Deno.writeTextFile(dbFile, `SQLite format 3 ${secret}`);
  await Deno.chmod(dbFile, 0o644);
  const sentinelMarker = newMarker();
  const sentinel = new Deno.Command("setpriv", {
    args: [
      ...(root ? ["--reuid=65534", "--regid=65534", "--clear-groups"] : []),
      "--",
      "/bin/sh",
      "-c",
      "sleep 600; true",
      sentinelMarker,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  return { secretDir, dbFile, secret, projectDir, root, sentinel, sentinelMarker };
}

/** Removes the fixtures. */
export async function cleanupEscapeEnv(env: EscapeEnv): Promise<void> {
  await killProcessTree(env.sentinel.pid, { group: false, python: "/usr/bin/python3" });
  await env.sentinel.status;
  await Deno.remove(env.secretDir, { recursive: true });
}

/** Runs one case against `provider`. */
export async function runEscapeCase(
  provider: PythonProvider,
  c: EscapeCase,
  env: EscapeEnv,
): Promise<EscapeOutcome> {
  const marker = newMarker();
  const params: Record<string, unknown> = { code: c.code(env, marker) };
  if (c.timeout !== undefined) params.timeout = c.timeout;
  const ctx = makeCtx(c.sandbox === undefined ? {} : { sandbox: { task: c.sandbox } });
  const started = performance.now();
  const observed: Observed = {};
  try {
    const r = await provider.call("python/execute", params, ctx) as Record<string, unknown>;
    observed.result = r.result;
    observed.full = r;
  } catch (e) {
    if (!(e instanceof GleitzeitError)) throw e;
    observed.error = e;
  }
  const ms = performance.now() - started;
  const escaped = await c.check(observed, env, marker);
  const detail = escaped ??
    (observed.error ? `${observed.error.code}: ${observed.error.message}` : "ok").slice(0, 200);
  return { name: c.name, contained: escaped === undefined, detail, ms: Math.round(ms) };
}

/** Fails unless Redis answers on 127.0.0.1:6379 (the network case must mean something). */
export async function requireRedis(): Promise<void> {
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: 6379 });
    conn.close();
  } catch (e) {
    throw new Error(
      `the escape suite needs Redis on 127.0.0.1:6379 (apt-get install -y redis-server): ${
        (e as Error).message
      }`,
    );
  }
}
