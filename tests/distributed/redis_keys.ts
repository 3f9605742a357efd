/** Test helper: removes every Redis key under a test's prefix (each test has its own). */
import type { RedisStore } from "../../src/persistence/redis_store.ts";

export async function dropKeys(store: RedisStore, prefix: string): Promise<void> {
  const left = await store.command(["KEYS", `${prefix}*`]) as string[];
  if (left.length > 0) await store.command(["DEL", ...left]);
}
