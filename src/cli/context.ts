/** What every command shares: global flags, configuration, signals, input parsing. @module */

import { createRegistry } from "../app.ts";
import {
  type ConfigFlags,
  type EnvReader,
  resolveConfig,
  type ResolvedConfig,
} from "../config/config.ts";
import type { ProviderRegistry } from "../providers/registry.ts";
import { GleitzeitError } from "../core/errors.ts";
import { InexactIntegerError, parseJsonExact, quoteHint } from "../core/exact_numbers.ts";
import { colors, err } from "./output.ts";

/** Global options, available to every command: the config flags plus output switches. */
export interface GlobalOptions extends Omit<ConfigFlags, "logLevel"> {
  json?: boolean;
  debug?: boolean;
  /** -q/--quiet, before or after the command: no progress lines from run, submit, resume. */
  quiet?: boolean;
}

const FLAG_KEYS = [
  "config",
  "backend",
  "sqlitePath",
  "redisUrl",
  "redisPrefix",
  "ollamaUrl",
  "maxConcurrent",
  "python",
  "sandbox",
] as const satisfies readonly (keyof ConfigFlags)[];

/** The global flags that say where runs are kept and what executes their tasks. */
const RESUME_FLAGS: [keyof GlobalOptions, string][] = [
  ["config", "--config"],
  ["backend", "--backend"],
  ["sqlitePath", "--sqlite-path"],
  ["redisUrl", "--redis-url"],
  ["redisPrefix", "--redis-prefix"],
  ["ollamaUrl", "--ollama-url"],
  ["python", "--python"],
  ["sandbox", "--sandbox"],
];

/**
 * `gleitzeit workflow resume RUN_ID` with those of them this command was given: a resume
 * without its run's --config (its providers) or backend would not find what the run needs.
 */
export function resumeCommand(runId: string, opts: GlobalOptions): string {
  const quote = (v: string) => /^[\w@%+=:,./-]+$/.test(v) ? v : `'${v.replaceAll("'", `'\\''`)}'`;
  const flags = RESUME_FLAGS.flatMap(([key, flag]) =>
    opts[key] === undefined ? [] : [flag, quote(String(opts[key]))]
  );
  return ["gleitzeit", ...flags, "workflow", "resume", runId].join(" ");
}

/** Resolves the configuration from the global flags (only those given). */
export function configFromFlags(opts: GlobalOptions, env?: EnvReader): Promise<ResolvedConfig> {
  const flags: Record<string, unknown> = {};
  for (const key of FLAG_KEYS) if (opts[key] !== undefined) flags[key] = opts[key];
  return resolveConfig(flags as ConfigFlags, env);
}

/** Parses `--params JSON` and repeated `-p key=value` into workflow inputs. */
export function parseInputs(json: string | undefined, pairs: string[]): Record<string, unknown> {
  let inputs: Record<string, unknown> = {};
  if (json !== undefined) {
    let parsed: unknown;
    try {
      parsed = parseJsonExact(json);
    } catch (e) {
      if (e instanceof InexactIntegerError) {
        throw new GleitzeitError("USAGE_ERROR", `--params: ${e.message}`, {
          hint: quoteHint(e.literal),
        });
      }
      throw new GleitzeitError(
        "USAGE_ERROR",
        `--params is not valid JSON: ${(e as Error).message}`,
        {
          hint: `example: --params '{"topic": "llamas"}'`,
        },
      );
    }
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
      throw new GleitzeitError("USAGE_ERROR", "--params must be a JSON object", {
        hint: `example: --params '{"topic": "llamas"}'`,
      });
    }
    inputs = parsed as Record<string, unknown>;
  }
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq <= 0) {
      throw new GleitzeitError("USAGE_ERROR", `-p expects key=value, got '${pair}'`, {
        hint: "example: -p topic=llamas -p count=3",
      });
    }
    const key = pair.slice(0, eq);
    const raw = pair.slice(eq + 1);
    try {
      inputs[key] = parseScalar(raw);
    } catch (e) {
      if (!(e instanceof InexactIntegerError)) throw e;
      throw new GleitzeitError("USAGE_ERROR", `-p ${key}: ${e.message}`, {
        hint: `pass it as text: -p '${key}="${e.literal}"' (integers pass exactly up to ` +
          "9007199254740992, 2^53)",
      });
    }
  }
  return inputs;
}

/** `3` -> 3, `true` -> true, `{"a":1}` -> object, anything else stays a string. */
function parseScalar(raw: string): unknown {
  if (/^(-?\d+(\.\d+)?([eE][+-]?\d+)?|true|false|null)$/.test(raw) || /^[[{"]/.test(raw)) {
    try {
      return parseJsonExact(raw);
    } catch (e) {
      if (e instanceof InexactIntegerError) throw e;
      return raw;
    }
  }
  return raw;
}

/** Collects repeated option values. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/**
 * An AbortSignal that SIGINT/SIGTERM abort. A second signal exits at once with 130.
 * Returns the signal and a function that removes the handlers.
 */
export function interruptSignal(quiet: boolean): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const c = colors("stderr");
  const handler = (name: string) => () => {
    if (controller.signal.aborted) {
      err(c.red("interrupted again: exiting now"));
      Deno.exit(130);
    }
    if (!quiet) {
      const again = name === "SIGINT" ? "Ctrl-C again" : "send it again";
      err(c.yellow(`\n${name}: cancelling, stopping running tasks (${again} to force)`));
    }
    controller.abort(new GleitzeitError("WORKFLOW_CANCELLED", "interrupted"));
  };
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  const handlers = signals.map((s) => [s, handler(s)] as const);
  for (const [s, h] of handlers) Deno.addSignalListener(s, h);
  return {
    signal: controller.signal,
    dispose: () => {
      for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
    },
  };
}

/** Parses `--timeout` style values: seconds as a number, or `30s`, `5m`, `500ms`. */
export function parseSeconds(value: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(value.trim());
  if (!m) {
    throw new GleitzeitError("USAGE_ERROR", `'${value}' is not a duration`, {
      hint: "use seconds (30) or a unit: 500ms, 30s, 5m, 1h",
    });
  }
  const n = Number(m[1]);
  const unit = m[2] ?? "s";
  return unit === "ms" ? n / 1000 : unit === "s" ? n : unit === "m" ? n * 60 : n * 3600;
}

/** The provider registry for a command; provider set-up problems are printed as warnings. */
export function setupRegistry(config: ResolvedConfig): Promise<ProviderRegistry> {
  const c = colors("stderr");
  return createRegistry(config, (w) => {
    err(
      c.yellow(
        `warning: provider ${w.id} is unavailable: ${w.error.message} (its methods could not ` +
          "be asked for: its tasks' methods and params are not checked before they run)",
      ),
    );
    if (w.error.hint) err(c.dim(`  hint: ${w.error.hint}`));
  });
}
