/**
 * The provider registry: knows every protocol's methods and schemas, validates params
 * before dispatch, and routes a call to a provider of the task's protocol, balancing
 * across several (least in-flight, then round robin).
 *
 * @module
 */

import { GleitzeitError, toGleitzeitError } from "../core/errors.ts";
import { type SchemaIssue, validateSchema } from "../core/json_schema.ts";
import { formatPath } from "../core/errors.ts";
import type { CallContext, HealthReport, MethodSpec, ProtocolSpec, Provider } from "./provider.ts";

/** Creates the providers of a protocol on first use (servers, child processes). */
export type ProviderFactory = (protocol: string) => Promise<Provider[]>;

interface Slot {
  provider: Provider;
  inFlight: number;
  calls: number;
  failures: number;
  totalLatencyMs: number;
  healthy: boolean;
  lastHealth?: HealthReport;
}

/** Statistics of one provider, for `provider list`. */
export interface ProviderStats {
  id: string;
  protocol: string;
  healthy: boolean;
  inFlight: number;
  calls: number;
  failures: number;
  meanLatencyMs: number | undefined;
}

function familyOf(protocol: string): string | undefined {
  const slash = protocol.indexOf("/");
  return slash > 0 ? `${protocol.slice(0, slash)}/*` : undefined;
}

/** Routes method calls to providers. */
export class ProviderRegistry {
  #specs = new Map<string, ProtocolSpec>();
  #slots = new Map<string, Slot[]>();
  #factories = new Map<string, ProviderFactory>();
  #starting = new Map<string, Promise<void>>();
  #rr = new Map<string, number>();
  #methodIndex = new Map<string, Map<string, MethodSpec>>();

  /** Declares a protocol (or a family such as `mcp/*`) and its methods. */
  registerProtocol(spec: ProtocolSpec): void {
    this.#specs.set(spec.protocol, spec);
    this.#methodIndex.set(spec.protocol, new Map(spec.methods.map((m) => [m.name, m])));
  }

  /** Adds a ready provider. Its protocol must be declared. */
  register(provider: Provider): void {
    if (!this.protocol(provider.protocol)) {
      throw new GleitzeitError(
        "PROTOCOL_NOT_FOUND",
        `provider ${provider.id}: protocol ${provider.protocol} is not declared`,
      );
    }
    const list = this.#slots.get(provider.protocol) ?? [];
    list.push({
      provider,
      inFlight: 0,
      calls: 0,
      failures: 0,
      totalLatencyMs: 0,
      healthy: true,
    });
    this.#slots.set(provider.protocol, list);
  }

  /** Registers a factory that creates the providers of `protocol` (or a family) on first call. */
  registerFactory(protocol: string, factory: ProviderFactory): void {
    this.#factories.set(protocol, factory);
  }

  /** Every declared protocol. */
  protocols(): ProtocolSpec[] {
    return [...this.#specs.values()];
  }

  /** The spec of a protocol, matching families (`mcp/x` -> `mcp/*`). */
  protocol(protocol: string): ProtocolSpec | undefined {
    return this.#specs.get(protocol) ?? this.#specs.get(familyOf(protocol) ?? "");
  }

  /** The spec of one method of a protocol. */
  method(protocol: string, method: string): MethodSpec | undefined {
    const spec = this.protocol(protocol);
    return spec ? this.#methodIndex.get(spec.protocol)?.get(method) : undefined;
  }

  /**
   * The protocol a method belongs to when a task does not say: `python/execute` -> `python/v1`
   * by prefix, otherwise the single concrete protocol that has the method.
   */
  inferProtocol(method: string): { protocol: string } | { error: string } {
    const slash = method.indexOf("/");
    if (slash > 0) {
      const guess = `${method.slice(0, slash)}/v1`;
      if (this.#specs.has(guess) && this.method(guess, method)) return { protocol: guess };
    }
    const owners = [...this.#specs.values()]
      .filter((s) => !s.protocol.endsWith("/*") && this.#methodIndex.get(s.protocol)?.has(method))
      .map((s) => s.protocol);
    if (owners.length === 1) return { protocol: owners[0]! };
    if (owners.length > 1) {
      return { error: `method '${method}' exists in ${owners.join(", ")}: name the protocol` };
    }
    return { error: `unknown method '${method}'` };
  }

  /** Checks params against the method's schema. With allowReferences, `${...}` strings pass. */
  validateParams(
    protocol: string,
    method: string,
    params: unknown,
    options: { allowReferences?: boolean } = {},
  ): SchemaIssue[] {
    const spec = this.method(protocol, method);
    if (!spec) return [{ path: [], message: `unknown method ${method} of ${protocol}` }];
    return validateSchema(spec.params, params, options);
  }

  /** Validates params, picks a provider and calls it. Errors keep their code and retryable flag. */
  async call(
    protocol: string,
    method: string,
    params: Record<string, unknown>,
    ctx: CallContext,
  ): Promise<unknown> {
    if (!this.protocol(protocol)) {
      throw new GleitzeitError("PROTOCOL_NOT_FOUND", `unknown protocol ${protocol}`, {
        hint: `known protocols: ${[...this.#specs.keys()].join(", ")}`,
      });
    }
    if (!this.method(protocol, method)) {
      throw new GleitzeitError("METHOD_NOT_SUPPORTED", `${protocol} has no method ${method}`);
    }
    const issues = this.validateParams(protocol, method, params);
    if (issues.length > 0) {
      throw new GleitzeitError(
        "INVALID_PARAMS",
        `invalid params for ${method}: ` +
          issues.map((i) => `${formatPath(["params", ...i.path])} ${i.message}`).join("; "),
        { details: { issues } },
      );
    }
    const slot = await this.#pick(protocol);
    slot.inFlight++;
    slot.calls++;
    const started = performance.now();
    try {
      return await slot.provider.call(method, params, ctx);
    } catch (e) {
      slot.failures++;
      throw toGleitzeitError(e, "PROVIDER_ERROR");
    } finally {
      slot.inFlight--;
      slot.totalLatencyMs += performance.now() - started;
    }
  }

  async #ensureStarted(protocol: string): Promise<void> {
    if ((this.#slots.get(protocol)?.length ?? 0) > 0) return;
    const factory = this.#factories.get(protocol) ??
      this.#factories.get(familyOf(protocol) ?? "");
    if (!factory) return;
    let starting = this.#starting.get(protocol);
    if (!starting) {
      starting = (async () => {
        for (const p of await factory(protocol)) this.register(p);
      })();
      this.#starting.set(protocol, starting);
      starting.catch(() => this.#starting.delete(protocol));
    }
    await starting;
  }

  async #pick(protocol: string): Promise<Slot> {
    await this.#ensureStarted(protocol);
    const slots = this.#slots.get(protocol) ?? [];
    if (slots.length === 0) {
      throw new GleitzeitError("PROVIDER_NOT_FOUND", `no provider serves ${protocol}`, {
        hint: protocol.startsWith("mcp/")
          ? "declare the MCP server under `mcp_servers:` in ~/.gleitzeit/config.yaml"
          : "declare a provider for it under `providers:` in ~/.gleitzeit/config.yaml",
      });
    }
    const healthy = slots.filter((s) => s.healthy);
    const pool = healthy.length > 0 ? healthy : slots;
    const least = Math.min(...pool.map((s) => s.inFlight));
    const candidates = pool.filter((s) => s.inFlight === least);
    const n = this.#rr.get(protocol) ?? 0;
    this.#rr.set(protocol, n + 1);
    return candidates[n % candidates.length]!;
  }

  /** Probes every started provider (or one by id) now. */
  async health(id?: string): Promise<{ id: string; protocol: string; report: HealthReport }[]> {
    const out: { id: string; protocol: string; report: HealthReport }[] = [];
    for (const slots of this.#slots.values()) {
      for (const slot of slots) {
        if (id !== undefined && slot.provider.id !== id) continue;
        const report = slot.provider.health
          ? await slot.provider.health().catch((e) => ({
            healthy: false,
            message: toGleitzeitError(e).message,
          }))
          : { healthy: true };
        slot.healthy = report.healthy;
        slot.lastHealth = report;
        out.push({ id: slot.provider.id, protocol: slot.provider.protocol, report });
      }
    }
    return out;
  }

  /** Call statistics of every started provider. */
  stats(): ProviderStats[] {
    return [...this.#slots.values()].flat().map((s) => ({
      id: s.provider.id,
      protocol: s.provider.protocol,
      healthy: s.healthy,
      inFlight: s.inFlight,
      calls: s.calls,
      failures: s.failures,
      meanLatencyMs: s.calls > 0 ? s.totalLatencyMs / s.calls : undefined,
    }));
  }

  /** Closes every provider. */
  async close(): Promise<void> {
    const all = [...this.#slots.values()].flat();
    this.#slots.clear();
    await Promise.allSettled(all.map((s) => s.provider.close?.()));
  }
}
