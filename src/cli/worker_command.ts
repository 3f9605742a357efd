/** `gleitzeit worker`: take runs and tasks from Redis until stopped. @module */

import type { Command } from "@commander-js/extra-typings";
import { type ExitCode, GleitzeitError } from "../core/errors.ts";
import { Worker } from "../distributed/worker.ts";
import { RedisStore } from "../persistence/redis_store.ts";
import { configFromFlags, type GlobalOptions, parseSeconds, setupRegistry } from "./context.ts";
import { colors, err, printJson } from "./output.ts";
import { configSource, modeOf, weakerIsolation } from "./run_commands.ts";
import { weakerSandbox } from "../providers/python/sandbox_policy.ts";

/** Options of `gleitzeit worker`. */
export interface WorkerCommandOptions {
  concurrency?: number;
  maxRuns?: number;
  lease?: string;
  giveUpAfter?: string;
  unservedAfter?: string;
}

/** Registers `worker`. */
export function registerWorkerCommand(
  program: Command,
  setExit: (code: ExitCode) => void,
  positiveInt: (value: string) => number,
): void {
  const worker = program.command("worker")
    .description("take queued runs and tasks from Redis and execute them, until stopped")
    .option("--concurrency <n>", "task attempts at once (default: --max-concurrent)", positiveInt)
    .option("--max-runs <n>", "runs coordinated at once (default 16)", positiveInt)
    .option("--lease <duration>", "work held by a silent worker this long is taken over", "30s")
    .option("--give-up-after <duration>", "stop when Redis has not answered this long", "15s")
    .option(
      "--unserved-after <duration>",
      "fail a task attempt (of a run coordinated here) that no live worker can take, having " +
        "no healthy provider of its protocol, after this long",
      "60s",
    );
  worker.action(async (opts) => {
    setExit(await workerCommand(opts, worker.optsWithGlobals() as GlobalOptions));
  });
}

async function workerCommand(
  opts: WorkerCommandOptions,
  globals: GlobalOptions,
): Promise<ExitCode> {
  const configured = await configFromFlags(globals);
  // The warm Python pool follows the engine's concurrency: here, the worker's.
  const config = opts.concurrency === undefined
    ? configured
    : { ...configured, maxConcurrentTasks: opts.concurrency };
  if (config.backend !== "redis") {
    throw new GleitzeitError(
      "CONFIG_ERROR",
      `workers share their work through Redis; the backend is ${config.backend}`,
      {
        hint: "start workers with `--backend redis` (and the same --redis-url everywhere), or " +
          "set persistence.backend: redis",
      },
    );
  }
  const leaseMs = Math.round(parseSeconds(opts.lease ?? "30s") * 1000);
  if (leaseMs < 100) {
    throw new GleitzeitError("USAGE_ERROR", `a lease of ${opts.lease} is too short`, {
      hint: "use at least 100ms; the default is 30s",
    });
  }
  if (leaseMs < 5000) {
    // (allowed: tests and demos use short leases)
    err(
      colors("stderr").yellow(
        `warning: a lease of ${leaseMs / 1000}s: a worker held up that long (a busy machine, a ` +
          "long pause) has its work taken over by others and run again; 30s (the default) is " +
          "safer outside tests",
      ),
    );
  }
  // A worker outlives Redis restarts: it reconnects for as long as it runs (--give-up-after
  // decides when it stops instead).
  const store = await RedisStore.connect({
    url: config.redisUrl,
    prefix: config.redisPrefix,
    reconnectAttempts: Number.MAX_SAFE_INTEGER,
  });
  const registry = await setupRegistry(config);
  const c = colors("stderr");
  const json = globals.json === true;
  const log = (line: string) => {
    if (json) printJson({ at: new Date().toISOString(), worker: w.owner, event: line });
    else err(c.dim(`${new Date().toISOString()} ${line}`));
  };
  const w = new Worker({
    store,
    registry,
    concurrency: opts.concurrency ?? config.maxConcurrentTasks,
    maxRuns: opts.maxRuns ?? 16,
    leaseMs,
    giveUpMs: Math.round(parseSeconds(opts.giveUpAfter ?? "15s") * 1000),
    unservedMs: Math.round(parseSeconds(opts.unservedAfter ?? "60s") * 1000),
    log,
    // As `run` warns before a run, each Python attempt with a weaker sandbox says so.
    remark: ({ protocol, sandbox }) => {
      if (protocol !== "python/v1") return undefined;
      const task = modeOf(sandbox?.task);
      const workflow = modeOf(sandbox?.workflow);
      const mode = task ?? workflow ?? config.sandbox;
      // (one weaker than python.min_sandbox does not run: its error says so)
      if (mode === "bwrap" || weakerSandbox(mode, config.minSandbox)) return undefined;
      const by = task !== undefined
        ? "the task"
        : workflow !== undefined
        ? "the workflow"
        : `this worker's ${configSource(config.sources.sandbox, config.configPath)}`;
      return `warning: sandbox '${mode}' (chosen by ${by}): ${weakerIsolation()}`;
    },
  });
  let stopping: Promise<void> | undefined;
  const stop = (name: string) => () => {
    if (stopping) {
      err(c.red("stopping again: exiting now"));
      Deno.exit(130);
    }
    log(`${name}: stopping; work in progress is left to the other workers`);
    stopping = w.stop();
  };
  const handlers = (["SIGINT", "SIGTERM"] as const).map((s) => [s, stop(s)] as const);
  for (const [s, h] of handlers) Deno.addSignalListener(s, h);
  try {
    // Said once the worker has joined: from then on it takes work (and rides out Redis restarts).
    const n = Number(opts.concurrency ?? config.maxConcurrentTasks);
    await w.start(() => {
      log(
        `worker ${w.owner} on ${store.url} (prefix ${store.prefix}): ${n} task${
          n === 1 ? "" : "s"
        } at once, lease ${leaseMs / 1000}s`,
      );
      if (config.sandbox !== "bwrap") {
        log(
          `warning: Python tasks run with sandbox '${config.sandbox}' (chosen by ${
            configSource(config.sources.sandbox, config.configPath)
          }) unless their workflow or task chooses another: ${weakerIsolation()}`,
        );
      }
      // (a provider it cannot use, an Ollama that is not there, was warned of as it started:
      // it takes no tasks of that protocol until the provider recovers; see Worker)
    });
    await stopping;
    if (w.failure) throw w.failure;
  } finally {
    for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
    await registry.close();
    await store.close();
  }
  return 0;
}
