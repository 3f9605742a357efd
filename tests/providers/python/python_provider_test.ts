/**
 * python/v1 with real Python: the shared contract for every variant (cold and warm, each
 * sandbox mode), then what is specific: interpreter resolution, health, sandbox errors and
 * the pid-level proof that a timeout kills every descendant.
 */

import assert from "node:assert/strict";
import { GleitzeitError } from "../../../src/core/errors.ts";
import { PythonProvider } from "../../../src/providers/python/python_provider.ts";
import { resolvePython } from "../../../src/providers/python/python_interpreter.ts";
import { findBwrap } from "../../../src/providers/python/bubblewrap.ts";
import {
  declaredPath,
  DEFAULT_LIMITS,
  resolveSandboxPolicy,
} from "../../../src/providers/python/sandbox_policy.ts";
import { assertAllDead, makeCtx, waitForPids } from "./helpers.ts";
import { pythonContract } from "./python_contract.ts";
import { WORK_TMPFS_INODES } from "../../../src/providers/python/warm_pool.ts";
import { RUNNER_BOOTSTRAP } from "../../../src/providers/python/runner_source.ts";
import { bootstrapInput, runnerBytecode } from "../../../src/providers/python/runner_bytecode.ts";

pythonContract("none, cold", (o) => new PythonProvider({ sandbox: "none", ...o }));
pythonContract("basic, warm", (o) => new PythonProvider({ sandbox: "basic", poolSize: 2, ...o }));
pythonContract("bwrap, cold", (o) => new PythonProvider({ sandbox: "bwrap", ...o }));
pythonContract("bwrap, warm", (o) => new PythonProvider({ sandbox: "bwrap", poolSize: 2, ...o }));

Deno.test("the interpreter resolves to a real executable, not a shim", async () => {
  const py = await resolvePython("python3");
  assert.match(py.version, /^3\./);
  assert.ok(py.executable.startsWith("/"));
  assert.ok(!py.executable.includes("/shims/"), py.executable);
  assert.ok(py.path.length > 0);
});

/** Python that spawns three kinds of descendants, writes their pids, then sleeps. */
function spawner(pidFile: string): string {
  return `
import os, sys, subprocess, time, json
sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
plain = subprocess.Popen(sleeper)
detached = subprocess.Popen(sleeper, start_new_session=True)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() == 0:
        os.write(w, str(os.getpid()).encode()); os.close(w)
        time.sleep(120)
    os._exit(0)
os.waitpid(pid, 0)
os.close(w)
grandchild = int(os.read(r, 32))
with open(${JSON.stringify(pidFile)} + ".tmp", "w") as f:
    json.dump([os.getpid(), plain.pid, detached.pid, grandchild], f)
os.rename(${JSON.stringify(pidFile)} + ".tmp", ${JSON.stringify(pidFile)})
time.sleep(120)
`;
}

for (const mode of ["none", "basic"] as const) {
  // within 3 s: the killer is a process of its own, slow to start on a loaded machine
  Deno.test(`[${mode}] a timeout kills the runner and each descendant pid promptly`, async () => {
    const dir = await Deno.makeTempDir();
    const pidFile = `${dir}/pids.json`;
    const provider = new PythonProvider({ sandbox: mode });
    try {
      const failed = provider.call(
        "python/execute",
        { code: spawner(pidFile), timeout: 4 }, // time to start 4 processes under load
        makeCtx(),
      )
        .then(() => undefined, (e) => e);
      const pids = await waitForPids(pidFile, 4);
      const e = await failed;
      assert.ok(e instanceof GleitzeitError);
      assert.equal(e.code, "TASK_TIMEOUT");
      const took = await assertAllDead(pids, 3000);
      assert.ok(took < 3000);
    } finally {
      await provider.close();
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("unknown methods are rejected", async () => {
  const provider = new PythonProvider({ sandbox: "none" });
  await assert.rejects(
    provider.call("python/nope", {}, makeCtx()),
    (e: unknown) => e instanceof GleitzeitError && e.code === "METHOD_NOT_SUPPORTED",
  );
});

Deno.test("health reports the interpreter and the sandbox", async () => {
  const provider = new PythonProvider();
  const h = await provider.health();
  assert.equal(h.healthy, true, h.message);
  assert.match(h.message ?? "", /^Python 3\.\d+\.\d+, sandbox bwrap$/);
  const broken = new PythonProvider({ python: "/nonexistent/python3", sandbox: "none" });
  assert.equal((await broken.health()).healthy, false);
  await assert.rejects(
    broken.call("python/execute", { code: "result = 1" }, makeCtx()),
    (e: unknown) =>
      e instanceof GleitzeitError && e.code === "PROVIDER_UNAVAILABLE" &&
      /GLEITZEIT_PYTHON/.test(e.hint ?? ""),
  );
  // one that runs but is not Python (answers nothing)
  const notPython = new PythonProvider({ python: "/bin/true", sandbox: "none" });
  await assert.rejects(
    notPython.call("python/execute", { code: "result = 1" }, makeCtx()),
    (e: unknown) =>
      e instanceof GleitzeitError && e.code === "PROVIDER_UNAVAILABLE" &&
      e.message.includes("it printed nothing when asked for sys.executable") &&
      /--python/.test(e.hint ?? ""),
  );
});

Deno.test("missing bubblewrap: SANDBOX_UNAVAILABLE saying how to install it", async () => {
  const provider = new PythonProvider({ bwrapPath: "/nonexistent/bwrap" });
  const e = await provider.call("python/execute", { code: "result = 1" }, makeCtx()).catch((x) =>
    x
  );
  assert.ok(e instanceof GleitzeitError);
  assert.equal(e.code, "SANDBOX_UNAVAILABLE");
  assert.equal(e.retryable, false);
  assert.match(e.message, /bubblewrap/);
  assert.match(e.hint ?? "", /apt-get install -y bubblewrap/);
  assert.match(e.hint ?? "", /sandbox: basic/);
  const health = await provider.health();
  assert.equal(health.healthy, false);
  // which modes run (workers take tasks by the mode they ask for)
  assert.deepEqual(health.routes, { bwrap: false, basic: true, none: true });
  const basic = new PythonProvider({ bwrapPath: "/nonexistent/bwrap", sandbox: "basic" });
  const byDefault = await basic.health();
  assert.deepEqual([byDefault.healthy, byDefault.routes?.bwrap], [true, false]);
  await basic.close();
  // An explicit weaker choice (workflow or task) runs without it.
  for (const sandbox of [{ workflow: "basic" }, { task: { mode: "none" } }]) {
    const r = await provider.call("python/execute", { code: "result = 1" }, makeCtx({ sandbox }));
    assert.equal((r as { result: number }).result, 1);
  }
  await provider.close();
});

Deno.test("[bwrap] a venv's packages import in every kind of task: warm, cold (a script, a grant), and without bubblewrap", async () => {
  // A venv with a module of its own in its site-packages, readable by the sandbox user.
  const dir = await Deno.makeTempDir({ prefix: "gleitzeit-venv-" });
  try {
    await Deno.chmod(dir, 0o755);
    const base = await resolvePython("python3");
    const made = await new Deno.Command(base.executable, {
      args: ["-m", "venv", "--without-pip", `${dir}/venv`],
    }).output();
    assert.equal(made.code, 0, new TextDecoder().decode(made.stderr));
    const python = `${dir}/venv/bin/python`;
    const site = new TextDecoder().decode(
      (await new Deno.Command(python, {
        args: ["-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
      }).output()).stdout,
    ).trim();
    assert.ok(site.startsWith(`${dir}/venv/`), site);
    await Deno.writeTextFile(`${site}/gz_venv_probe.py`, "VALUE = 'from the venv'\n");
    await Deno.writeTextFile(
      `${dir}/task.py`,
      "import gz_venv_probe\nresult = gz_venv_probe.VALUE\n",
    );
    for (const f of [`${site}/gz_venv_probe.py`, `${dir}/task.py`]) await Deno.chmod(f, 0o644);
    const code = "import gz_venv_probe\nresult = gz_venv_probe.VALUE";
    for (const sandbox of ["bwrap", "basic"] as const) {
      for (const poolSize of [0, 1]) {
        const provider = new PythonProvider({ python, sandbox, poolSize });
        const ctx = () => makeCtx({ baseDir: dir });
        const runs = {
          execute: await provider.call("python/execute", { code }, ctx()),
          // a grant makes the task a cold one, pool or not
          granted: await provider.call(
            "python/execute",
            { code },
            makeCtx({ baseDir: dir, sandbox: { task: { read: ["task.py"] } } }),
          ),
          script: await provider.call("python/script", { script: "task.py" }, ctx()),
        };
        for (const [kind, r] of Object.entries(runs)) {
          assert.equal(
            (r as { result: string }).result,
            "from the venv",
            `${sandbox}, pool ${poolSize}: ${kind}`,
          );
        }
        await provider.close();
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("[bwrap] bubblewrap is found on PATH where the usual places have none", async () => {
  // In a mount namespace of its own (root: as the tests run), /usr/bin/bwrap is hidden behind
  // /dev/null; a copy in a directory on PATH is what the CLI, with its scoped permissions,
  // then runs a sandboxed task with.
  const real = findBwrap();
  assert.equal(real, "/usr/bin/bwrap", "the test hides /usr/bin/bwrap: it must be the one used");
  const dir = await Deno.makeTempDir({ prefix: "gleitzeit-bwrap-path-" });
  try {
    await Deno.mkdir(`${dir}/bin`);
    await Deno.copyFile(real, `${dir}/bin/bwrap`);
    await Deno.chmod(`${dir}/bin/bwrap`, 0o755);
    // a bwrap that is not executable, earlier on PATH, is passed over
    await Deno.mkdir(`${dir}/noexec`);
    await Deno.writeTextFile(`${dir}/noexec/bwrap`, "not a program\n");
    await Deno.writeTextFile(`${dir}/config.yaml`, "{}\n");
    await Deno.writeTextFile(
      `${dir}/wf.yaml`,
      "name: found\ntasks:\n  - id: t\n    method: python/execute\n" +
        '    params: {code: "import os\\nresult = os.getuid()"}\n',
    );
    const gleitzeit = new URL("../../../gleitzeit", import.meta.url).pathname;
    const run = (path: string) =>
      new Deno.Command("unshare", {
        args: [
          "-m",
          "sh",
          "-c",
          `mount --bind /dev/null /usr/bin/bwrap && exec "${gleitzeit}" --json run "${dir}/wf.yaml"`,
        ],
        env: {
          PATH: path,
          NO_COLOR: "1",
          GLEITZEIT_CONFIG: `${dir}/config.yaml`,
          GLEITZEIT_SQLITE_PATH: `${dir}/db.sqlite`,
        },
        cwd: dir,
      }).output();
    const found = await run(`${dir}/noexec:${dir}/bin:${Deno.env.get("PATH")}`);
    const text = new TextDecoder().decode(found.stdout) + new TextDecoder().decode(found.stderr);
    assert.equal(found.code, 0, text);
    assert.match(text, /65534/);
    // without it on PATH: the install hint
    const missing = await run(Deno.env.get("PATH")!);
    const said = new TextDecoder().decode(missing.stdout) +
      new TextDecoder().decode(missing.stderr);
    assert.notEqual(missing.code, 0, said);
    assert.match(said, /bubblewrap, which was not found \(.*or on PATH\)/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("declared paths and scripts: ~/ is the home directory, others are relative to the workflow file", () => {
  const home = Deno.env.get("HOME")!;
  assert.equal(declaredPath("~/data/in.csv", "/wf"), `${home}/data/in.csv`);
  assert.equal(declaredPath("~", "/wf"), home);
  assert.equal(declaredPath("~other/x", "/wf"), "/wf/~other/x"); // (no other users' homes)
  assert.equal(declaredPath("data/../out", "/wf"), "/wf/out");
  assert.equal(declaredPath("/abs//x", "/wf"), "/abs/x");
  const policy = resolveSandboxPolicy(
    { mode: "bwrap", limits: DEFAULT_LIMITS },
    { task: { read: ["~/in"], write: ["out"] } },
    "/wf",
  );
  assert.deepEqual([policy.read, policy.write], [[`${home}/in`], ["/wf/out"]]);
});

Deno.test("sandbox declarations are validated", async () => {
  const provider = new PythonProvider({ sandbox: "none" });
  const bad = [
    { task: "strict" },
    { task: { mode: "bwrap", colour: "blue" } },
    { workflow: { memory_mb: -1 } },
    { task: { read: "not-a-list" } },
  ];
  for (const sandbox of bad) {
    const e = await provider.call("python/execute", { code: "result = 1" }, makeCtx({ sandbox }))
      .catch((x) => x);
    assert.ok(e instanceof GleitzeitError, JSON.stringify(sandbox));
    assert.equal(e.code, "TASK_PARAMETER_ERROR", JSON.stringify(sandbox));
  }
  for (const entry of ["*.example.com:443", "10.0.0.1:80", "example.com"]) {
    const e = await provider.call(
      "python/execute",
      { code: "result = 1" },
      makeCtx({ sandbox: { task: { network: [entry] } } }),
    ).catch((x) => x) as GleitzeitError;
    assert.equal(e.code, "TASK_PARAMETER_ERROR", `${entry} cannot be granted, and is not widened`);
  }
  await provider.close();
});

Deno.test("[bwrap] declared paths may cover the temp dir or /run; / is refused with a hint", async () => {
  const p = new PythonProvider({ sandbox: "bwrap" });
  try {
    for (const sandbox of [{ read: ["/tmp"] }, { write: ["/tmp"] }, { read: ["/run"] }]) {
      const r = await p.call(
        "python/execute",
        { code: "import os\nopen('x', 'w').write('1')\nresult = os.listdir('.')" },
        makeCtx({ sandbox: { task: sandbox } }),
      ) as { result: unknown };
      assert.deepEqual(r.result, ["x"], JSON.stringify(sandbox));
    }
    // the sandbox's root, and the host's processes and devices (the sandbox has its own),
    // named or through a link
    const links = await Deno.makeTempDir({ prefix: "gleitzeit-links-" });
    await Deno.symlink("/proc", `${links}/proc`);
    await Deno.symlink("/dev/shm", `${links}/shm`);
    for (
      const path of [
        "/",
        "/proc",
        "/proc/1",
        "/dev",
        "/dev/shm",
        "/sys",
        "/sys/kernel",
        `${links}/proc`,
        `${links}/shm`,
      ]
    ) {
      await assert.rejects(
        p.call(
          "python/execute",
          { code: "result = 1" },
          makeCtx({ sandbox: { task: { read: [path] } } }),
        ),
        (e: unknown) =>
          e instanceof GleitzeitError && e.code === "TASK_PARAMETER_ERROR" && !!e.hint,
        path,
      );
    }
    await Deno.remove(links, { recursive: true });
  } finally {
    await p.close();
  }
});

Deno.test("[bwrap] a cold task writes to a 512 MiB tmpfs and its result file only: no disk fills", async () => {
  const tempDir = await Deno.makeTempDir({ prefix: "gleitzeit-cold-test-" });
  const p = new PythonProvider({ sandbox: "bwrap", tempDir }); // no pool: every task cold
  try {
    const r = await p.call("python/execute", {
      code: `
import os
st = os.statvfs(".")
cap = st.f_blocks * st.f_frsize
beside = []
for path in ("/gleitzeit/x", "/gleitzeit/work/../y", "/tmp/z"):
    try:
        open(path, "w").close()
        beside.append(path)
    except OSError:
        pass
chunk = b"x" * (1 << 20)
try:
    for i in range(10000):
        with open("f%d" % (i // 32), "ab") as f:
            f.write(chunk)
    filled = None
except OSError as e:
    filled = e.errno
caps = {l.split(":")[0]: int(l.split()[1], 16) for l in open("/proc/self/status")
        if l.startswith(("CapPrm", "CapEff", "CapAmb", "NoNewPrivs"))}
result = {"cap": cap, "filled": filled, "beside": beside, "cwd": os.getcwd(),
          "files": [os.statvfs(p).f_files for p in (".", "/dev/shm")], "caps": caps}
`,
    }, makeCtx()) as { result: unknown };
    assert.deepEqual(r.result, {
      cap: 512 * 1024 * 1024,
      filled: 28, // ENOSPC
      beside: [],
      cwd: "/gleitzeit/work",
      // as root, the runner caps the files on both (it had CAP_SYS_ADMIN for that, and none
      // is left; with no_new_privs no exec can give any back)
      files: [WORK_TMPFS_INODES, WORK_TMPFS_INODES],
      caps: { CapPrm: 0, CapEff: 0, CapAmb: 0, NoNewPrivs: 1 },
    });
    // the next cold task has a fresh, empty one
    const next = await p.call("python/execute", {
      code: "import os\nresult = os.listdir('.')",
    }, makeCtx()) as { result: unknown };
    assert.deepEqual(next.result, []);
    // On the disk, a task's directory held its boot file and result only, and is gone.
    await p.close();
    assert.deepEqual([...Deno.readDirSync(tempDir)], []);
  } finally {
    await p.close();
    await Deno.remove(tempDir, { recursive: true });
  }
});

Deno.test("the runner refuses to run when a declared path is not the file that was checked", async () => {
  // (bwrap resolves a declared path again to mount it: a link swapped in meanwhile would give
  // the task another directory; the provider passes what it checked, the runner compares)
  const { RUNNER_SOURCE } = await import("../../../src/providers/python/runner_source.ts");
  const dir = await Deno.makeTempDir({ prefix: "gleitzeit-declared-" });
  try {
    const st = await Deno.stat(dir);
    const run = async (declared: unknown[]) => {
      const job = {
        kind: "execute",
        code: "result = 'ran'",
        context: {},
        work_dir: dir,
        result_path: `${dir}/result.json`,
        declared,
      };
      const child = new Deno.Command((await resolvePython("python3")).executable, {
        args: ["-I", "-S", "-c", RUNNER_SOURCE, "once"],
        stdin: "piped",
        stderr: "piped",
      }).spawn();
      const w = child.stdin.getWriter();
      await w.write(new TextEncoder().encode(JSON.stringify(job)));
      await w.close();
      const out = await child.output();
      return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
    };
    const same = await run([[dir, st.dev, st.ino]]);
    assert.equal(same.code, 0, same.stderr);
    assert.match(await Deno.readTextFile(`${dir}/result.json`), /"result": "ran"/);
    await Deno.remove(`${dir}/result.json`);
    const swapped = await run([[dir, st.dev, (st.ino ?? 0) + 1]]);
    assert.notEqual(swapped.code, 0);
    assert.match(swapped.stderr, /the declared path .* changed while the sandbox was built/);
    await assert.rejects(Deno.stat(`${dir}/result.json`), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a cold runner outside bubblewrap whose parent is gone by the time it starts runs nothing", async () => {
  // Gleitzeit killed between the spawn and the runner's PR_SET_PDEATHSIG: the runner finds
  // another parent than the one its job names (here: a pid that is not its parent).
  const py = await resolvePython("python3");
  const code = await runnerBytecode(py);
  const dir = await Deno.makeTempDir();
  try {
    for (const [parent, runs] of [[Deno.pid === 1 ? 2 : 1, false], [Deno.pid, true]] as const) {
      const marker = `${dir}/ran-${parent}`;
      const job = {
        kind: "execute",
        code: `open(${JSON.stringify(marker)}, "w").close()\nresult = 1`,
        subreaper: true,
        parent_pid: parent,
        work_dir: dir,
        result_path: `${dir}/result-${parent}`,
      };
      await Deno.writeFile(`${dir}/boot`, bootstrapInput(code, JSON.stringify(job)));
      const out = await new Deno.Command(py.executable, {
        args: ["-I", "-S", "-c", RUNNER_BOOTSTRAP, "once", `${dir}/boot`],
        cwd: dir,
        stdout: "null",
        stderr: "null",
      }).output();
      const ran = await Deno.stat(marker).then(() => true, () => false);
      assert.equal(ran, runs, `parent ${parent}: the task ${runs ? "runs" : "must not run"}`);
      assert.equal(out.code, runs ? 0 : 1);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
