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

Deno.test("closing inherited descriptors as before Python 3.10 leaves only 0, 1 and 2", async () => {
  const code = `
import sys, json
import posix as os
_ipc_fds, _mqueue_fd, _shm_fd = [], None, None  # the runner's, none yet at its start
${part("def _close_inherited():", "def _install_seccomp(")}
opened = [os.open("/dev/null", os.O_RDONLY) for _ in range(5)]
os.dup2(opened[0], 1000)
os.dup2(opened[1], 1020)
sys.version_info = (3, 9, 18, "final", 0)  # the branch older Pythons take
_close_inherited()
left = sorted(int(n) for n in os.listdir("/proc/self/fd"))
print(json.dumps({"left": left}))
`;
  const r = JSON.parse(await runPython(code)) as { left: number[] };
  // 0-2, and the descriptor of the listing itself (the last one, open while listing)
  assert.deepEqual(r.left.slice(0, 3), [0, 1, 2]);
  assert.ok(r.left.length <= 4, `left open: ${r.left}`);
  assert.ok(!r.left.includes(1000) && !r.left.includes(1020), `left open: ${r.left}`);
});

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
