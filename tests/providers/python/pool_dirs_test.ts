/** Pool directories of processes that died without cleaning up are removed by the next provider. */

import assert from "node:assert/strict";
import { PythonProvider } from "../../../src/providers/python/python_provider.ts";
import { makeCtx } from "./helpers.ts";

Deno.test("pool directories left by dead processes are swept; live ones and our own stay", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "gleitzeit-sweep-" });
  // a pid that cannot exist (above pid_max) stands for a process killed with SIGKILL
  const dead = `${tmp}/gleitzeit-pool-4194999-abc`;
  const live = `${tmp}/gleitzeit-pool-1-def`; // pid 1 is always alive
  const other = `${tmp}/unrelated-dir`;
  for (const d of [dead, live, other]) await Deno.mkdir(`${d}/t`, { recursive: true });
  const provider = new PythonProvider({ sandbox: "basic", poolSize: 1, tempDir: tmp });
  try {
    const out = await provider.call("python/execute", { code: "result = 42" }, makeCtx()) as {
      result: unknown;
    };
    assert.equal(out.result, 42);
    const names = [...Deno.readDirSync(tmp)].map((e) => e.name).sort();
    assert.ok(!names.includes("gleitzeit-pool-4194999-abc"), `not swept: ${names}`);
    assert.ok(names.includes("gleitzeit-pool-1-def"));
    assert.ok(names.includes("unrelated-dir"));
    assert.ok(names.some((n) => n.startsWith(`gleitzeit-pool-${Deno.pid}-`)), `own pool: ${names}`);
  } finally {
    await provider.close();
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("cold task and probe directories left by dead processes are swept by the next provider", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "gleitzeit-sweep-" });
  const dead = `${tmp}/gleitzeit-py-4194999-abc`;
  const deadProbe = `${tmp}/gleitzeit-probe-4194999-abc`; // killed while probing bubblewrap
  const live = `${tmp}/gleitzeit-py-1-def`;
  for (const d of [dead, deadProbe, live]) await Deno.mkdir(`${d}/work`, { recursive: true });
  const provider = new PythonProvider({ sandbox: "basic", poolSize: 0, tempDir: tmp });
  try {
    const out = await provider.call("python/execute", { code: "result = 7" }, makeCtx()) as {
      result: unknown;
    };
    assert.equal(out.result, 7);
    await provider.close(); // waits for the background sweep
    const names = [...Deno.readDirSync(tmp)].map((e) => e.name).sort();
    assert.deepEqual(names, ["gleitzeit-py-1-def"], "the dead one swept, the live one kept");
  } finally {
    await provider.close();
    await Deno.remove(tmp, { recursive: true });
  }
});
