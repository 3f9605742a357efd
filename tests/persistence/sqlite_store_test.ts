import * as assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { GleitzeitError } from "../../src/core/errors.ts";
import { SQLITE_SCHEMA_VERSION, SqliteStore } from "../../src/persistence/sqlite_store.ts";
import { fixture, storeContract } from "./store_contract.ts";

storeContract("sqlite", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gleitzeit-sqlite-" });
  const path = `${dir}/sub/dir/gleitzeit.db`;
  const opened: SqliteStore[] = [];
  const open = () => {
    const s = SqliteStore.open(path);
    opened.push(s);
    return s;
  };
  return {
    store: open(),
    connect: () => Promise.resolve(open()),
    cleanup: async () => {
      for (const s of opened) await s.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
});

Deno.test("sqlite: WAL, synchronous=NORMAL, busy_timeout and the schema version are set", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const store = SqliteStore.open(`${dir}/a.db`);
    assert.equal(store.pragma("journal_mode"), "wal");
    assert.equal(store.pragma("synchronous"), 1);
    assert.equal(store.pragma("busy_timeout"), 5000);
    assert.equal(store.pragma("user_version"), SQLITE_SCHEMA_VERSION);
    await store.close();
    const again = SqliteStore.open(`${dir}/a.db`, { busyTimeoutMs: 250 });
    assert.equal(again.pragma("busy_timeout"), 250);
    assert.equal(again.pragma("user_version"), SQLITE_SCHEMA_VERSION);
    await again.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sqlite: a database of schema 1 (no owner leases) is upgraded, its runs kept", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/old.db`;
    const { run, tasks } = fixture({ tasks: ["a"] });
    const store = SqliteStore.open(path);
    await store.createRun({ ...run, owner: "A", heartbeatAt: run.createdAt }, tasks);
    await store.close();
    // back to what schema 1 was
    const db = new DatabaseSync(path);
    db.exec(
      "DROP INDEX runs_owner; ALTER TABLE runs DROP COLUMN lease_ms; PRAGMA user_version = 1",
    );
    db.close();
    const again = SqliteStore.open(path);
    try {
      assert.equal(again.pragma("user_version"), SQLITE_SCHEMA_VERSION);
      const got = await again.getRun(run.id);
      assert.equal(got?.owner, "A");
      assert.equal(got?.leaseMs, undefined);
      assert.equal(
        await again.claimRun(run.id, "B", run.createdAt + 10, run.createdAt + 5, 900),
        true,
      );
      assert.equal((await again.getRun(run.id))?.leaseMs, 900);
      // a write for an owner reads the owner from the index the upgrade made
      await again.updateRun(run.id, { heartbeatAt: run.createdAt + 20 }, "B");
      await assert.rejects(again.updateRun(run.id, { heartbeatAt: 1 }, "A"), /took it over/);
    } finally {
      await again.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sqlite: a database from a newer gleitzeit is refused with a hint", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const db = new DatabaseSync(`${dir}/new.db`);
    db.exec(`PRAGMA user_version = ${SQLITE_SCHEMA_VERSION + 1}`);
    db.close();
    assert.throws(() => SqliteStore.open(`${dir}/new.db`), (e: unknown) => {
      assert.ok(e instanceof GleitzeitError);
      assert.equal(e.code, "PERSISTENCE_ERROR");
      assert.match(e.message, /newer than this gleitzeit/);
      assert.ok(e.hint);
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sqlite: a finishTasks batch of N finishes is one commit; concurrent writes share one", async () => {
  const store = SqliteStore.open(":memory:");
  try {
    const ids = Array.from({ length: 50 }, (_, i) => `t${i}`);
    const { run, tasks } = fixture({ tasks: ids });
    await store.createRun(run, tasks);
    const c0 = store.commits;
    await Promise.all(ids.map((id) => store.startAttempt(run.id, id, 1, 1)));
    assert.equal(store.commits - c0, 1, "claims issued together share one commit");
    const before = store.commits;
    await store.finishTasks(ids.map((taskId) => ({
      runId: run.id,
      taskId,
      state: "completed" as const,
      at: 2,
      attempt: 1,
      result: taskId,
    })));
    assert.equal(store.commits - before, 1);
    await store.finishTasks([]);
    assert.equal(store.commits - before, 1, "an empty batch commits nothing");
    await store.listTasks({ runId: run.id });
    await store.stats();
    assert.equal(store.commits - before, 1, "reads commit nothing");
  } finally {
    await store.close();
  }
});
