/**
 * A task that fails because of its sandbox (a limit, a file it may not see, a connection it
 * may not make) says which `sandbox:` setting changes that; a refused connection in a sandbox
 * without network is not retried.
 */

import assert from "node:assert/strict";
import { GleitzeitError } from "../../../src/core/errors.ts";
import { PythonProvider } from "../../../src/providers/python/python_provider.ts";
import { makeCtx } from "./helpers.ts";

/** The error of `code` run with the task sandbox `task` (warm pool and cold alike). */
async function failure(
  p: PythonProvider,
  code: string,
  task: Record<string, unknown> = {},
): Promise<GleitzeitError> {
  const e = await p.call("python/execute", { code }, makeCtx({ sandbox: { task } })).then(
    () => undefined,
    (e) => e,
  );
  assert.ok(e instanceof GleitzeitError, `no failure for ${code}`);
  return e;
}

/** A TCP port on 127.0.0.1 that nothing listens on. */
function closedPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

for (const poolSize of [0, 1]) {
  const how = poolSize ? "warm" : "cold";
  Deno.test(`[bwrap, ${how}] failures the sandbox caused name the setting that changes them`, async () => {
    const p = new PythonProvider({ sandbox: "bwrap", poolSize });
    try {
      const cases: [string, Record<string, unknown>, RegExp, string?][] = [
        ["x = bytearray(200 * 1024 * 1024)", { memory_mb: 100 }, /100 MiB.*memory_mb/, "memory_mb"],
        [
          "open('f', 'wb').write(b'x' * (2 << 20))",
          { file_size_mb: 1 },
          /1 MiB.*file_size_mb/,
          "file_size_mb",
        ],
        [
          "import os, time\nfor i in range(10):\n    if os.fork() == 0:\n        time.sleep(2)\n" +
          "        os._exit(0)",
          { max_processes: 5 },
          /5 processes.*max_processes/,
          "max_processes",
        ],
        [
          "fs = [open('/dev/null') for i in range(100)]",
          { open_files: 20 },
          /20 open.*open_files/,
          "open_files",
        ],
        ["open('data/scores.csv')", {}, /data\/scores\.csv.*sandbox: \{read/],
      ];
      for (const [code, task, hint, limit] of cases) {
        const e = await failure(p, code, task);
        assert.match(e.hint ?? "", hint, `${code}: ${e.message}`);
        assert.equal((e.details as Record<string, unknown>)?.limit, limit, code);
        assert.equal(e.retryable, false, code);
      }
      // A plain bug gets no such hint, nor a program that is not there.
      assert.equal((await failure(p, "raise ValueError('bad')")).hint, undefined);
      const program = await failure(p, "import subprocess\nsubprocess.run(['no-such-program'])");
      assert.match(program.message, /FileNotFoundError/);
      assert.equal(program.hint, undefined);
    } finally {
      await p.close();
    }
  });
}

Deno.test("[bwrap] a connection refused for want of network is not retried, and says so", async () => {
  const p = new PythonProvider({ sandbox: "bwrap", poolSize: 1 });
  const port = closedPort();
  const code =
    `import urllib.request\nurllib.request.urlopen("http://127.0.0.1:${port}", timeout=5)`;
  try {
    const boxed = await failure(p, code);
    assert.match(boxed.message, /URLError/);
    assert.equal(boxed.retryable, false);
    assert.match(boxed.hint ?? "", /no network.*sandbox: \{network: true\}/);
    // With network, the same refused connection is a transient failure: retried, no hint.
    const open = await failure(p, code, { network: true });
    assert.match(open.message, /Connection refused/);
    assert.equal(open.retryable, true);
    assert.equal(open.hint, undefined);
  } finally {
    await p.close();
  }
});
