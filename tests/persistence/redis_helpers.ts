/** Shared setup of tests that need the real Redis server. @module */

import { GleitzeitError } from "../../src/core/errors.ts";
import { RedisStore } from "../../src/persistence/redis_store.ts";

/** Where the tests expect Redis (CI's .ci/run starts it). */
export const REDIS_TEST_URL = "redis://127.0.0.1:6379";

/** Connects a store under `prefix`, failing (never skipping) with what to do when Redis is absent. */
export async function connectTestRedis(prefix: string): Promise<RedisStore> {
  try {
    return await RedisStore.connect({ url: REDIS_TEST_URL, prefix });
  } catch (e) {
    if (e instanceof GleitzeitError && e.code === "PERSISTENCE_UNAVAILABLE") {
      throw new Error(
        `these tests need a Redis server at ${REDIS_TEST_URL} and none answered (${e.message}). ` +
          "Install it (`apt-get install redis-server`) and start it (`redis-server --daemonize yes`).",
      );
    }
    throw e;
  }
}

/** A private redis-server on a free port, for tests that stop it or read its command counts. */
export interface PrivateRedis {
  url: string;
  port: number;
  /** Kills the server (SIGKILL) and waits for it. */
  kill(): Promise<void>;
  /** Sends the server a signal (SIGSTOP stalls it, SIGCONT lets it go on). */
  signal(sig: Deno.Signal): void;
}

/**
 * Starts `redis-server` without persistence on `port` (default: a free one) and waits until it
 * answers.
 */
export async function startPrivateRedis(port?: number): Promise<PrivateRedis> {
  if (port === undefined) {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    port = (listener.addr as Deno.NetAddr).port;
    listener.close();
  }
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("redis-server", {
      args: ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
      stdout: "null",
      stderr: "null",
    }).spawn();
  } catch (e) {
    throw new Error(
      `this test starts its own redis-server and could not (${e}); install it: apt-get install redis-server`,
    );
  }
  const deadline = Date.now() + 5000;
  for (;;) {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
      break;
    } catch {
      if (Date.now() > deadline) {
        child.kill("SIGKILL");
        await child.status;
        throw new Error(`redis-server on port ${port} did not start within 5 s`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  let dead = false;
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    kill: async () => {
      if (dead) return;
      dead = true;
      child.kill("SIGKILL");
      await child.status;
    },
    signal: (sig) => child.kill(sig),
  };
}
