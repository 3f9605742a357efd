/**
 * The escape suite (issue 5): real hostile snippets against the bubblewrap sandbox, cold and
 * warm; then the same suite in a subprocess under the CLI's scoped Deno permissions.
 */

import assert from "node:assert/strict";
import { fileURLToPath as fromFileUrl } from "node:url";
import type { GleitzeitError } from "../../../src/core/errors.ts";
import { PythonProvider } from "../../../src/providers/python/python_provider.ts";
import {
  cleanupEscapeEnv,
  ESCAPE_CASES,
  type EscapeEnv,
  type EscapeOutcome,
  prepareEscapeEnv,
  requireRedis,
  runEscapeCase,
} from "./escape_suite.ts";
import { makeCtx } from "./helpers.ts";
import { denoAsUnprivileged, requireRoot } from "../../unprivileged.ts";

const projectDir = fromFileUrl(new URL("../../../", import.meta.url)).replace(/\/$/, "");

for (const [variant, poolSize] of [["cold", 0], ["warm", 2]] as const) {
  Deno.test(`[bwrap, ${variant}] escape suite: every hostile snippet is contained`, async (t) => {
    await requireRedis();
    const env: EscapeEnv = await prepareEscapeEnv(projectDir);
    const provider = new PythonProvider({ sandbox: "bwrap", poolSize });
    try {
      for (const c of ESCAPE_CASES) {
        await t.step(c.name, async () => {
          const outcome = await runEscapeCase(provider, c, env);
          assert.ok(outcome.contained, `${c.name}: ${outcome.detail}`);
        });
      }
      // After all that, the provider still runs tasks.
      const r = await provider.call("python/execute", { code: "result = 'alive'" }, makeCtx());
      assert.equal((r as { result: string }).result, "alive");
    } finally {
      await provider.close();
      await cleanupEscapeEnv(env);
    }
  });
}

Deno.test("[bwrap] a declared network grant is what makes Redis reachable", async () => {
  await requireRedis();
  const provider = new PythonProvider({ sandbox: "bwrap" });
  const code = "import socket\ns = socket.create_connection(('127.0.0.1', 6379), timeout=2)\n" +
    "s.sendall(b'PING\\r\\n')\nresult = s.recv(16).decode()";
  try {
    const granted = await provider.call(
      "python/execute",
      { code },
      makeCtx({ sandbox: { task: { network: true } } }),
    ) as { result: string };
    assert.equal(granted.result, "+PONG\r\n");
  } finally {
    await provider.close();
  }
});

Deno.test("[bwrap] declared read and write paths, relative to the workflow dir", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.chmod(dir, 0o755);
  await Deno.mkdir(`${dir}/data`, { mode: 0o755 });
  await Deno.writeTextFile(`${dir}/data/in.txt`, "input");
  await Deno.mkdir(`${dir}/out`, { mode: 0o777 });
  await Deno.chmod(`${dir}/out`, 0o777);
  const provider = new PythonProvider({ sandbox: "bwrap" });
  const base = { baseDir: dir };
  try {
    const code = `
import os
text = open(${JSON.stringify(`${dir}/data/in.txt`)}).read()
open(${JSON.stringify(`${dir}/out/result.txt`)}, "w").write(text.upper())
try:
    open(${JSON.stringify(`${dir}/data/new.txt`)}, "w").write("x")
    ro = "writable"
except OSError:
    ro = "read-only"
result = ro
`;
    const r = await provider.call(
      "python/execute",
      { code },
      makeCtx({ ...base, sandbox: { workflow: { read: ["data"] }, task: { write: ["out"] } } }),
    ) as { result: string };
    assert.equal(r.result, "read-only");
    assert.equal(await Deno.readTextFile(`${dir}/out/result.txt`), "INPUT");
    // Without the grant the same code cannot even see the file.
    const denied = await provider.call("python/execute", { code }, makeCtx(base)).catch((e) => e) as
      & Error
      & { code: string };
    assert.equal(denied.code, "TASK_EXECUTION_FAILED");
    assert.match(denied.message, /FileNotFoundError/);
  } finally {
    await provider.close();
    await Deno.remove(dir, { recursive: true });
  }
});

for (const mode of ["bwrap", "basic"] as const) {
  Deno.test(`[${mode}] declared paths beside the workflow file answer to their relative names in the task's cwd`, async () => {
    const top = await Deno.makeTempDir();
    await Deno.chmod(top, 0o755);
    const dir = `${top}/wf`;
    const dirs = [dir, `${dir}/data`, `${dir}/data/raw`, `${dir}/logs`, `${top}/other`];
    const more = [`${dir}/lib`, `${dir}/lib/a`, `${dir}/lib/b`, `${dir}/deep`, `${dir}/deep/x`];
    for (const d of [...dirs, ...more, `${dir}/deep/x/y`]) {
      await Deno.mkdir(d, { mode: 0o755 });
      await Deno.chmod(d, 0o755);
    }
    await Deno.writeTextFile(`${dir}/data/raw/in.txt`, "input");
    await Deno.writeTextFile(`${top}/other/o.txt`, "other");
    await Deno.mkdir(`${dir}/out`);
    await Deno.chmod(`${dir}/out`, 0o777);
    const provider = new PythonProvider({ sandbox: mode });
    try {
      const code = `
import os
text = open("data/raw/in.txt").read() + open(${JSON.stringify(`${top}/other/o.txt`)}).read()
open("out/result.txt", "w").write(text.upper())
result = {"cwd": os.getcwd() == os.environ["HOME"], "entries": sorted(os.listdir(".")),
          "lib": sorted(os.listdir("lib")), "deep": os.listdir("deep/x")}
`;
      const r = await provider.call(
        "python/execute",
        { code },
        makeCtx({
          baseDir: dir,
          sandbox: {
            // lib/a and lib/b share the parent lib, which is not declared
            workflow: {
              read: ["data", "data/raw", "../other", ".", "lib/a", "lib/b", "deep/x/y"],
            },
            task: { write: ["out/"] },
          },
        }),
      ) as { result: { cwd: boolean; entries: string[]; lib: string[]; deep: string[] } };
      assert.equal(await Deno.readTextFile(`${dir}/out/result.txt`), "INPUTOTHER");
      // data/raw comes through data's link; ../other and the workflow dir itself keep only
      // their absolute names.
      assert.deepEqual(r.result, {
        cwd: true,
        entries: ["data", "deep", "lib", "out"],
        lib: ["a", "b"],
        deep: ["y"],
      });
    } finally {
      await provider.close();
      await Deno.remove(top, { recursive: true });
    }
  });
}

/**
 * The flags the CLI runs with: they live in scripts/flags.sh (sourced by ./gleitzeit, the
 * compile script and the bundle tests), taken from there, exactly.
 */
async function cliFlags(): Promise<string[]> {
  const listed = await new Deno.Command("bash", {
    args: ["-c", 'source scripts/flags.sh && printf "%s\\n" "${GLEITZEIT_DENO_FLAGS[@]}"'],
    cwd: projectDir,
    stdout: "piped",
  }).output();
  assert.ok(listed.success, "cannot read scripts/flags.sh");
  const flags = new TextDecoder().decode(listed.stdout).trim().split("\n");
  assert.ok(flags.includes("--ignore-env") && flags.includes("--no-prompt"), flags.join(" "));
  assert.ok(!flags.includes("--allow-all") && !flags.includes("-A"), flags.join(" "));
  return flags;
}

const DRIVER = fromFileUrl(new URL("./escape_driver.ts", import.meta.url));

/** Asserts the escape driver's report: every case run, cold and warm, and 0 escapes. */
function assertNoEscapes(out: Deno.CommandOutput): void {
  const stderr = new TextDecoder().decode(out.stderr);
  assert.ok(out.success, `driver failed (${out.code}):\n${stderr.slice(-3000)}`);
  const report = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    flags: string[];
    outcomes: (EscapeOutcome & { variant: string })[];
  };
  const escaped = report.outcomes.filter((o) => !o.contained);
  assert.deepEqual(escaped, [], "0 escapes");
  assert.equal(report.outcomes.length, ESCAPE_CASES.length * 2 + 1);
}

Deno.test("escape suite under the CLI's scoped Deno permissions (scripts/flags.sh)", async () => {
  await requireRedis();
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...(await cliFlags()), DRIVER],
    cwd: projectDir,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertNoEscapes(out);
});

// The usual laptop case: the orchestrator is not root, so bubblewrap maps its own user into
// the sandbox, and tasks are that user (no uid of their own keeps them from its processes).
Deno.test("escape suite with the orchestrator not root, under the CLI's scoped permissions", async () => {
  requireRoot("the escape suite");
  await requireRedis();
  const dir = await Deno.makeTempDir({ prefix: "gleitzeit-unpriv-escape-" });
  try {
    await Deno.chmod(dir, 0o777);
    const out = await denoAsUnprivileged([...(await cliFlags()), DRIVER], {
      cwd: dir,
      env: { HOME: dir, DENO_DIR: `${dir}/deno`, PATH: "/usr/bin:/bin", NO_COLOR: "1" },
    });
    assertNoEscapes(out);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("[bwrap, warm] no IPC object outlives its task: POSIX queues and shared memory; no SysV IPC", async () => {
  // One warm parent: every task is a child of the same parent, in the same IPC namespace.
  const provider = new PythonProvider({ sandbox: "bwrap", poolSize: 1 });
  const mq = (flags: string) =>
    `import ctypes, os\nrt = ctypes.CDLL("librt.so.1", use_errno=True)\n` +
    `fd = rt.mq_open(b"/gleitzeit-leak", ${flags}, 0o666, None)\n` +
    `result = [fd, ctypes.get_errno()]`;
  // System V IPC is not there at all (ENOSYS): its memory is outside every limit.
  const sysv = `import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n` +
    `libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]\n` +
    `made = [libc.msgget(0x6c65616b, 0o1666), libc.shmget(0x6c65616b, 1 << 20, 0o1600),\n` +
    `        libc.semget(0x6c65616b, 1, 0o1600)]\n` +
    `result = [made, ctypes.get_errno()]`;
  try {
    for (let round = 0; round < 2; round++) {
      const made = await provider.call(
        "python/execute",
        { code: mq("os.O_CREAT | os.O_RDWR") },
        makeCtx(),
      ) as { result: [number, number] };
      assert.ok(made.result[0] >= 0, `the task could create a queue: ${made.result}`);
      const seen = await provider.call("python/execute", { code: mq("os.O_RDWR") }, makeCtx()) as {
        result: [number, number];
      };
      assert.deepEqual(seen.result, [-1, 2], "the next task must not find it (ENOENT)");
      const created = await provider.call("python/execute", { code: sysv }, makeCtx()) as {
        result: unknown;
      };
      assert.deepEqual(created.result, [[-1, -1, -1], 38], "SysV IPC fails with ENOSYS");
      // POSIX shared memory: a file in the sandbox's /dev/shm
      const put = await provider.call(
        "python/execute",
        { code: "open('/dev/shm/gleitzeit-leak', 'w').write('x')\nresult = 1" },
        makeCtx(),
      ) as { result: number };
      assert.equal(put.result, 1);
      const listed = await provider.call(
        "python/execute",
        { code: "import os\nresult = [n for n in os.listdir('/dev/shm') if 'leak' in n]" },
        makeCtx(),
      ) as { result: string[] };
      assert.deepEqual(listed.result, [], "the next task must not find the shared memory");
    }
  } finally {
    await provider.close();
  }
});

Deno.test("[bwrap] a declared path or script that is missing, or closed to the sandbox user, is named", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.chmod(dir, 0o755);
  await Deno.mkdir(`${dir}/locked`, { mode: 0o755 });
  await Deno.chmod(`${dir}/locked`, 0o755);
  // closed to others; search-only (a file in it opens by name)
  for (const [sub, mode] of [["private", 0o700], ["search", 0o711]] as const) {
    await Deno.mkdir(`${dir}/${sub}`);
    await Deno.chmod(`${dir}/${sub}`, mode);
  }
  const files = [["ok.py", 0o644], ["secret.py", 0o600], ["private/in.py", 0o644], [
    "search/in.py",
    0o644,
  ]] as const;
  for (const [file, mode] of files) {
    await Deno.writeTextFile(`${dir}/${file}`, "import sys\nresult = sys.argv[1:]\n");
    await Deno.chmod(`${dir}/${file}`, mode);
  }
  const provider = new PythonProvider({ sandbox: "bwrap" });
  const script = (name: string) =>
    provider.call("python/script", { script: name, args: ["a"] }, makeCtx({ baseDir: dir }))
      .catch((e) => e as GleitzeitError);
  const call = (sandbox: unknown, code = "result = 1") =>
    provider.call("python/execute", { code }, makeCtx({ baseDir: dir, sandbox: { task: sandbox } }))
      .catch((e) => e as GleitzeitError);
  const readIn = (sub: string) => `result = open(${JSON.stringify(`${dir}/${sub}/in.py`)}).read()`;
  try {
    const missing = await call({ read: ["data"] }) as GleitzeitError;
    assert.equal(missing.code, "TASK_PARAMETER_ERROR");
    assert.match(missing.message, new RegExp(`read path ${dir}/data does not exist`));
    assert.match(missing.hint ?? "", /sandbox\.read/);
    if (Deno.uid() === 0) {
      const locked = await call({ write: ["locked"] }) as GleitzeitError;
      assert.equal(locked.code, "TASK_PARAMETER_ERROR");
      assert.match(locked.message, /not writable by the sandbox user \(uid 65534\)/);
      assert.match(locked.hint ?? "", /chown 65534/);
      // What the sandbox user cannot read fails when read, with a hint naming that user
      for (
        const failed of [
          await call({ read: ["private"] }, readIn("private")),
          await script("secret.py"),
          await script("private/in.py"),
        ] as GleitzeitError[]
      ) {
        assert.equal(failed.code, "TASK_EXECUTION_FAILED", failed.message);
        assert.match(failed.message, /PermissionError: \[Errno 13\] Permission denied/);
        assert.match(failed.hint ?? "", /unprivileged user \(uid 65534[^)]*\).*chmod o\+r/);
      }
    }
    // a directory the sandbox user may only search: files in it open by name
    assert.match(
      (await call({ read: ["search"] }, readIn("search")) as { result: string }).result,
      /argv/,
    );
    assert.deepEqual((await script("search/in.py") as { result: unknown }).result, ["a"]);
    assert.deepEqual((await script("ok.py") as { result: unknown }).result, ["a"]);
  } finally {
    await provider.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("[bwrap] multiprocessing works inside the sandbox (its own /dev/shm), cold and warm, with the task's own functions and classes", async () => {
  // Pool and ProcessPoolExecutor pickle what they run by name: the task's code is __main__
  // (sys.modules too), so its own functions and classes are found there. Inline code with the
  // fork start method (Linux's default before Python 3.14; spawn and forkserver import
  // __main__ from its file, which inline code has not); a script with any.
  const code = `
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
mp = multiprocessing.get_context("fork")
def sq(x):
    return x * x
class Cube:
    def __call__(self, x):
        return x ** 3
with mp.Pool(2) as p:
    pool = p.map(sq, [1, 2, 3])
    builtin = p.map(abs, [-1, -2, 3])
with ProcessPoolExecutor(2, mp_context=mp) as ex:
    executor = list(ex.map(Cube(), [1, 2]))
result = [pool, builtin, executor]
`;
  const script = `import multiprocessing as mp
def sq(x):
    return x * x
if __name__ == "__main__":
    with mp.Pool(2) as p:
        result = p.map(sq, [4, 5])
`;
  const dir = await Deno.makeTempDir({ prefix: "gleitzeit-mp-" });
  await Deno.chmod(dir, 0o755);
  await Deno.writeTextFile(`${dir}/pool.py`, script);
  await Deno.chmod(`${dir}/pool.py`, 0o644);
  try {
    for (const sandbox of ["bwrap", "none"] as const) {
      for (const poolSize of [0, 1]) {
        const provider = new PythonProvider({ sandbox, poolSize });
        try {
          const r = await provider.call("python/execute", { code }, makeCtx()) as {
            result: unknown;
          };
          assert.deepEqual(
            r.result,
            [[1, 4, 9], [1, 2, 3], [1, 8]],
            `${sandbox}, pool ${poolSize}`,
          );
          const s = await provider.call(
            "python/script",
            { script: "pool.py" },
            makeCtx({ baseDir: dir }),
          ) as { result: unknown };
          assert.deepEqual(s.result, [16, 25], `${sandbox}, pool ${poolSize}: script`);
        } finally {
          await provider.close();
        }
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
