import assert from "node:assert/strict";
import { HostLimiter } from "../../../src/providers/ollama/host_limiter.ts";

Deno.test("HostLimiter: FIFO hand-over, cancelled waiters leave the queue", async () => {
  const limiter = new HostLimiter(2);
  const order: string[] = [];
  const r1 = await limiter.acquire();
  const r2 = await limiter.acquire();
  const c = new AbortController();
  const waiting = ["a", "b", "c"].map((name) =>
    limiter.acquire(name === "b" ? c.signal : undefined).then((release) => {
      order.push(name);
      return release;
    })
  );
  assert.deepEqual(limiter.stats, { limit: 2, active: 2, queued: 3 });
  const reason = new Error("cancelled");
  c.abort(reason);
  await assert.rejects(waiting[1], (e) => e === reason);
  assert.deepEqual(limiter.stats, { limit: 2, active: 2, queued: 2 });
  r1();
  r1(); // a second release is ignored
  const ra = await waiting[0];
  assert.deepEqual(limiter.stats, { limit: 2, active: 2, queued: 1 });
  r2();
  const rc = await waiting[2];
  assert.deepEqual(order, ["a", "c"]);
  ra();
  rc();
  assert.deepEqual(limiter.stats, { limit: 2, active: 0, queued: 0 });
});

Deno.test("HostLimiter: an aborted signal rejects at once; rejectAll empties the queue", async () => {
  const limiter = new HostLimiter(1);
  const reason = new Error("already");
  await assert.rejects(limiter.acquire(AbortSignal.abort(reason)), (e) => e === reason);
  assert.deepEqual(limiter.stats, { limit: 1, active: 0, queued: 0 });
  const release = await limiter.acquire();
  const w = limiter.acquire();
  const closed = new Error("closed");
  limiter.rejectAll(closed);
  await assert.rejects(w, (e) => e === closed);
  release();
  assert.deepEqual(limiter.stats, { limit: 1, active: 0, queued: 0 });
  assert.throws(() => new HostLimiter(0), RangeError);
});

Deno.test("tryAcquire takes a free slot at once, never past waiting calls", async () => {
  const limiter = new HostLimiter(1);
  const first = limiter.tryAcquire();
  assert.ok(first);
  assert.equal(limiter.tryAcquire(), undefined);
  const waiting = limiter.acquire();
  first();
  // the slot went to the waiting call (FIFO), so there is none to take
  assert.equal(limiter.tryAcquire(), undefined);
  (await waiting)();
  const again = limiter.tryAcquire();
  assert.ok(again);
  again();
  assert.deepEqual(limiter.stats, { limit: 1, active: 0, queued: 0 });
});
