/** Helpers of the distributed tests. */
import type { RedisStore } from "../../src/persistence/redis_store.ts";
import type { Worker } from "../../src/distributed/worker.ts";
import type { ProviderRegistry } from "../../src/providers/registry.ts";

/** Removes every Redis key under a test's prefix (each test has its own). */
export async function dropKeys(store: RedisStore, prefix: string): Promise<void> {
  const left = await store.command(["KEYS", `${prefix}*`]) as string[];
  if (left.length > 0) await store.command(["DEL", ...left]);
}

/** A test's worker stopped (and its loops ended), its registry closed, its keys and store gone. */
export async function endWorker(
  worker: Worker,
  running: Promise<unknown>,
  registry: ProviderRegistry,
  store: RedisStore,
  prefix: string,
): Promise<void> {
  await worker.stop();
  await running;
  await registry.close();
  await dropKeys(store, prefix);
  await store.close();
}
