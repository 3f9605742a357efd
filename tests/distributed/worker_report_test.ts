/**
 * Worker (src/distributed/worker.ts) against the real Redis: an attempt whose answer could not
 * be sent is answered later, not executed again under the same attempt number.
 */

import { assert, assertEquals } from "../assert.ts";
import { ensureGroup, parseEntries, queueKeys } from "../../src/distributed/work_queue.ts";
import { Worker } from "../../src/distributed/worker.ts";
import { RedisStore } from "../../src/persistence/redis_store.ts";
import { ECHO_PROTOCOL, EchoProvider } from "../../src/providers/echo/echo_provider.ts";
import { ProviderRegistry } from "../../src/providers/registry.ts";
import type { CallContext } from "../../src/providers/provider.ts";

/** An echo provider that counts its calls. */
class CountingEcho extends EchoProvider {
  calls = 0;
  override call(method: string, params: Record<string, unknown>, ctx: CallContext) {
    this.calls++;
    return super.call(method, params, ctx);
  }
}

/** `store`, whose first `n` answers (the worker's report script) fail as a dropped Redis would. */
function failingReports(store: RedisStore, n: number): RedisStore {
  let left = n;
  return new Proxy(store, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (prop === "command") {
        return (args: string[]) => {
          if (args[0] === "EVAL" && String(args[1]).includes("'ok', ARGV[2]") && left > 0) {
            left--;
            return Promise.reject(new Error("injected: the connection dropped"));
          }
          return target.command(args);
        };
      }
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

async function waitFor(what: string, check: () => Promise<boolean>, ms = 15_000) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

Deno.test("an answer that could not be sent is sent later; the attempt is not executed again", async () => {
  const prefix = `gz-report-test-${crypto.randomUUID().slice(0, 8)}:`;
  const store = await RedisStore.connect({ prefix });
  const keys = queueKeys(prefix);
  const echo = new CountingEcho();
  const registry = new ProviderRegistry({ healthIntervalMs: 0 });
  registry.registerProtocol(ECHO_PROTOCOL);
  registry.register(echo);
  const log: string[] = [];
  const worker = new Worker({
    store: failingReports(store, 1),
    registry,
    concurrency: 1,
    leaseMs: 1_000, // its own idle entries are looked at again after this
    log: (line) => log.push(line),
  });
  const running = worker.start();
  try {
    await ensureGroup(store, keys.tasks);
    const reply = keys.replies("test-coordinator");
    const job = {
      protocol: "echo/v1",
      method: "echo",
      params: { x: 1 },
      ctx: { runId: "run_r", taskId: "t", attempt: 1 },
    };
    await store.command([
      "XADD",
      keys.tasks,
      "*",
      "d",
      "run_r/t/1/1",
      "reply",
      reply,
      "job",
      JSON.stringify(job),
    ]);
    const answers = async () =>
      parseEntries(await store.command(["XRANGE", reply, "-", "+"])).filter((e) =>
        e.fields.ok !== undefined
      );
    await waitFor("the answer", async () => (await answers()).length > 0);
    const [answer] = await answers();
    assertEquals([answer!.fields.d, answer!.fields.ok, answer!.fields.body], [
      "run_r/t/1/1",
      "1",
      '{"x":1}',
    ]);
    assertEquals(echo.calls, 1, "executed once");
    assert(log.some((l) => l.includes("sent again later")), log.join("\n"));
    assert(log.some((l) => l.includes("answered run_r/t attempt 1")), log.join("\n"));
    const pending = await store.command(["XPENDING", keys.tasks, "workers"]) as unknown[];
    assertEquals(pending[0], 0, "its entry is acknowledged");
  } finally {
    await worker.stop();
    await running;
    await registry.close();
    const left = await store.command(["KEYS", `${prefix}*`]) as string[];
    if (left.length > 0) await store.command(["DEL", ...left]);
    await store.close();
  }
});
