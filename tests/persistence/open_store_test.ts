import * as assert from "node:assert/strict";
import { GleitzeitError } from "../../src/core/errors.ts";
import { defaultSqlitePath, openStore } from "../../src/persistence/open_store.ts";
import { RedisStore } from "../../src/persistence/redis_store.ts";
import { REDIS_TEST_URL } from "./redis_helpers.ts";

Deno.test("openStore: memory and none", async () => {
  for (const backend of ["memory", "none"] as const) {
    const s = await openStore({ backend });
    assert.equal(s.backend, "memory");
    await s.close();
  }
});

Deno.test("openStore: sqlite creates parent directories and the schema", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/a/b/gleitzeit.db`;
    const s = await openStore({ backend: "sqlite", sqlitePath: path });
    assert.equal(s.backend, "sqlite");
    assert.equal((await s.stats()).totalRuns, 0);
    await s.close();
    assert.ok((await Deno.stat(path)).isFile);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("openStore: sqlite on an unusable path is PERSISTENCE_UNAVAILABLE", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/file`, "");
    const err = await openStore({ backend: "sqlite", sqlitePath: `${dir}/file/x.db` }).catch((e) =>
      e
    );
    assert.ok(err instanceof GleitzeitError);
    assert.equal(err.code, "PERSISTENCE_UNAVAILABLE");
    assert.ok(err.hint);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("openStore: redis with a prefix", async () => {
  const prefix = `gleitzeit-test:${crypto.randomUUID()}:`;
  const s = await openStore({ backend: "redis", redisUrl: REDIS_TEST_URL, redisPrefix: prefix });
  try {
    assert.ok(s instanceof RedisStore);
    assert.equal(s.prefix, prefix);
    assert.equal(s.backend, "redis");
  } finally {
    await (s as RedisStore).clear();
    await s.close();
  }
});

Deno.test("openStore: unknown backend is CONFIG_ERROR", async () => {
  // deno-lint-ignore no-explicit-any
  const err = await openStore({ backend: "postgres" as any }).catch((e) => e);
  assert.equal(err.code, "CONFIG_ERROR");
  assert.equal(defaultSqlitePath("/home/u/"), "/home/u/.gleitzeit/gleitzeit.db");
});

Deno.test("openStore: its static imports reach neither node:sqlite nor redis (lazy loading)", async () => {
  for (const file of ["open_store.ts", "redis_store.ts"]) {
    const url = new URL(`../../src/persistence/${file}`, import.meta.url);
    const { stdout, success } = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", url.pathname],
      stdout: "piped",
      stderr: "inherit",
    }).output();
    assert.ok(success, "deno info failed");
    const info = JSON.parse(new TextDecoder().decode(stdout)) as {
      modules: {
        specifier: string;
        dependencies?: { specifier: string; isDynamic?: boolean; code?: { specifier: string } }[];
      }[];
    };
    const byUrl = new Map(info.modules.map((m) => [m.specifier, m]));
    const seen = new Set<string>();
    const walk = (spec: string) => {
      if (seen.has(spec)) return;
      seen.add(spec);
      for (const d of byUrl.get(spec)?.dependencies ?? []) {
        if (!d.isDynamic) walk(d.code?.specifier ?? new URL(d.specifier, spec).href);
      }
    };
    walk(url.href);
    const heavy = [...seen].filter((s) => s === "node:sqlite" || s.includes("redis@"));
    assert.deepEqual(heavy, [], `${file} loads ${heavy} at startup`);
  }
});
