/**
 * The sandbox when the orchestrator is NOT root (the usual laptop case): bubblewrap then maps the
 * task into a user namespace of the calling user instead of dropping to uid 65534 itself. Runs the
 * bundled CLI, with the shipped permission flags, as an unprivileged uid (setpriv), against
 * real hostile snippets, a network grant and the warm pool.
 */

import { assert, assertEquals, assertStringIncludes } from "../assert.ts";
import { denoAsUnprivileged, requireRoot, UNPRIVILEGED_UID as UID } from "../unprivileged.ts";
import { bundleFlags, ROOT } from "./helpers.ts";

Deno.test("[bwrap, unprivileged orchestrator] tasks are sandboxed in a user namespace", async () => {
  requireRoot("the CLI");
  const dir = await Deno.makeTempDir({ prefix: "gleitzeit-unpriv-" });
  try {
    await Deno.chmod(dir, 0o755);
    const build = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", "--quiet", "--platform=deno", "-o", `${dir}/gleitzeit.js`, "src/main.ts"],
      cwd: ROOT,
    }).output();
    assertEquals(build.code, 0, new TextDecoder().decode(build.stderr));
    const home = `${dir}/home`;
    await Deno.mkdir(home, { mode: 0o700 });
    // The user's own secret: readable by the orchestrator's user, never by its tasks.
    await Deno.writeTextFile(`${home}/secret.txt`, "s3cret");
    await Deno.chmod(`${home}/secret.txt`, 0o600);
    await Deno.writeTextFile(`${home}/config.yaml`, "{}\n");
    await Deno.writeTextFile(
      `${home}/wf.yaml`,
      `name: unprivileged
tasks:
  - id: inside
    method: python/execute
    params:
      code: |
        import os, socket
        def attempt(f):
            try:
                f()
                return "escaped"
            except Exception as e:
                return type(e).__name__
        result = {
            "uid": os.getuid(),
            "secret": attempt(lambda: open(${JSON.stringify(`${home}/secret.txt`)}).read()),
            "write_home": attempt(lambda: open(${JSON.stringify(`${home}/planted`)}, "w")),
            "redis": attempt(lambda: socket.create_connection(("127.0.0.1", 6379), timeout=1)),
            "cwd_writable": os.access(os.getcwd(), os.W_OK),
        }
  - id: granted
    method: python/execute
    sandbox: {network: ["127.0.0.1:6379", "127.0.0.1:1"]}
    params:
      code: |
        import socket
        s = socket.create_connection(("127.0.0.1", 6379), timeout=5)
        s.sendall(b"PING\\r\\n")
        caps = {l.split(":")[0]: l.split()[1] for l in open("/proc/self/status") if l.startswith("Cap")}
        result = [s.recv(16).decode(), caps["CapEff"]]
  - id: warm
    method: python/execute
    params:
      code: "result = [os.getuid() for os in [__import__('os')]][0]"
  - id: basic
    method: python/execute
    sandbox: basic
    params:
      code: "result = __import__('os').getuid()"
  # two warm tasks in turn (one parent): the second looks for the first's output and result
  # everywhere in its pool directory, and tries to leave files there for a third
  - id: first
    method: python/execute
    dependencies: [warm]
    params:
      code: |
        print('password=hunter2')
        result = 'token-of-first'
  - id: second
    method: python/execute
    dependencies: [first]
    params:
      code: |
        import os
        pool = "/".join(os.getcwd().split("/")[:3])
        seen, planted = [], []
        for root, dirs, files in os.walk(pool):
            for f in files:
                try:
                    text = open(os.path.join(root, f), errors="replace").read()
                except OSError:
                    continue
                if "hunter2" in text or "token-of-first" in text:
                    seen.append(os.path.join(root, f))
        for d in (pool, pool + "/.io", pool + "/.trash"):
            try:
                with open(d + "/planted", "w") as f:
                    f.write("x")
                planted.append(d)
            except OSError:
                pass
        result = {"pool": pool.startswith("/tmp/gleitzeit-pool-"), "seen": seen, "planted": planted}
`,
    );
    await chownTree(home, UID);
    /** `gleitzeit --json run FILE` as the unprivileged user; its exit code, stdout, stderr. */
    const cli = async (file: string, env: Record<string, string> = {}) => {
      const out = await denoAsUnprivileged(
        [...bundleFlags(), `${dir}/gleitzeit.js`, "--json", "run", file],
        {
          cwd: home,
          env: {
            HOME: home,
            PATH: "/usr/bin:/bin",
            GLEITZEIT_CONFIG: `${home}/config.yaml`,
            GLEITZEIT_SQLITE_PATH: `${home}/gleitzeit.db`,
            // The root user's pyenv lives under /root (0700): the system interpreter instead.
            GLEITZEIT_PYTHON: "/usr/bin/python3",
            NO_COLOR: "1",
            ...env,
          },
        },
      );
      const decode = (b: Uint8Array) => new TextDecoder().decode(b);
      return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
    };
    const { code, stdout, stderr } = await cli(`${home}/wf.yaml`);
    assertEquals(code, 0, `${stderr}\n${stdout}`);
    const report = JSON.parse(stdout);
    assertEquals(report.results.inside.result, {
      uid: 65534,
      // the user's home is not even there
      secret: "FileNotFoundError",
      write_home: "FileNotFoundError",
      redis: "ConnectionRefusedError",
      cwd_writable: true,
    });
    // Port 1 (below 1024) is granted too: only the capability to listen on it, in its own
    // network namespace, is left.
    assertEquals(report.results.granted.result, ["+PONG\r\n", "0000000000000400"]);
    assertEquals(report.results.warm.result, 65534);
    // outside bubblewrap, the CLI's own user (not root: no word of root in the warning)
    assertEquals(report.results.basic.result, UID);
    assertStringIncludes(
      stderr,
      "warning: Python task basic runs with sandbox 'basic' (chosen by the task): weaker " +
        "isolation than bubblewrap\n",
    );
    // nothing of the first task's output in reach of the second, nothing left for a third
    assertEquals(report.results.second.result, { pool: true, seen: [], planted: [] });
    let planted = true;
    try {
      await Deno.stat(`${home}/planted`);
    } catch {
      planted = false;
    }
    assert(!planted, "a task wrote into the user's home");

    // Cold tasks (a read grant each): the sandbox's init (bwrap's reaper, the task's own
    // user's) is out of the task's reach: no tracing it, no reading or writing its memory, no
    // pidfd of it, its /proc directory empty. A signal the task sends itself ends it as in any
    // process. Nothing is left in the temp dir.
    await Deno.writeTextFile(
      `${home}/cold.yaml`,
      `name: cold
tasks:
  - id: cold
    method: python/execute
    sandbox: {read: ["."]}
    params:
      code: |
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        def call(f, *args):
            return [f(*args), ctypes.get_errno()]
        buf = ctypes.create_string_buffer(8)
        iov = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 8)
        def error(f, *args):
            try:
                f(*args)
                return "done"
            except OSError as e:
                return type(e).__name__
        def syscall(*args):
            return call(libc.syscall, *[ctypes.c_long(a) for a in args])
        # a pidfd without pidfd_open: a pidfs handle (inode numbers count up, so PID 1's is a
        # little below one of the task's own); and taking a descriptor through a pidfd
        child = os.fork()
        if child == 0:
            os._exit(0)
        pidfd = os.pidfd_open(child)
        handle = ctypes.create_string_buffer(16)
        handle[0:8] = (8).to_bytes(4, "little") + (0xfe).to_bytes(4, "little")  # FILEID_KERNFS
        by_handle = "not found"
        for ino in range(os.fstat(pidfd).st_ino - 1, os.fstat(pidfd).st_ino - 20000, -1):
            handle[8:16] = ino.to_bytes(8, "little")
            fd = libc.syscall(ctypes.c_long(304), ctypes.c_long(-10002), handle,
                              ctypes.c_long(0))  # open_by_handle_at(FD_PIDFS_ROOT, ...)
            if fd < 0 and ctypes.get_errno() == 1:
                by_handle = "EPERM"
                break
            if fd >= 0:
                info = open("/proc/self/fdinfo/%d" % fd).read()
                os.close(fd)
                if "\\nPid:\\t1\\n" in info:
                    by_handle = "pid 1's pidfd"
                    break
        getfd = syscall(438, pidfd, 0, 0)  # pidfd_getfd
        os.waitpid(child, 0)
        result = {
            "ids": [os.getpid(), os.getppid()],
            "by_handle": by_handle,
            "getfd": getfd,
            "robust": syscall(274, 1, 0, 0),  # get_robust_list(1, ...)
            "kcmp": syscall(312, 1, os.getpid(), 0, 0, 0),
            "attach": call(libc.ptrace, 16, 1, 0, 0),  # PTRACE_ATTACH
            "seize": call(libc.ptrace, 0x4206, 1, 0, 0),  # PTRACE_SEIZE
            "vm_read": call(libc.process_vm_readv, 1, iov, 1, iov, 1, 0),
            "pidfd": error(os.pidfd_open, 1),
            "mem": error(lambda: open("/proc/1/mem", "rb").close()),
            "proc1": os.listdir("/proc/1"),
            # the task's own processes stay within reach
            "own": error(os.pidfd_open, os.getpid()),
        }
  - id: killed
    method: python/execute
    sandbox: {read: ["."]}
    params:
      code: |
        import os, signal
        print("before", flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        print("after")
  # SIGINT to the init changes nothing of how the task's end is told
  - id: interrupted
    method: python/execute
    sandbox: {read: ["."]}
    params:
      code: |
        import os, signal
        os.kill(1, signal.SIGINT)
        os._exit(5)
`,
    );
    await Deno.chown(`${home}/cold.yaml`, UID, UID);
    const tmp = `${dir}/tmp`;
    await Deno.mkdir(tmp);
    await Deno.chmod(tmp, 0o1777);
    const cold = await cli(`${home}/cold.yaml`, { TMPDIR: tmp });
    assertEquals(cold.code, 1, `${cold.stderr}\n${cold.stdout}`); // the killed task failed
    const coldReport = JSON.parse(cold.stdout);
    const eperm = [-1, 1];
    assertEquals(coldReport.results.cold?.result, {
      ids: [2, 1],
      by_handle: "EPERM",
      getfd: eperm,
      robust: eperm,
      kcmp: eperm,
      attach: eperm,
      seize: eperm,
      vm_read: eperm,
      pidfd: "PermissionError",
      mem: "FileNotFoundError",
      proc1: [],
      own: "done",
    }, cold.stdout);
    const killed = coldReport.tasks.find((t: { id: string }) => t.id === "killed");
    assertEquals(killed.error.code, "TASK_EXECUTION_FAILED");
    assertEquals(killed.error.details.signal, "SIGTERM");
    assertEquals([killed.error.details.output, killed.error.details.stderr], ["before\n", ""]);
    const interrupted = coldReport.tasks.find((t: { id: string }) => t.id === "interrupted");
    assertEquals([interrupted.error.details.exit_code, interrupted.error.details.signal], [
      5,
      null,
    ]);
    const left = [];
    for await (const e of Deno.readDir(tmp)) left.push(e.name);
    assertEquals(left, [], `left in ${tmp}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function chownTree(path: string, uid: number): Promise<void> {
  await Deno.chown(path, uid, uid);
  const info = await Deno.lstat(path);
  if (!info.isDirectory) return;
  for await (const e of Deno.readDir(path)) await chownTree(`${path}/${e.name}`, uid);
}
