import * as assert from "node:assert/strict";
import { GleitzeitError } from "../../src/core/errors.ts";
import { RedisStore } from "../../src/persistence/redis_store.ts";
import { fixture, storeContract } from "./store_contract.ts";
import { connectTestRedis, REDIS_TEST_URL, startPrivateRedis } from "./redis_helpers.ts";

storeContract("redis", async () => {
  const prefix = `gleitzeit-test:${crypto.randomUUID()}:`;
  const opened: RedisStore[] = [];
  const open = async () => {
    const s = await connectTestRedis(prefix);
    opened.push(s);
    return s;
  };
  const store = await open();
  return {
    store,
    connect: open,
    cleanup: async () => {
      const admin = await RedisStore.connect({ url: REDIS_TEST_URL, prefix });
      await admin.clear();
      await admin.close();
      for (const s of opened) await s.close();
    },
  };
});

Deno.test("redis: an unreachable server fails fast with PERSISTENCE_UNAVAILABLE and a hint", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const url = `redis://127.0.0.1:${port}`;
  const t0 = performance.now();
  const err = await RedisStore.connect({ url }).then(
    () => assert.fail("connected to nothing"),
    (e) => e,
  );
  assert.ok(performance.now() - t0 < 3000, "failed within 3 s");
  assert.ok(err instanceof GleitzeitError);
  assert.equal(err.code, "PERSISTENCE_UNAVAILABLE");
  assert.equal(err.exitCode, 3);
  assert.ok(!err.message.includes("\n"), "one line");
  assert.match(err.message, new RegExp(`^cannot reach Redis at ${url}: .*ECONNREFUSED`));
  assert.match(err.hint ?? "", new RegExp(`is Redis running at ${url}\\? start it with`));
});

Deno.test("redis: openStore's url with a password is not shown in errors", async () => {
  const err = await RedisStore.connect({ url: "redis://:s3cret@127.0.0.1:1" }).catch((e) => e);
  assert.equal(err.code, "PERSISTENCE_UNAVAILABLE");
  assert.ok(!err.message.includes("s3cret") && !(err.hint ?? "").includes("s3cret"));
});

Deno.test("redis: a server lost mid-run turns into PERSISTENCE_UNAVAILABLE, not a hang or crash", async () => {
  const server = await startPrivateRedis();
  const store = await RedisStore.connect({ url: server.url, reconnectAttempts: 2 });
  try {
    const { run, tasks } = fixture({ tasks: ["a"] });
    await store.createRun(run, tasks);
    await server.kill();
    const t0 = performance.now();
    const err = await store.getRun(run.id).then(() => undefined, (e) => e);
    assert.ok(performance.now() - t0 < 5000, `failed within 5 s (${performance.now() - t0} ms)`);
    assert.ok(err instanceof GleitzeitError, `got ${err}`);
    assert.equal(err.code, "PERSISTENCE_UNAVAILABLE");
    assert.match(err.hint ?? "", /is Redis running at/);
    const err2 = await store.finishTasks([
      { runId: run.id, taskId: "a", state: "completed", at: 1, result: 1 },
    ]).then(() => undefined, (e) => e);
    assert.equal(err2?.code, "PERSISTENCE_UNAVAILABLE");
  } finally {
    await store.close();
    await server.kill();
  }
});

Deno.test("redis: a command sent while the client reconnects after a restart waits for it", async () => {
  let server = await startPrivateRedis();
  const store = await RedisStore.connect({ url: server.url, prefix: "gz-reconnect:" });
  try {
    assert.equal(await store.command(["PING"]), "PONG");
    await server.kill();
    // The client backs off between attempts (100 ms, 200 ms, ...): the server is up again
    // before the client notices, and the next command has to wait for the reconnection.
    server = await startPrivateRedis(server.port);
    // It must not fail for the connection being down ("connection lost": what it did before it
    // waited). A loaded machine can stall the new connection past the command timeout once
    // ("no reply within"): then the store replaces it, and a later command goes through.
    let set: unknown;
    const until = Date.now() + 15_000;
    while (set === undefined && Date.now() < until) {
      set = await store.command(["SET", "gz-reconnect:k", "1"]).catch((e) => {
        assert.match(String(e?.message), /no reply within/);
        return undefined;
      });
    }
    assert.equal(set, "OK");
    assert.equal(await store.command(["GET", "gz-reconnect:k"]), "1");
  } finally {
    await store.close();
    await server.kill();
  }
});

Deno.test("redis: a stalled server fails the command in flight; a new connection carries on", async () => {
  const server = await startPrivateRedis();
  const store = await RedisStore.connect({
    url: server.url,
    prefix: "gz-stall:",
    commandTimeoutMs: 500,
    connectTimeoutMs: 500,
    reconnectAttempts: 50,
  });
  try {
    assert.equal(await store.command(["SET", "gz-stall:k", "before"]), "OK");
    server.signal("SIGSTOP"); // accepts connections (the kernel does), answers nothing
    const err = await store.command(["GET", "gz-stall:k"]).then(() => undefined, (e) => e);
    assert.equal(err?.code, "PERSISTENCE_UNAVAILABLE", `got ${err}`);
    assert.match(err.message, /no reply within 500 ms/);
    // replacements are tried meanwhile: their handshakes time out on the stalled server
    await new Promise((r) => setTimeout(r, 1500));
    server.signal("SIGCONT");
    // The dropped connection is replaced in the background; commands wait for it (up to the
    // command timeout each) rather than failing for the rest of the process's life.
    let value: unknown;
    const until = Date.now() + 15_000;
    const errors: string[] = [];
    while (value === undefined && Date.now() < until) {
      value = await store.command(["GET", "gz-stall:k"]).catch((e) => {
        errors.push((e as Error).message);
        return undefined;
      });
    }
    assert.equal(value, "before", `errors meanwhile: ${errors.join("; ")}`);
    assert.equal(await store.command(["SET", "gz-stall:k", "after"]), "OK");
    // one connection: the replacements that timed out were dropped, not left to finish later
    const admin = await RedisStore.connect({ url: server.url, prefix: "gz-stall:" });
    const clients = String(await admin.command(["CLIENT", "LIST"])).trim().split("\n");
    await admin.close();
    assert.equal(clients.length, 2, clients.join("\n"));
  } finally {
    server.signal("SIGCONT");
    await store.close();
    await server.kill();
  }
});

Deno.test("redis: normal operation never sends KEYS or SCAN; one round trip per write", async () => {
  const server = await startPrivateRedis();
  const store = await RedisStore.connect({ url: server.url, prefix: "gz:" });
  const { createClient } = await import("redis");
  const probe = createClient({ url: server.url });
  probe.on("error", () => {});
  await probe.connect();
  try {
    const { run, tasks } = fixture({ name: "wf", tasks: ["a", "b", "c"] });
    await store.createRun(run, tasks);
    await store.updateRun(run.id, { state: "running" });
    await store.claimRun(run.id, "me", 1, 0);
    for (const t of ["a", "b", "c"]) await store.startAttempt(run.id, t, 1, 1);
    await store.finishTasks(["a", "b", "c"].map((taskId) => ({
      runId: run.id,
      taskId,
      state: "completed" as const,
      at: 2,
      attempt: 1,
      result: taskId,
    })));
    await store.getRun(run.id);
    await store.getTask(tasks[0]!.id);
    await store.getRunTask(run.id, "a");
    await store.listRuns({ nameFilter: "w", limit: 5 });
    await store.listRuns({ state: "running" });
    await store.listRuns({ workflowName: "wf" });
    await store.listTasks();
    await store.listTasks({ state: "completed", nameFilter: "a" });
    await store.listTasks({ runId: run.id });
    await store.listAttempts(run.id, "a");
    await store.stats();
    const info = await probe.info("commandstats");
    assert.ok(!/cmdstat_(keys|scan):/.test(info), `KEYS/SCAN used:\n${info}`);
    const calls = (cmd: string) =>
      Number(new RegExp(`cmdstat_${cmd}:calls=(\\d+)`).exec(info)?.[1] ?? 0);
    assert.equal(calls("exec") + calls("multi"), 0, "writes are scripts, atomic in themselves");
    assert.equal(calls("evalsha"), 1 + 1 + 1 + 3 + 1, "create, update, claim, 3 starts, 1 finish");
    assert.equal(store.commits, 7);
    await Promise.all(["a", "b", "c"].map((t) => store.startAttempt(run.id, t, 2, 3)));
    assert.equal(store.commits, 8, "claims made together go out as one script call");
    const keys = await probe.keys("*"); // allowed here: this is the test looking, not the store
    assert.ok(keys.every((k) => k.startsWith("gz:")), `keys outside the prefix: ${keys}`);
  } finally {
    await probe.close();
    await store.close();
    await server.kill();
  }
});

Deno.test("redis: scripts flushed from the server (restart, SCRIPT FLUSH) are loaded again", async () => {
  const server = await startPrivateRedis();
  const store = await RedisStore.connect({ url: server.url });
  const { createClient } = await import("redis");
  const probe = createClient({ url: server.url });
  probe.on("error", () => {});
  await probe.connect();
  try {
    const { run, tasks } = fixture({ tasks: ["a"] });
    await store.createRun(run, tasks);
    await probe.scriptFlush();
    await store.startAttempt(run.id, "a", 1, 1);
    assert.equal((await store.getRunTask(run.id, "a"))?.state, "running");
  } finally {
    await probe.close();
    await store.close();
    await server.kill();
  }
});
