/**
 * The warm parent's copy of the interpreter's code into huge pages (`_huge_code` in the
 * runner): warm tasks run that code from an anonymous read+execute copy where the layout
 * allows; and, run on its own in a plain interpreter, only chunks that are byte for byte the
 * file are taken, so a uprobe attached to the interpreter (a breakpoint written into the
 * process's page) is never copied away from the file it belongs to, where hitting it would
 * end the warm parent with SIGTRAP.
 */

import assert from "node:assert/strict";
import { RUNNER_SOURCE } from "../../../src/providers/python/runner_source.ts";
import { resolvePython } from "../../../src/providers/python/python_interpreter.ts";
import { PythonProvider } from "../../../src/providers/python/python_provider.ts";
import { makeCtx, withTracefs } from "./helpers.ts";

const HUGE_CODE = RUNNER_SOURCE.slice(
  RUNNER_SOURCE.indexOf("def _huge_code("),
  RUNNER_SOURCE.indexOf("def _pool():"),
);

/** Python: maps() lists this process's mappings as (lo, hi, perms, offset, path). */
const MAPS = `
def maps():
    out = []
    for line in open("/proc/self/maps"):
        p = line.split(None, 5)
        lo, hi = (int(x, 16) for x in p[0].split("-"))
        out.append((lo, hi, p[1], int(p[2], 16), p[5].strip() if len(p) > 5 else ""))
    return out
`;

// argv: mode ("plain" | "header" | "probe"). Prints the file holding the interpreter's code,
// PyObject_Free's offset in it, the chunks copied, and the chunks now anonymous r-xp.
const HARNESS = `
import ctypes, json, sys
import posix as os
${HUGE_CODE}
${MAPS}
huge = 2 << 20
libc = ctypes.CDLL(None, use_errno=True)
free = ctypes.cast(ctypes.pythonapi.PyObject_Free, ctypes.c_void_p).value
m = next(m for m in maps() if m[0] <= free < m[1])
path, offset = m[4], free - m[0] + m[3]
first = min(x[0] for x in maps() if x[4] == path)
if sys.argv[1] == "header":
    # one byte of the ELF header's padding (e_ident[15], never read at run time) differs from
    # the file now, as a uprobe's breakpoint would
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    assert libc.mprotect(first, 4096, 3) == 0
    ctypes.memset(first + 15, 0x55, 1)
    assert libc.mprotect(first, 4096, 1) == 0
done = _huge_code(ctypes, libc)
# run plenty of code (PyObject_Free above all) after the copy
for i in range(2000):
    json.loads(json.dumps({"i": [i] * 10}))
anon = sorted({x[0] - x[0] % huge for x in maps() if x[2] == "r-xp" and x[4] == ""
               and x[1] - x[0] >= huge and x[0] % huge == 0})
print(json.dumps({"path": path, "offset": offset, "done": done, "anon": anon,
                  "free_chunk": free - free % huge, "header_chunk": first - first % huge}))
`;

async function harness(
  python: string,
  mode: string,
  env: Record<string, string> = {},
): Promise<{ code: number; signal: string | null; out: Record<string, unknown>; err: string }> {
  const r = await new Deno.Command(python, { args: ["-I", "-S", "-c", HARNESS, mode], env })
    .output();
  const text = new TextDecoder().decode(r.stdout).trim();
  return {
    code: r.code,
    signal: r.signal,
    out: text ? JSON.parse(text) : {},
    err: new TextDecoder().decode(r.stderr),
  };
}

Deno.test("huge code: a chunk that differs from the interpreter's file is left where it is", async () => {
  const py = await resolvePython("python3");
  const plain = await harness(py.executable, "plain");
  assert.equal(plain.code, 0, plain.err);
  const taken = plain.out.anon as number[];
  assert.equal(plain.out.done, taken.length);
  assert.ok(taken.includes(plain.out.header_chunk as number), JSON.stringify(plain.out));
  const changed = await harness(py.executable, "header");
  assert.equal(changed.code, 0, changed.err);
  const header = changed.out.header_chunk as number;
  assert.ok(!(changed.out.anon as number[]).includes(header), JSON.stringify(changed.out));
  assert.equal(changed.out.done, taken.length - 1, "the other chunks are still taken");
});

Deno.test("huge code: a uprobe on the interpreter stays where the kernel put it (no SIGTRAP)", async () => {
  if (Deno.uid() !== 0) throw new Error("this test needs root to attach a uprobe (tracefs)");
  const py = await resolvePython("python3");
  const plain = await harness(py.executable, "plain");
  assert.equal(plain.code, 0, plain.err);
  // A private copy of the file holding the interpreter's code, so that the probe reaches no
  // other process: run as the executable itself, or found first through LD_LIBRARY_PATH.
  const dir = await Deno.makeTempDir({ prefix: "gleitzeit-uprobe-" });
  const file = plain.out.path as string;
  const copy = `${dir}/${file.slice(file.lastIndexOf("/") + 1)}`;
  await Deno.copyFile(file, copy);
  await Deno.chmod(copy, 0o755);
  const isExecutable = file === await Deno.realPath(py.executable);
  const python = isExecutable ? copy : py.executable;
  const env: Record<string, string> = isExecutable ? {} : { LD_LIBRARY_PATH: dir };
  const event = `gz_test_${Deno.pid}`;
  await withTracefs(async (tracing) => {
    await Deno.writeTextFile(
      `${tracing}/uprobe_events`,
      `p:${event}/free ${copy}:0x${(plain.out.offset as number).toString(16)}\n`,
      { append: true },
    );
    try {
      await Deno.writeTextFile(`${tracing}/events/${event}/free/enable`, "1");
      const probed = await harness(python, "plain", env);
      assert.equal(probed.signal, null, `ended by ${probed.signal}: ${probed.err}`);
      assert.equal(probed.code, 0, probed.err);
      assert.equal(probed.out.path, copy, "the interpreter ran from the probed copy");
      const chunk = probed.out.free_chunk as number;
      assert.ok(!(probed.out.anon as number[]).includes(chunk), JSON.stringify(probed.out));
    } finally {
      await Deno.writeTextFile(`${tracing}/events/${event}/free/enable`, "0").catch(() => {});
      await Deno.writeTextFile(`${tracing}/uprobe_events`, `-:${event}/free\n`, { append: true })
        .catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  });
});

// Which 2 MiB chunk holds the interpreter's PyObject_Free, and whether that chunk is made
// wholly of the interpreter file's read-only mappings (then the warm parent copies it into
// anonymous huge pages), as a task or a plain interpreter sees its own memory.
const CODE_CHUNK = `
import ctypes
${MAPS}
a = ctypes.cast(ctypes.pythonapi.PyObject_Free, ctypes.c_void_p).value
own = next(m for m in maps() if m[0] <= a < m[1])
chunk = a - a % (2 << 20)
parts = [m for m in maps() if m[0] < chunk + (2 << 20) and m[1] > chunk]
result = {"perm": own[2], "anonymous": own[4] == "", "pages": [m[2] for m in parts],
          "whole": parts[0][0] <= chunk and parts[-1][1] >= chunk + (2 << 20)
                   and all(b[0] == c[1] for c, b in zip(parts, parts[1:])),
          "files": sorted({m[4] for m in parts}),
          "huge_kb": int(next(l for l in open("/proc/self/smaps_rollup")
                              if l.startswith("AnonHugePages")).split()[1])}
`;

Deno.test("[bwrap] the warm parent hands its children the interpreter's code in huge pages", async () => {
  // A plain interpreter's layout says whether the chunk can be taken at all (the loader
  // decides where the file lands); the warm parent's children must then run that code from
  // an anonymous read+execute copy, never a writable one.
  const py = await resolvePython("python3");
  const plain = await new Deno.Command(py.executable, {
    args: ["-I", "-S", "-c", CODE_CHUNK + "\nimport json\nprint(json.dumps(result))"],
  }).output();
  assert.equal(plain.code, 0, new TextDecoder().decode(plain.stderr));
  const layout = JSON.parse(new TextDecoder().decode(plain.stdout));
  assert.equal(layout.anonymous, false, "a plain interpreter runs its code from its file");
  const takeable = layout.whole && layout.files.length === 1 &&
    layout.pages.every((p: string) => p === "r--p" || p === "r-xp");
  const provider = new PythonProvider({ sandbox: "bwrap", poolSize: 1 });
  try {
    const call = await provider.call("python/execute", { code: CODE_CHUNK }, makeCtx());
    const task = (call as { result: Record<string, unknown> }).result;
    assert.equal(task.perm, "r-xp");
    assert.equal(task.anonymous, takeable, JSON.stringify({ layout, task }));
    const thp = await Deno.readTextFile("/sys/kernel/mm/transparent_hugepage/enabled");
    if (takeable && !thp.includes("[never]")) {
      assert.ok((task.huge_kb as number) >= 2048, JSON.stringify(task));
    }
  } finally {
    await provider.close();
  }
});
