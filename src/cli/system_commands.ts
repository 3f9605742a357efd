/** `system status | config`: this installation @module */

import { listWorkers } from "../distributed/work_queue.ts";
import type { RedisStore } from "../persistence/redis_store.ts";
import type { Command } from "@commander-js/extra-typings";
import { type ExitCode, GleitzeitError } from "../core/errors.ts";
import type { ResolvedConfig } from "../config/config.ts";
import { createApp, openConfiguredStore } from "../app.ts";
import { configFromFlags, type GlobalOptions } from "./context.ts";
import { err, out, printJson } from "./output.ts";
import { globalsOf, table } from "./stored_state.ts";

/** Config fields as the file names them, with their environment variable, flag and unit scale. */
const CONFIG_KEYS: [string, string, string?, string?, number?][] = [
  ["backend", "persistence.backend", "GLEITZEIT_PERSISTENCE_BACKEND", "--backend"],
  ["sqlitePath", "persistence.sqlite_path", "GLEITZEIT_SQLITE_PATH", "--sqlite-path"],
  ["redisUrl", "persistence.redis_url", "GLEITZEIT_REDIS_URL", "--redis-url"],
  ["redisPrefix", "persistence.redis_prefix", "GLEITZEIT_REDIS_PREFIX", "--redis-prefix"],
  ["ollamaUrl", "ollama.url", "GLEITZEIT_OLLAMA_URL", "--ollama-url"],
  ["ollamaMaxConcurrent", "ollama.max_concurrent"],
  [
    "maxConcurrentTasks",
    "engine.max_concurrent_tasks",
    "GLEITZEIT_MAX_CONCURRENT_TASKS",
    "--max-concurrent",
  ],
  ["healthIntervalMs", "engine.health_interval", undefined, undefined, 1000],
  ["python", "python.executable", "GLEITZEIT_PYTHON", "--python"],
  ["sandbox", "python.sandbox", undefined, "--sandbox"],
  ["minSandbox", "python.min_sandbox", "GLEITZEIT_MIN_SANDBOX"],
  ["allowGrants", "python.allow_grants", "GLEITZEIT_ALLOW_GRANTS"],
  ["logLevel", "log_level", "GLEITZEIT_LOG_LEVEL"],
];

/** Registers `system status | config`. */
export function registerSystemCommands(program: Command, setExit: (code: ExitCode) => void): void {
  const system = program.command("system").description("this installation");
  const sConfig = system.command("config").description(
    "the effective configuration and where each value came from",
  );
  sConfig.action(async () => {
    const { config, invalid } = await configShowingInvalidEnv(globalsOf(sConfig));
    const entries = CONFIG_KEYS.filter(([key]) => key in config.sources).map((
      [key, name, envName, flag, scale],
    ) => {
      const raw = (config as unknown as Record<string, unknown>)[key];
      return {
        key: name,
        value: raw === undefined ? null : scale ? Number(raw) / scale : raw,
        // (the value without the invalid variable: as it would be once that is fixed or unset)
        source: invalid.some((e) => e.name === envName)
          ? `${config.sources[key]} (${envName} invalid)`
          : config.sources[key],
        env: envName ?? null,
        flag: flag ?? null,
      };
    });
    if (globalsOf(sConfig).json) {
      printJson({
        config_file: config.configPath ?? null,
        values: entries,
        ...(invalid.length > 0
          ? {
            invalid_environment: invalid.map((e) => ({
              name: e.name,
              message: e.error.message,
              hint: e.error.hint ?? null,
            })),
          }
          : {}),
      });
    } else {
      out(`config file: ${config.configPath ?? "(none found)"}`);
      const t = table(["setting", "value", "source", "environment / flag"]);
      for (const e of entries) {
        t.push([
          e.key,
          String(e.value ?? "-"),
          e.source,
          [e.env, e.flag].filter(Boolean).join(" / "),
        ]);
      }
      out(t.toString());
      for (const { error } of invalid) {
        err(`error: ${error.message} (left out above: other commands stop at it)`);
        if (error.hint) err(`hint: ${error.hint}`);
      }
    }
    // an invalid setting is a usage error, shown whole here rather than at the first one
    setExit(invalid.length > 0 ? 2 : 0);
  });
  const sStatus = system.command("status").description("backend, providers and tools");
  sStatus.action(async () => {
    const globals = globalsOf(sStatus);
    const config = await configFromFlags(globals);
    // read-only, as the other status commands: a first look makes no database
    const store = await openConfiguredStore(config, { readOnly: true });
    const app = await createApp(config, { store });
    try {
      const stats = await app.store.stats();
      const protocols = app.registry.protocols().map((p) => p.protocol);
      const report = {
        version: (await import("./cli.ts")).VERSION,
        backend: config.backend,
        store: stats,
        protocols,
        max_concurrent_tasks: config.maxConcurrentTasks,
        sandbox: config.sandbox,
        // `gleitzeit worker` processes sharing this Redis (none on other backends)
        workers: app.store.backend === "redis" ? await listWorkers(app.store as RedisStore) : [],
      };
      // What they take at once in all (max_concurrent_tasks above is this shell's: run,
      // resume); workers older than the field do not say.
      const slots = report.workers.reduce((sum, w) => sum + (w.concurrency ?? 0), 0);
      const unknown = report.workers.filter((w) => w.concurrency === undefined).length;
      if (globals.json) {
        printJson({
          ...report,
          ...(app.store.backend === "redis"
            ? { worker_task_slots: slots, workers_without_slots: unknown }
            : {}),
        });
      } else {
        const n = (count: number | undefined, what: string) =>
          `${count ?? 0} ${what}${count === 1 ? "" : "s"}`;
        out(`gleitzeit ${report.version}`);
        out(
          `backend: ${config.backend} (${n(stats.totalRuns, "run")}, ${
            n(stats.totalTasks, "task")
          })`,
        );
        out(`protocols: ${protocols.join(", ")}`);
        out(
          `concurrency here (run, resume): ${
            n(config.maxConcurrentTasks, "task")
          } at once; python sandbox: ${config.sandbox}`,
        );
        if (app.store.backend === "redis") {
          out(
            `workers: ${report.workers.length}${
              slots > 0
                ? ` (${n(slots, "task")} at once in all${
                  unknown > 0 ? `, not counting ${n(unknown, "older worker")}` : ""
                })`
                : ""
            }`,
          );
          for (const w of report.workers) {
            const of = (now: number | undefined, most: number | undefined, what: string) =>
              most === undefined ? n(now, what) : `${now ?? 0} of ${n(most, what)}`;
            // protocols it takes no tasks of until a provider recovers
            const sick = w.unhealthy?.length ? `; unhealthy: ${w.unhealthy.join(", ")}` : "";
            out(
              `  ${w.owner}: ${of(w.tasks, w.concurrency, "task")}, ${
                of(w.runs, w.max_runs, "run")
              }${sick}`,
            );
            // and why (what its providers said), one line each, those with one reason together
            const byReason = new Map<string, string[]>();
            for (const p of w.unhealthy ?? []) {
              const reason = w.reasons?.[p];
              if (reason !== undefined) byReason.set(reason, [...byReason.get(reason) ?? [], p]);
            }
            for (const [reason, protocols] of byReason) {
              const line = reason.split("\n")[0]!.trim();
              out(
                `    ${protocols.join(", ")}: ${
                  line.length > 160 ? `${line.slice(0, 159)}…` : line
                }`,
              );
            }
          }
        }
      }
    } finally {
      await app.close();
    }
    setExit(0);
  });
}

/**
 * The configuration as other commands resolve it, except that an environment variable with an
 * invalid value is left out (and named) rather than ending the command: what `system config` is
 * for is finding out why a setting is what it is. Files and flags with invalid values still end
 * it, as they end every command (they name the file and line, or the flag).
 */
async function configShowingInvalidEnv(
  globals: GlobalOptions,
): Promise<{ config: ResolvedConfig; invalid: { name: string; error: GleitzeitError }[] }> {
  const invalid: { name: string; error: GleitzeitError }[] = [];
  const left = new Set<string>();
  const env = (name: string) => left.has(name) ? undefined : Deno.env.get(name);
  for (;;) {
    try {
      return { config: await configFromFlags(globals, env), invalid };
    } catch (e) {
      const name = e instanceof GleitzeitError && e.code === "CONFIG_ERROR"
        ? /^(GLEITZEIT_[A-Z_]+)\b/.exec(e.message)?.[1]
        : undefined;
      if (name === undefined || left.has(name) || Deno.env.get(name) === undefined) throw e;
      left.add(name);
      invalid.push({ name, error: e as GleitzeitError });
    }
  }
}
