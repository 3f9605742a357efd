/** `gleitzeit provider list | health [ID]`. @module */

import type { Command } from "@commander-js/extra-typings";
import Table from "cli-table3";
import { type ExitCode, GleitzeitError } from "../core/errors.ts";
import type { HealthEntry, ProviderStats } from "../providers/registry.ts";
import { configFromFlags, type GlobalOptions, setupRegistry } from "./context.ts";
import { colors, err, formatDuration, out, preview, printJson, term } from "./output.ts";

function table(head: string[]): Table.Table {
  return new Table({
    head,
    style: { head: term.stdoutTty && !term.noColor ? ["cyan"] : [], border: [] },
  });
}

/** Registers `provider list` and `provider health`. */
export function registerProviderCommands(
  program: Command,
  setExit: (code: ExitCode) => void,
): void {
  const provider = program.command("provider").description("providers of protocols");
  const list = provider.command("list").description(
    "declared providers: protocol, methods, status, in-flight, success rate, latency",
  );
  list.action(async () => {
    const globals = list.optsWithGlobals() as GlobalOptions;
    const registry = await setupRegistry(await configFromFlags(globals));
    try {
      const stats = registry.stats();
      if (globals.json) {
        printJson({
          providers: stats,
          protocols: registry.protocols().map((p) => ({
            protocol: p.protocol,
            description: p.description ?? null,
            methods: p.methods.map((m) => ({ name: m.name, params: m.params })),
          })),
        });
      } else {
        const t = table(["id", "protocol", "methods", "status", "in-flight", "success", "latency"]);
        for (const s of stats) {
          t.push([
            s.id,
            s.protocol,
            preview(s.methods.join(", "), 48),
            s.status,
            String(s.inFlight),
            s.successRate === undefined ? "-" : `${Math.round(s.successRate * 100)}%`,
            formatDuration(s.meanLatencyMs),
          ]);
        }
        out(t.toString());
        out(
          colors("stdout").dim(
            "each command is its own process: providers start on first use; `provider health` starts and probes them",
          ),
        );
      }
      setExit(0);
    } finally {
      await registry.close();
    }
  });

  const health = provider.command("health").description(
    "probe providers now: all, or those of an id, id prefix, name (ollama) or protocol (llm/v1)",
  )
    .argument("[id]");
  health.action(async (id) => {
    const globals = health.optsWithGlobals() as GlobalOptions;
    const registry = await setupRegistry(await configFromFlags(globals));
    try {
      const ids = id === undefined
        ? registry.stats().map((s) => s.id)
        : providersMatching(id, registry.stats());
      const entries: HealthEntry[] = [];
      for (const one of ids) entries.push(...await registry.health(one));
      const allHealthy = entries.every((e) => e.report.healthy);
      if (globals.json) printJson(entries);
      else {
        const c = colors("stdout");
        const t = table(["id", "protocol", "health", "latency", "details"]);
        for (const e of entries) {
          const models = e.report.details?.models;
          t.push([
            e.id,
            e.protocol,
            e.report.healthy ? c.green("healthy") : c.red("unhealthy"),
            formatDuration(e.report.latencyMs),
            preview(
              [e.report.message, Array.isArray(models) ? `models: ${models.join(", ")}` : ""]
                .filter(Boolean).join("; "),
              70,
            ),
          ]);
        }
        out(t.toString());
      }
      // why the exit is 3, on stderr (also with --json, whose stdout is the report)
      const c2 = colors("stderr");
      for (const e of entries.filter((x) => !x.report.healthy)) {
        const [what, hint] = (e.report.message ?? "no answer").split(" — ");
        err(`${c2.red("error:")} provider ${e.id} is unhealthy: ${what}`);
        err(
          c2.dim(
            `hint: ${
              hint ??
                "check how it is declared: `gleitzeit system config`, `gleitzeit provider list`"
            }`,
          ),
        );
      }
      setExit(allHealthy ? 0 : 3);
    } finally {
      await registry.close();
    }
  });
}

/**
 * The ids of the providers `provider health WHAT` means: the one with that id; those of that
 * protocol (`llm/v1`); those of that name (`ollama` for `ollama@http://...`); or the one whose
 * id starts with it. Anything else, or a prefix of several, is a usage error naming the ids.
 */
export function providersMatching(what: string, providers: ProviderStats[]): string[] {
  const ids = providers.map((p) => p.id);
  if (ids.includes(what)) return [what];
  const ofProtocol = providers.filter((p) => p.protocol === what).map((p) => p.id);
  if (ofProtocol.length > 0) return ofProtocol;
  const named = ids.filter((id) => id.split("@")[0] === what);
  if (named.length > 0) return named;
  const prefixed = ids.filter((id) => id.startsWith(what));
  if (prefixed.length === 1) return prefixed;
  const known = `${ids.join(", ") || "none"}; protocols: ${
    [...new Set(providers.map((p) => p.protocol))].join(", ") || "none"
  }`;
  throw new GleitzeitError(
    "PROVIDER_NOT_FOUND",
    prefixed.length > 1
      ? `'${what}' could be any of the providers ${prefixed.join(", ")}: give more of the id`
      : `no provider or protocol '${what}' (providers: ${known})`,
    { hint: "`gleitzeit provider list` shows each provider's id and protocol" },
  );
}
