/**
 * The `providers:` and `mcp_servers:` sections of the config file, and their registration:
 * each external provider's protocol is declared (so workflow validation knows its methods)
 * and a factory starts its processes on first use; each MCP server becomes `mcp/<name>`,
 * with `mcp/v1` as an alias when exactly one is configured.
 *
 * @module
 */

import type { z } from "zod";
import { GleitzeitError, type Issue } from "../core/errors.ts";
import type { JsonSchema } from "../core/json_schema.ts";
import { McpProvider } from "../providers/mcp/mcp_provider.ts";
import { MCP_PROTOCOL_FAMILY } from "../providers/mcp/mcp_methods.ts";
import { PluginProvider } from "../providers/plugin/plugin_provider.ts";
import type { MethodSpec, ProtocolSpec, Provider } from "../providers/provider.ts";
import { RateLimiter } from "../providers/rate_limiter.ts";
import type { ProviderRegistry } from "../providers/registry.ts";
import {
  type McpServerEntry,
  McpServerEntrySchema,
  type ProviderEntry,
  ProviderEntrySchema,
} from "./provider_entries.ts";

export type { McpServerEntry, ProviderEntry };

/** Both sections, parsed. */
export interface ProvidersConfig {
  providers: ProviderEntry[];
  mcpServers: McpServerEntry[];
}

function toIssues(section: string, index: number, error: z.ZodError): Issue[] {
  return error.issues.map((i) => ({
    path: [`${section}[${index}]`, ...i.path.map(String)].join("."),
    message: i.message,
  }));
}

/** Parses the raw sections; every problem is reported at once as a CONFIG_ERROR. */
export function parseProvidersConfig(
  raw: { providers?: unknown; mcp_servers?: unknown },
): ProvidersConfig {
  const issues: Issue[] = [];
  const list = (v: unknown, section: string): unknown[] => {
    if (v === undefined || v === null) return [];
    if (Array.isArray(v)) return v;
    issues.push({ path: section, message: "must be a list" });
    return [];
  };
  const providers: ProviderEntry[] = [];
  list(raw.providers, "providers").forEach((p, i) => {
    const r = ProviderEntrySchema.safeParse(p);
    if (r.success) providers.push(r.data);
    else issues.push(...toIssues("providers", i, r.error));
  });
  const mcpServers: McpServerEntry[] = [];
  list(raw.mcp_servers, "mcp_servers").forEach((m, i) => {
    const r = McpServerEntrySchema.safeParse(m);
    if (r.success) mcpServers.push(r.data);
    else issues.push(...toIssues("mcp_servers", i, r.error));
  });
  const seen = new Set<string>();
  providers.forEach((p, i) => {
    if (seen.has(p.id)) {
      issues.push({ path: `providers[${i}].id`, message: `duplicate id ${p.id}` });
    }
    seen.add(p.id);
  });
  const names = new Set<string>();
  mcpServers.forEach((m, i) => {
    if (names.has(m.name)) {
      issues.push({ path: `mcp_servers[${i}].name`, message: `duplicate name ${m.name}` });
    }
    names.add(m.name);
  });
  if (issues.length > 0) {
    throw new GleitzeitError(
      "CONFIG_ERROR",
      `invalid provider configuration: ${issues.map((i) => `${i.path}: ${i.message}`).join("; ")}`,
      { details: { issues }, hint: "see examples/providers/config.yaml for the format" },
    );
  }
  return { providers, mcpServers };
}

function resolvePath(baseDir: string, p: string): string {
  return p.startsWith("/") ? p : `${baseDir.replace(/\/$/, "")}/${p}`;
}

function declaredMethods(entry: ProviderEntry): MethodSpec[] {
  const m = entry.methods;
  if (m === undefined) return [];
  const list = Array.isArray(m) ? m : Object.entries(m).map(([n, s]) => ({ name: n, ...s }));
  return list.map((x) => {
    const spec: MethodSpec = {
      name: x.name,
      params: (x.params ?? { type: "object" }) as JsonSchema,
    };
    if (x.description !== undefined) spec.description = x.description;
    return spec;
  });
}

/** The provider objects of one entry (one per instance; instances share the rate limit). */
export function createPluginProviders(entry: ProviderEntry, baseDir: string): PluginProvider[] {
  const rate = entry.rate_limit
    ? new RateLimiter({
      requests: entry.rate_limit.requests,
      perSeconds: entry.rate_limit.per_seconds,
    })
    : undefined;
  const cwd = entry.command !== undefined ? resolvePath(baseDir, entry.cwd ?? ".") : undefined;
  const command = entry.command !== undefined && entry.command.includes("/")
    ? resolvePath(baseDir, entry.command)
    : entry.command;
  const out: PluginProvider[] = [];
  for (let i = 1; i <= entry.instances; i++) {
    out.push(
      new PluginProvider({
        id: entry.instances > 1 ? `${entry.id}#${i}` : entry.id,
        protocol: entry.protocol,
        command,
        args: entry.args,
        env: entry.env,
        cwd,
        url: entry.url,
        headers: entry.headers,
        healthMethod: entry.health_method,
        timeoutMs: entry.timeout_ms,
        stderrLines: entry.stderr_lines,
        restartBaseDelayMs: entry.restart?.base_delay_ms,
        restartMaxDelayMs: entry.restart?.max_delay_ms,
        limits: {
          ...(entry.max_concurrency !== undefined ? { maxConcurrency: entry.max_concurrency } : {}),
          ...(rate ? { rateLimit: rate } : {}),
        },
      }),
    );
  }
  return out;
}

/** The outcome of {@link registerConfiguredProviders}. */
export interface RegistrationReport {
  /** Protocols declared (external providers and MCP servers). */
  protocols: string[];
  /** Provider ids that will start on first use. */
  providers: string[];
  /**
   * Entries whose `describe` call failed: their protocol is declared all the same, with any
   * method taken unchecked (see ProtocolSpec.anyMethod), and their providers start on first
   * use as others do (a call fails as their provider does then, PROVIDER_UNAVAILABLE say).
   */
  failed: { id: string; error: GleitzeitError }[];
}

/**
 * Declares the configured protocols and registers factories that start their providers on
 * first use. `describe`-based providers are asked for their methods now (by a short-lived
 * instance, closed again before this returns). Throws CONFIG_ERROR for an invalid section.
 */
export async function registerConfiguredProviders(
  registry: ProviderRegistry,
  sections: { providers?: unknown; mcp_servers?: unknown },
  options: { baseDir: string; configPath?: string },
): Promise<RegistrationReport> {
  const config = parseProvidersConfig(sections);
  const report: RegistrationReport = { protocols: [], providers: [], failed: [] };

  const byProtocol = new Map<string, ProviderEntry[]>();
  for (const e of config.providers) {
    byProtocol.set(e.protocol, [...(byProtocol.get(e.protocol) ?? []), e]);
  }
  // The `describe` calls all at once: one provider that is slow or down costs a command its
  // own timeout, not one per provider in turn.
  const described = new Map(
    [...byProtocol].filter(([, entries]) => !entries.some((e) => e.methods !== undefined))
      .map(([protocol, entries]) => {
        // a short-lived instance answers `describe`; providers still start on first use
        const entry = entries[0]!;
        const probe = createPluginProviders({ ...entry, instances: 1 }, options.baseDir)[0]!;
        const answer = probe.describe(
          typeof entry.describe === "string" ? entry.describe : "describe",
        ).finally(() => probe.close());
        answer.catch(() => {}); // (awaited below, in order)
        return [protocol, answer] as const;
      }),
  );
  for (const [protocol, entries] of byProtocol) {
    let methods: MethodSpec[] | undefined;
    let anyMethod = false;
    let description = entries.find((e) => e.description)?.description;
    const declared = entries.find((e) => e.methods !== undefined);
    if (declared) methods = declaredMethods(declared);
    else {
      try {
        const d = await described.get(protocol)!;
        methods = d.methods;
        description ??= d.description;
      } catch (e) {
        for (const en of entries) {
          report.failed.push({
            id: en.id,
            error: e instanceof GleitzeitError
              ? e
              : new GleitzeitError("PROVIDER_ERROR", String(e)),
          });
        }
        // Declared all the same: down now is not gone (a worker's health checks find it
        // back; a run's call fails as the provider does then, exit 3 where it is down).
        methods = [];
        anyMethod = true;
      }
    }
    const spec: ProtocolSpec = { protocol, methods: methods ?? [] };
    if (anyMethod) spec.anyMethod = true;
    if (description !== undefined) spec.description = description;
    registry.registerProtocol(spec);
    report.protocols.push(protocol);
    const ids = entries.flatMap((e) =>
      e.instances > 1 ? Array.from({ length: e.instances }, (_, i) => `${e.id}#${i + 1}`) : [e.id]
    );
    report.providers.push(...ids);
    registry.registerFactory(protocol, () => {
      const all: Provider[] = [];
      for (const e of entries) all.push(...createPluginProviders(e, options.baseDir));
      return Promise.resolve(all);
    }, { ids });
  }

  registerMcpServers(registry, config.mcpServers, options, report);
  return report;
}

function registerMcpServers(
  registry: ProviderRegistry,
  servers: McpServerEntry[],
  options: { baseDir: string; configPath?: string },
  report: RegistrationReport,
): void {
  const baseDir = options.baseDir;
  if (!registry.protocol("mcp/any")) registry.registerProtocol(MCP_PROTOCOL_FAMILY);
  const names = servers.map((s) => s.name);
  for (const s of servers) {
    const protocol = `mcp/${s.name}`;
    registry.registerFactory(protocol, () =>
      Promise.resolve([
        new McpProvider({
          name: s.name,
          command: s.command.includes("/") ? resolvePath(baseDir, s.command) : s.command,
          args: s.args,
          env: s.env,
          cwd: resolvePath(baseDir, s.cwd ?? "."),
          timeoutMs: s.timeout_ms,
        }),
      ]), { ids: [`mcp:${s.name}`] });
    report.protocols.push(protocol);
    report.providers.push(`mcp:${s.name}`);
  }
  const hint =
    `declare MCP servers under \`mcp_servers:\` in ${
      options.configPath ?? "~/.gleitzeit/config.yaml"
    } ` +
    "(name, command, args, env), e.g. `- {name: everything, command: npx, " +
    'args: [-y, "@modelcontextprotocol/server-everything"]}`';
  if (servers.length === 1 && names[0] !== "v1") {
    registry.registerAlias("mcp/v1", `mcp/${names[0]}`);
  } else if (servers.length > 1 && !names.includes("v1")) {
    registry.registerFactory("mcp/v1", () =>
      Promise.reject(
        new GleitzeitError(
          "PROVIDER_NOT_FOUND",
          `mcp/v1 is ambiguous: ${servers.length} MCP servers are configured (${
            names.join(", ")
          }); name one as the protocol: ${names.map((n) => `mcp/${n}`).join(", ")}`,
        ),
      ));
  }
  const configured = servers.length === 0 ? "" : ` (configured: ${names.join(", ")})`;
  registry.registerFactory(
    "mcp/*",
    (protocol) =>
      Promise.reject(
        new GleitzeitError(
          "PROVIDER_NOT_FOUND",
          servers.length === 0
            ? `${protocol}: no MCP server is configured`
            : `${protocol}: no MCP server named ${protocol.slice(4)}${configured}`,
          { hint },
        ),
      ),
    {
      // (what a worker says of every other mcp/ protocol: see ProviderRegistry.unservable)
      unknown: new GleitzeitError(
        "PROVIDER_NOT_FOUND",
        servers.length === 0
          ? "no MCP server is configured"
          : `no MCP server of that name${configured}`,
        { hint },
      ),
    },
  );
}
