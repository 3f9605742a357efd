/**
 * Opens the Store a configuration names. The implementations are imported here on demand, so
 * a command that never opens a store (`--help`, `workflow validate`) never loads `node:sqlite`
 * or the Redis client.
 *
 * @module
 */

import { GleitzeitError } from "../core/errors.ts";
import type { Store } from "./store.ts";

/** Names of the persistence backends (`none` is `memory`: nothing survives the process). */
export type BackendName = "sqlite" | "redis" | "memory" | "none";

/** What {@link openStore} needs; the config layer fills it. */
export interface OpenStoreOptions {
  backend: BackendName;
  /** SQLite file; default `~/.gleitzeit/gleitzeit.db`. */
  sqlitePath?: string;
  /** Default `redis://127.0.0.1:6379`. */
  redisUrl?: string;
  /** Default `gleitzeit:`. */
  redisPrefix?: string;
  /**
   * Only reads follow (listings, status): a SQLite file that does not exist yet is not made;
   * an empty store stands in for it.
   */
  readOnly?: boolean;
}

/** The default SQLite file under a home directory. */
export function defaultSqlitePath(home: string): string {
  return `${home.replace(/\/+$/, "")}/.gleitzeit/gleitzeit.db`;
}

/**
 * Opens a store. Errors: CONFIG_ERROR for an unknown backend or no usable path,
 * PERSISTENCE_UNAVAILABLE when the database or server cannot be reached (exit code 3).
 */
export async function openStore(options: OpenStoreOptions): Promise<Store> {
  switch (options.backend) {
    case "memory":
    case "none": {
      const { MemoryStore } = await import("./memory_store.ts");
      return new MemoryStore();
    }
    case "sqlite": {
      const path = options.sqlitePath ?? defaultSqlitePath(homeDir());
      if (options.readOnly && !exists(path)) {
        const { MemoryStore } = await import("./memory_store.ts");
        return new MemoryStore("sqlite");
      }
      const { SqliteStore } = await import("./sqlite_store.ts");
      return SqliteStore.open(path);
    }
    case "redis": {
      const { RedisStore } = await import("./redis_store.ts");
      return await RedisStore.connect({ url: options.redisUrl, prefix: options.redisPrefix });
    }
    default:
      throw new GleitzeitError(
        "CONFIG_ERROR",
        `unknown persistence backend ${JSON.stringify((options as { backend: unknown }).backend)}`,
        { hint: "use one of: sqlite, redis, memory, none" },
      );
  }
}

function homeDir(): string {
  let home: string | undefined;
  try {
    home = Deno.env.get("HOME") ?? Deno.env.get("USERPROFILE");
  } catch {
    home = undefined;
  }
  if (!home) {
    throw new GleitzeitError("CONFIG_ERROR", "no SQLite path given and no home directory known", {
      hint: "set GLEITZEIT_SQLITE_PATH or pass a path",
    });
  }
  return home;
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch (e) {
    // Not there; anything else (no permission, say) is for SqliteStore.open to report.
    return !(e instanceof Deno.errors.NotFound);
  }
}
