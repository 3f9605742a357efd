/**
 * Parts of the runner run on their own in a plain interpreter: closing inherited descriptors
 * the way Pythons before 3.10 need (their `os.closerange` closes every number in turn, a
 * billion calls: no warm pool started and cold tasks hung), and the warm parent's filling of
 * pymalloc's free blocks (which reads a table CPython prints: a change of its form would make
 * it do nothing, silently).
 */

import assert from "node:assert/strict";
import { RUNNER_SOURCE } from "../../../src/providers/python/runner_source.ts";
import { resolvePython } from "../../../src/providers/python/python_interpreter.ts";

function part(from: string, to: string): string {
  const start = RUNNER_SOURCE.indexOf(from);
  const end = RUNNER_SOURCE.indexOf(to, start);
  assert.ok(start >= 0 && end > start, `${from} .. ${to} in the runner`);
  return RUNNER_SOURCE.slice(start, end);
}

async function runPython(code: string): Promise<string> {
  const py = await resolvePython("python3");
  const out = await new Deno.Command(py.executable, {
    args: ["-I", "-S", "-c", code],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, stderr);
  return new TextDecoder().decode(out.stdout).trim();
}

for (const version of ["(3, 9, 18)", "(3, 11, 2)"]) {
  Deno.test(`closing inherited descriptors (Python ${version}) leaves only 0, 1 and 2`, async () => {
    const code = `
import sys, json
import posix as os
_ipc_fds, _mqueue_fd, _shm_fd = [], None, None  # the runner's, none yet at its start
${part("def _close_inherited(", "def _install_seccomp(")}
def opened():
    fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(5)]
    os.dup2(fds[0], 1000)
    os.dup2(fds[1], 1020)
    os.dup2(fds[2], 1010)
opened()
sys.version_info = ${version} + ("final", 0)  # (3.9: the branch older Pythons take)
_close_inherited()
left = sorted(int(n) for n in os.listdir("/proc/self/fd"))
print(json.dumps({"left": left}))
`;
    const r = JSON.parse(await runPython(code)) as { left: number[] };
    // 0-2, and the descriptor of the listing itself (the last one, open while listing)
    assert.deepEqual(r.left.slice(0, 3), [0, 1, 2]);
    assert.ok(r.left.length <= 4, `left open: ${r.left}`);
    for (const fd of [1000, 1010, 1020]) assert.ok(!r.left.includes(fd), `left open: ${r.left}`);
  });
}

Deno.test("the warm parent's filler reads pymalloc's table and takes its free blocks", async () => {
  const code = `
import sys, json, gc
import posix as os
${part("_plugs = []", "def _pool():")}
import json as _j, re, collections, datetime  # a parent with something in its pools
gc.collect()
before = _free_blocks()
_plug_pools()
after = _free_blocks()
print(json.dumps({"classes": len(before), "before": sum(before.values()),
                  "after": sum(after.values()), "filled": sum(len(x) for x in _plugs)}))
`;
  const r = JSON.parse(await runPython(code)) as Record<string, number>;
  // CPython 3.8-3.13: 32 size classes of 16 bytes up to 512 (3.8's table is the same)
  assert.ok(r.classes >= 32, `size classes read: ${r.classes}`);
  assert.ok(r.filled > 0, "objects made to fill free blocks");
  assert.ok(r.after < r.before, `free blocks before ${r.before}, after ${r.after}`);
});

Deno.test("removing a task's tree: deeper than PATH_MAX, locked directories, links not followed, mounts not entered", async () => {
  if (Deno.uid() !== 0) throw new Error("this test needs root (it bind-mounts a directory)");
  const dir = await Deno.makeTempDir({ prefix: "gleitzeit-purge-" });
  try {
    const code = `
import json
import posix as os
_own_user = False
${part("def _purge(path):", "def _pool_plain(")}
base = ${JSON.stringify(dir)}
os.mkdir(base + "/outside")
open(base + "/outside/keep", "w").write("x")
tree = base + "/tree"
os.mkdir(tree)
os.chdir(tree)
for i in range(30):  # 7500 characters of path below tree: past PATH_MAX
    os.mkdir("d" * 250)
    os.chdir("d" * 250)
    open("f", "w").write("x")
os.symlink(base + "/outside", "link")
os.mkdir("locked")
open("locked/f", "w").write("x")
os.chmod("locked", 0)
os.mkdir("m")
pid = os.fork()
if pid == 0:  # a file system mounted at the bottom (relative: the whole path is too long)
    os.execv("/bin/mount", ["mount", "-t", "tmpfs", "none", "m"])
os.waitpid(pid, 0)
open("m/keep", "w").write("x")
m = os.open("m", os.O_RDONLY | os.O_DIRECTORY)
os.chdir(base)
_purge(tree)
left = []  # what is left below tree, level by level (by descriptors: past PATH_MAX)
fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
while True:
    names = sorted(os.listdir(fd))
    left.append(names)
    if names != ["d" * 250]:
        break
    below = os.open(names[0], os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
    os.close(fd)
    fd = below
print(json.dumps([sorted(os.listdir(base)), os.listdir(base + "/outside"), os.listdir(m),
                  len(left), left[-1]]))
`;
    const py = (await resolvePython("python3")).executable;
    const out = await new Deno.Command("unshare", {
      args: ["-m", "--propagation", "private", py, "-I", "-S", "-c", code],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const [entries, outside, mounted, levels, bottom] = JSON.parse(
      new TextDecoder().decode(out.stdout).trim(),
    );
    // the tree stays only for the mount point in it (not entered, so not emptied; a bind
    // mount of the same file system would be: tasks cannot mount anything)
    assert.deepEqual(entries, ["outside", "tree"]);
    assert.deepEqual(outside, ["keep"], "the link out was not followed");
    assert.deepEqual(mounted, ["keep"], "the mounted file system was not entered");
    // all the rest went, down to the bottom: the chain to the mount point, and it alone
    assert.deepEqual([levels, bottom], [31, ["m"]]);
  } finally {
    await new Deno.Command("rm", { args: ["-rf", dir] }).output();
  }
});
