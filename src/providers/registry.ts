/**
 * The provider registry: knows every protocol's methods and schemas, validates params
 * before dispatch, and routes a call to a provider of the task's protocol, balancing
 * across several (least in-flight, then round robin). Each provider may have a
 * concurrency limit and a rate limit; calls beyond them wait in a FIFO queue per protocol
 * instead of failing. Health is probed periodically (and soon after a provider reports
 * itself unavailable); unhealthy providers get no calls while a healthy one exists and
 * are probed until they recover.
 *
 * @module
 */

import { type ErrorData, GleitzeitError, toGleitzeitError } from "../core/errors.ts";
import { type SchemaIssue, validateSchema } from "../core/json_schema.ts";
import { formatPath } from "../core/errors.ts";
import type { CallContext, HealthReport, MethodSpec, ProtocolSpec, Provider } from "./provider.ts";
import { type RateLimit, RateLimiter } from "./rate_limiter.ts";

/** Creates the providers of a protocol on first use (servers, child processes). */
export type ProviderFactory = (protocol: string) => Promise<Provider[]>;

/** Limits of one provider. */
export interface ProviderLimits {
  /** Calls running at once on this provider; excess calls queue. */
  maxConcurrency?: number;
  /** Starts per window; a limiter object may be shared by several providers. */
  rateLimit?: RateLimit | RateLimiter;
}

/** Optional extras a provider may offer the registry. */
export interface ProviderExtras {
  /** Limits applied by the registry (register()'s options take precedence). */
  readonly limits?: ProviderLimits;
  /** Provider-specific facts for `provider list` (pid, restarts, url, ...). */
  info?(): Record<string, unknown>;
}

/** What {@link ProviderRegistry.registerFactory} may say about the providers to come. */
export interface FactoryInfo {
  /** Ids of the providers the factory will create, listed as `not_started` until then. */
  ids?: string[];
  /**
   * A family's factory (`mcp/*`) that makes no provider at all: the configuration error each
   * protocol of the family without a factory of its own fails with, its message naming no
   * protocol (see {@link ProviderRegistry.unservable}).
   */
  unknown?: GleitzeitError;
}

/** Options of a {@link ProviderRegistry}. */
export interface RegistryOptions {
  /** Probe every started provider this often; 0 or absent: no periodic probes. */
  healthIntervalMs?: number;
  /** Probe an unhealthy provider this often until it recovers (default 2000). */
  unhealthyIntervalMs?: number;
  /** A probe that takes longer fails (default 10000). */
  healthTimeoutMs?: number;
}

/** Where a provider stands. */
export type ProviderStatus = "healthy" | "unhealthy" | "not_started";

interface Slot {
  provider: Provider & ProviderExtras;
  maxConcurrency: number;
  rate?: RateLimiter;
  inFlight: number;
  calls: number;
  successes: number;
  failures: number;
  totalLatencyMs: number;
  lastLatencyMs?: number;
  healthy: boolean;
  lastHealth?: HealthReport;
  lastProbeAt?: number;
  probing?: Promise<HealthReport>;
  recovery?: ReturnType<typeof setTimeout>;
}

interface Waiter {
  resolve: (slot: Slot) => void;
  reject: (e: unknown) => void;
}

/** Statistics of one provider, for `provider list`. */
export interface ProviderStats {
  id: string;
  protocol: string;
  status: ProviderStatus;
  healthy: boolean;
  methods: string[];
  inFlight: number;
  /** Calls of this protocol waiting for a free provider. */
  queued: number;
  calls: number;
  successes: number;
  failures: number;
  /** successes / finished calls, undefined before the first call. */
  successRate: number | undefined;
  meanLatencyMs: number | undefined;
  lastLatencyMs: number | undefined;
  maxConcurrency?: number;
  rateLimit?: RateLimit;
  lastHealth?: HealthReport;
  lastProbeAt?: string;
  info?: Record<string, unknown>;
}

/** One provider's probe outcome, for `provider health`. */
export interface HealthEntry {
  id: string;
  protocol: string;
  report: HealthReport;
}

function familyOf(protocol: string): string | undefined {
  const slash = protocol.indexOf("/");
  return slash > 0 ? `${protocol.slice(0, slash)}/*` : undefined;
}

function abortReason(signal: AbortSignal): GleitzeitError {
  return signal.reason instanceof GleitzeitError
    ? signal.reason
    : new GleitzeitError("TASK_CANCELLED", "cancelled while waiting for a provider", {
      cause: signal.reason,
    });
}

/**
 * Error codes of a factory that say the configuration is wrong (no wait mends it): only these
 * make a protocol unservable (see ProviderRegistry.unservable). Any other failure to make a
 * provider (a plain error, say, which might be passing) counts as unhealthy: its tasks wait
 * for a worker as long as for an unhealthy provider.
 */
const CONFIGURATION_CODES = new Set<string>(["PROVIDER_NOT_FOUND", "CONFIG_ERROR"]);

/** Routes method calls to providers. */
export class ProviderRegistry {
  #specs = new Map<string, ProtocolSpec>();
  #slots = new Map<string, Slot[]>();
  #factories = new Map<string, { factory: ProviderFactory; info: FactoryInfo }>();
  #starting = new Map<string, Promise<void>>();
  #rr = new Map<string, number>();
  #methodIndex = new Map<string, Map<string, MethodSpec>>();
  #aliases = new Map<string, string>();
  #waiters = new Map<string, Waiter[]>();
  #wakeTimers = new Map<string, ReturnType<typeof setTimeout>>();
  #healthTimer?: ReturnType<typeof setInterval>;
  #options: Required<RegistryOptions>;
  #closed = false;

  constructor(options: RegistryOptions = {}) {
    this.#options = {
      healthIntervalMs: options.healthIntervalMs ?? 0,
      unhealthyIntervalMs: options.unhealthyIntervalMs ?? 2000,
      healthTimeoutMs: options.healthTimeoutMs ?? 10_000,
    };
  }

  /** Declares a protocol (or a family such as `mcp/*`) and its methods. */
  registerProtocol(spec: ProtocolSpec): void {
    this.#specs.set(spec.protocol, spec);
    this.#methodIndex.set(spec.protocol, new Map(spec.methods.map((m) => [m.name, m])));
  }

  /**
   * Adds a ready provider. Its protocol must be declared. Limits come from `options`, else
   * from the provider's own `limits`.
   */
  register(provider: Provider, options: ProviderLimits = {}): void {
    if (!this.protocol(provider.protocol)) {
      throw new GleitzeitError(
        "PROTOCOL_NOT_FOUND",
        `provider ${provider.id}: protocol ${provider.protocol} is not declared`,
      );
    }
    const p = provider as Provider & ProviderExtras;
    const limits = { ...p.limits, ...options };
    const rate = limits.rateLimit === undefined
      ? undefined
      : limits.rateLimit instanceof RateLimiter
      ? limits.rateLimit
      : new RateLimiter(limits.rateLimit);
    const list = this.#slots.get(provider.protocol) ?? [];
    list.push({
      provider: p,
      maxConcurrency: limits.maxConcurrency ?? Infinity,
      rate,
      inFlight: 0,
      calls: 0,
      successes: 0,
      failures: 0,
      totalLatencyMs: 0,
      healthy: true,
    });
    this.#slots.set(provider.protocol, list);
    this.#ensureHealthTimer();
    this.#drain(provider.protocol);
  }

  /** Registers a factory that creates the providers of `protocol` (or a family) on first call. */
  registerFactory(protocol: string, factory: ProviderFactory, info: FactoryInfo = {}): void {
    this.#factories.set(protocol, { factory, info });
  }

  /** Makes `alias` (e.g. `mcp/v1`) route to the providers of `target` (e.g. `mcp/everything`). */
  registerAlias(alias: string, target: string): void {
    this.#aliases.set(alias, target);
  }

  /** The protocol whose providers serve `protocol` (follows aliases). */
  resolve(protocol: string): string {
    return this.#aliases.get(protocol) ?? protocol;
  }

  /**
   * Where a call goes by what it needs: its protocol, or `protocol#part` when the protocol has
   * parts that a provider may serve while others fail ({@link ProtocolSpec.routes}: a Python
   * task asking for `sandbox: basic` is `python/v1#basic`).
   */
  routeOf(protocol: string, ctx: Pick<CallContext, "sandbox">): string {
    const route = this.protocol(protocol)?.routes?.of(ctx);
    return route === undefined ? protocol : `${protocol}#${route}`;
  }

  /**
   * The concrete protocols (aliases included, families such as `mcp/*` not) and their parts
   * (see {@link routeOf}) this registry serves now, by health: `healthy` when a provider of it
   * is healthy (for a part: serves that part) or its providers are not started yet (they start
   * on the first call, whose outcome then says), `unhealthy` when every provider of it is (the
   * registry re-probes those until they recover), with the `reasons` its providers gave. A
   * worker takes tasks of its healthy ones only.
   */
  protocolHealth(): { healthy: string[]; unhealthy: string[]; reasons: Record<string, string> } {
    const healthy = new Set<string>();
    const unhealthy = new Set<string>();
    const reasons: Record<string, string> = {};
    const put = (route: string, ok: boolean, reason: string | undefined): void => {
      if (ok) {
        healthy.add(route);
        return;
      }
      unhealthy.add(route);
      if (reason !== undefined) reasons[route] ??= reason;
    };
    const concrete = new Set([
      ...[...this.#slots].filter(([, slots]) => slots.length > 0).map(([p]) => p),
      ...[...this.#factories.keys()].filter((p) => !p.endsWith("/*")),
    ]);
    for (const protocol of concrete) {
      const slots = this.#slots.get(protocol) ?? [];
      const parts = this.protocol(protocol)?.routes?.names ?? [];
      if (slots.length === 0) {
        // not started: served (the first call starts it); could not be made: not
        const failed = this.#startFailures.get(protocol)?.message;
        put(protocol, failed === undefined, failed);
        for (const part of parts) put(`${protocol}#${part}`, failed === undefined, failed);
        continue;
      }
      const reason = slots.find((s) => !s.healthy)?.lastHealth?.message ?? "no reason given";
      put(protocol, slots.some((s) => s.healthy), reason);
      for (const part of parts) {
        const serves = (s: Slot) => s.lastHealth?.routes?.[part] ?? s.healthy;
        put(`${protocol}#${part}`, slots.some(serves), reason);
      }
    }
    for (const [alias, target] of this.#aliases) {
      for (const route of [...healthy, ...unhealthy]) {
        if (route !== target && !route.startsWith(`${target}#`)) continue;
        const as = alias + route.slice(target.length);
        if (healthy.has(route)) healthy.add(as);
        else put(as, false, reasons[route]);
      }
    }
    return { healthy: [...healthy].sort(), unhealthy: [...unhealthy].sort(), reasons };
  }

  /** Every declared protocol. */
  protocols(): ProtocolSpec[] {
    return [...this.#specs.values()];
  }

  /** The spec of a protocol, matching aliases and families (`mcp/x` -> `mcp/*`). */
  protocol(protocol: string): ProtocolSpec | undefined {
    const p = this.resolve(protocol);
    return this.#specs.get(p) ?? this.#specs.get(familyOf(p) ?? "");
  }

  /**
   * Why nothing here serves `protocol`, a member of a family whose factory makes no provider
   * (`mcp/nosuch`, no MCP server of that name), though the family's spec knows it; else
   * undefined.
   */
  unserved(protocol: string): GleitzeitError | undefined {
    const p = this.resolve(protocol);
    if (this.#factories.has(p) || (this.#slots.get(p)?.length ?? 0) > 0) return undefined;
    return this.#factories.get(familyOf(p) ?? "")?.info.unknown;
  }

  /** The spec of one method of a protocol. */
  method(protocol: string, method: string): MethodSpec | undefined {
    const spec = this.protocol(protocol);
    if (!spec) return undefined;
    return this.#methodIndex.get(spec.protocol)?.get(method) ??
      (spec.anyMethod ? { name: method, params: {} } : undefined);
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
    const families = [...this.#specs.values()]
      .filter((s) => s.protocol.endsWith("/*") && this.#methodIndex.get(s.protocol)?.has(method))
      .map((s) => s.protocol.replace("/*", "/<name>"));
    if (families.length > 0) {
      return {
        error: `method '${method}' needs its protocol: set \`protocol: ${
          families.join("` or `")
        }\` (e.g. mcp/v1 for the only MCP server)`,
      };
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

  /**
   * Validates params, waits for a provider with spare capacity and calls it. Errors keep
   * their code and retryable flag.
   */
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
    const target = this.resolve(protocol);
    const slot = await this.#acquire(target, ctx.signal, ctx.onWaiting);
    const started = performance.now();
    try {
      const result = await slot.provider.call(method, params, ctx);
      slot.successes++;
      return result;
    } catch (e) {
      slot.failures++;
      const err = toGleitzeitError(e, "PROVIDER_ERROR");
      if (
        (err.code === "PROVIDER_UNAVAILABLE" || err.code === "PROVIDER_UNHEALTHY") && err.retryable
      ) {
        this.#markUnhealthy(slot, err.message);
      }
      throw err;
    } finally {
      const ms = performance.now() - started;
      slot.inFlight--;
      slot.totalLatencyMs += ms;
      slot.lastLatencyMs = ms;
      this.#drain(target);
    }
  }

  async #ensureStarted(protocol: string): Promise<void> {
    if ((this.#slots.get(protocol)?.length ?? 0) > 0) return;
    const entry = this.#factories.get(protocol) ??
      this.#factories.get(familyOf(protocol) ?? "");
    if (!entry) return;
    let starting = this.#starting.get(protocol);
    if (!starting) {
      starting = (async () => {
        const providers = await entry.factory(protocol);
        if (this.#closed) {
          await Promise.allSettled(providers.map((p) => p.close?.()));
          throw new GleitzeitError("PROVIDER_UNAVAILABLE", "the registry is closed");
        }
        for (const p of providers) this.register(p);
        this.#startFailures.delete(protocol);
        if (providers.length === 0) {
          this.#startFailures.set(
            protocol,
            new GleitzeitError("PROVIDER_NOT_FOUND", `no provider serves ${protocol}`),
          );
        }
      })();
      this.#starting.set(protocol, starting);
      starting.catch((e) => {
        this.#starting.delete(protocol);
        // (a protocol whose providers cannot be made is not served: see protocolHealth; made
        // again later, while probes run, should what failed be mended)
        // (a plain error, as a worker calling it would have failed the task with)
        this.#startFailures.set(protocol, toGleitzeitError(e, "TASK_EXECUTION_FAILED"));
        this.#retryStart(protocol);
      });
    }
    await starting;
  }

  /** Why the providers of a protocol could not be made, by protocol (until they are). */
  readonly #startFailures = new Map<string, GleitzeitError>();

  /**
   * The protocols (and their parts, and aliases of them) whose providers could not be made
   * because of the configuration (the factory's error has one of CONFIGURATION_CODES: `mcp/v1` with several
   * MCP servers is ambiguous), with that error: no wait mends it (unlike an unhealthy
   * provider), so a task of one fails at once, with this error (see RemoteDispatcher). And
   * families whose factory makes nothing (see {@link FactoryInfo.unknown}), by family
   * (`mcp/*`): every protocol of one that is not served here otherwise.
   */
  unservable(): Record<string, ErrorData> {
    const out: Record<string, ErrorData> = {};
    for (const [protocol, error] of this.#startFailures) {
      if (
        error.retryable || !CONFIGURATION_CODES.has(error.code) ||
        (this.#slots.get(protocol)?.length ?? 0) > 0
      ) continue;
      const parts = this.protocol(protocol)?.routes?.names ?? [];
      for (const route of [protocol, ...parts.map((part) => `${protocol}#${part}`)]) {
        out[route] = error.toData();
        for (const [alias, target] of this.#aliases) {
          if (target === protocol) out[alias + route.slice(target.length)] = error.toData();
        }
      }
    }
    // a family, for the protocols of it that nothing here serves (`mcp/nosuch`): the only
    // entry whose message names no protocol (see unservableFor in RemoteDispatcher)
    for (const [family, { info }] of this.#factories) {
      if (family.endsWith("/*") && info.unknown !== undefined) out[family] = info.unknown.toData();
    }
    return out;
  }
  readonly #startRetries = new Map<string, ReturnType<typeof setTimeout>>();

  #retryStart(protocol: string): void {
    if (this.#closed || this.#options.healthIntervalMs <= 0 || this.#startRetries.has(protocol)) {
      return;
    }
    const timer = setTimeout(() => {
      this.#startRetries.delete(protocol);
      this.#ensureStarted(protocol).catch(() => {});
    }, this.#options.unhealthyIntervalMs);
    Deno.unrefTimer(timer as unknown as number);
    this.#startRetries.set(protocol, timer);
  }

  /**
   * Makes the providers of every declared concrete protocol (not families: `mcp/<any>`), so
   * that {@link protocolHealth} knows of each whether it can be served (a worker does this
   * before it takes tasks). Failures are kept, not thrown.
   */
  async startAll(): Promise<void> {
    const concrete = [...this.#factories.keys()].filter((p) => !p.endsWith("/*"));
    await Promise.allSettled(concrete.map((p) => this.#ensureStarted(p)));
  }

  async #acquire(
    protocol: string,
    signal: AbortSignal,
    onWaiting?: (waiting: boolean) => void,
  ): Promise<Slot> {
    if (signal.aborted) throw abortReason(signal);
    await this.#ensureStarted(protocol);
    // (aborted while its providers started: its listener below would never hear it)
    if (signal.aborted) throw abortReason(signal);
    if (this.#closed) throw new GleitzeitError("PROVIDER_UNAVAILABLE", "the registry is closed");
    const slots = this.#slots.get(protocol) ?? [];
    if (slots.length === 0) {
      throw new GleitzeitError("PROVIDER_NOT_FOUND", `no provider serves ${protocol}`, {
        hint: protocol.startsWith("mcp/")
          ? "declare the MCP server under `mcp_servers:` in ~/.gleitzeit/config.yaml"
          : "declare a provider for it under `providers:` in ~/.gleitzeit/config.yaml",
      });
    }
    const queue = this.#waiters.get(protocol) ?? [];
    this.#waiters.set(protocol, queue);
    if (queue.length === 0) {
      const slot = this.#take(protocol);
      if (slot) return slot;
    }
    // (a wait for a free slot: not the attempt's time, see CallContext.onWaiting)
    onWaiting?.(true);
    return await new Promise<Slot>((resolve, reject) => {
      const onAbort = () => {
        const i = queue.indexOf(waiter);
        if (i >= 0) queue.splice(i, 1);
        reject(abortReason(signal));
      };
      const waiter: Waiter = {
        resolve: (slot) => {
          signal.removeEventListener("abort", onAbort);
          resolve(slot);
        },
        reject: (e) => {
          signal.removeEventListener("abort", onAbort);
          reject(e);
        },
      };
      queue.push(waiter);
      signal.addEventListener("abort", onAbort, { once: true });
      this.#drain(protocol);
    }).finally(() => onWaiting?.(false));
  }

  /** Picks and occupies a slot with spare capacity, or returns undefined. */
  #take(protocol: string): Slot | undefined {
    const slots = this.#slots.get(protocol) ?? [];
    const healthy = slots.filter((s) => s.healthy);
    const pool = healthy.length > 0 ? healthy : slots;
    const now = Date.now();
    const free = pool.filter((s) =>
      s.inFlight < s.maxConcurrency && (s.rate?.available(now) ?? true)
    );
    if (free.length === 0) {
      // wake up when a rate window reopens for a slot that only the rate limit holds back
      const next = pool
        .filter((s) => s.inFlight < s.maxConcurrency && s.rate)
        .map((s) => s.rate!.nextAt(now));
      if (next.length > 0) this.#wakeAt(protocol, Math.min(...next));
      return undefined;
    }
    const least = Math.min(...free.map((s) => s.inFlight));
    const candidates = free.filter((s) => s.inFlight === least);
    const n = this.#rr.get(protocol) ?? 0;
    this.#rr.set(protocol, n + 1);
    const slot = candidates[n % candidates.length]!;
    slot.inFlight++;
    slot.calls++;
    slot.rate?.take(now);
    return slot;
  }

  #drain(protocol: string): void {
    const queue = this.#waiters.get(protocol);
    while (queue && queue.length > 0) {
      const slot = this.#take(protocol);
      if (!slot) return;
      queue.shift()!.resolve(slot);
    }
  }

  #wakeAt(protocol: string, at: number): void {
    if (this.#wakeTimers.has(protocol) || this.#closed) return;
    const timer = setTimeout(() => {
      this.#wakeTimers.delete(protocol);
      this.#drain(protocol);
    }, Math.max(1, at - Date.now()));
    // not unref'd: calls are waiting for it
    this.#wakeTimers.set(protocol, timer);
  }

  #markUnhealthy(slot: Slot, message: string): void {
    slot.healthy = false;
    slot.lastHealth = { healthy: false, message };
    this.#scheduleRecoveryProbe(slot);
  }

  #scheduleRecoveryProbe(slot: Slot): void {
    if (this.#closed || slot.recovery !== undefined) return;
    const sinceProbe = slot.lastProbeAt === undefined ? Infinity : Date.now() - slot.lastProbeAt;
    const delay = Math.max(0, this.#options.unhealthyIntervalMs - sinceProbe);
    slot.recovery = setTimeout(async () => {
      slot.recovery = undefined;
      if (this.#closed || this.#slotIndex(slot) < 0) return;
      const report = await this.#probe(slot);
      if (!report.healthy) this.#scheduleRecoveryProbe(slot);
    }, delay);
    Deno.unrefTimer(slot.recovery as unknown as number);
  }

  #slotIndex(slot: Slot): number {
    return this.#slots.get(slot.provider.protocol)?.indexOf(slot) ?? -1;
  }

  #ensureHealthTimer(): void {
    const every = this.#options.healthIntervalMs;
    if (every <= 0 || this.#healthTimer !== undefined || this.#closed) return;
    const tick = Math.min(every, this.#options.unhealthyIntervalMs);
    this.#healthTimer = setInterval(() => {
      const now = Date.now();
      for (const slot of [...this.#slots.values()].flat()) {
        const interval = slot.healthy ? every : this.#options.unhealthyIntervalMs;
        if (slot.probing || (slot.lastProbeAt !== undefined && now - slot.lastProbeAt < interval)) {
          continue;
        }
        this.#probe(slot).catch(() => {});
      }
    }, tick);
    Deno.unrefTimer(this.#healthTimer as unknown as number);
  }

  /** Probes one slot, recording the outcome; concurrent probes of one slot share the answer. */
  #probe(slot: Slot): Promise<HealthReport> {
    if (slot.probing) return slot.probing;
    const run = async (): Promise<HealthReport> => {
      const provider = slot.provider;
      if (!provider.health) return { healthy: true };
      const started = performance.now();
      const signal = AbortSignal.timeout(this.#options.healthTimeoutMs);
      try {
        const report = await provider.health(signal);
        return { latencyMs: performance.now() - started, ...report };
      } catch (e) {
        return { healthy: false, message: toGleitzeitError(e).message };
      }
    };
    slot.probing = run().then((report) => {
      slot.probing = undefined;
      slot.lastProbeAt = Date.now();
      slot.lastHealth = report;
      const was = slot.healthy;
      slot.healthy = report.healthy;
      if (!report.healthy && was) this.#scheduleRecoveryProbe(slot);
      if (report.healthy && !was) this.#drain(slot.provider.protocol);
      return report;
    });
    return slot.probing;
  }

  /**
   * Probes every started provider (or the one with `id`, starting it if needed) now.
   * Providers declared through a factory but not started are listed with
   * `details.status = "not_started"` unless asked for by id.
   */
  async health(id?: string): Promise<HealthEntry[]> {
    if (id !== undefined && !this.#findSlot(id)) {
      for (const [protocol, entry] of this.#factories) {
        if (entry.info.ids?.includes(id) && !protocol.endsWith("/*")) {
          await this.#ensureStarted(protocol).catch(() => {});
        }
      }
    }
    const slots = [...this.#slots.values()].flat()
      .filter((s) => id === undefined || s.provider.id === id);
    const probed = await Promise.all(slots.map(async (slot) => ({
      id: slot.provider.id,
      protocol: slot.provider.protocol,
      report: await this.#probe(slot),
    })));
    const idle = this.#notStarted()
      .filter((n) => id === undefined || n.id === id)
      .map((n) => ({
        id: n.id,
        protocol: n.protocol,
        report: { healthy: false, message: "not started", details: { status: "not_started" } },
      }));
    if (id !== undefined && probed.length === 0 && idle.length === 0) {
      throw new GleitzeitError("PROVIDER_NOT_FOUND", `no provider with id ${id}`, {
        hint: `known providers: ${this.stats().map((s) => s.id).join(", ") || "none"}`,
      });
    }
    return [...probed, ...idle];
  }

  #findSlot(id: string): Slot | undefined {
    return [...this.#slots.values()].flat().find((s) => s.provider.id === id);
  }

  #notStarted(): { id: string; protocol: string }[] {
    const out: { id: string; protocol: string }[] = [];
    for (const [protocol, entry] of this.#factories) {
      if ((this.#slots.get(protocol)?.length ?? 0) > 0) continue;
      for (const id of entry.info.ids ?? []) {
        if (!this.#findSlot(id)) out.push({ id, protocol });
      }
    }
    return out;
  }

  /** Call statistics of every provider, started or declared. */
  stats(): ProviderStats[] {
    const methodsOf = (protocol: string) =>
      this.protocol(protocol)?.methods.map((m) => m.name) ?? [];
    const started = [...this.#slots.values()].flat().map((s): ProviderStats => {
      const finished = s.successes + s.failures;
      const stats: ProviderStats = {
        id: s.provider.id,
        protocol: s.provider.protocol,
        status: s.healthy ? "healthy" : "unhealthy",
        healthy: s.healthy,
        methods: methodsOf(s.provider.protocol),
        inFlight: s.inFlight,
        queued: this.#waiters.get(s.provider.protocol)?.length ?? 0,
        calls: s.calls,
        successes: s.successes,
        failures: s.failures,
        successRate: finished > 0 ? s.successes / finished : undefined,
        meanLatencyMs: finished > 0 ? s.totalLatencyMs / finished : undefined,
        lastLatencyMs: s.lastLatencyMs,
      };
      if (Number.isFinite(s.maxConcurrency)) stats.maxConcurrency = s.maxConcurrency;
      if (s.rate) stats.rateLimit = s.rate.limit;
      if (s.lastHealth) stats.lastHealth = s.lastHealth;
      if (s.lastProbeAt !== undefined) stats.lastProbeAt = new Date(s.lastProbeAt).toISOString();
      const info = s.provider.info?.();
      if (info) stats.info = info;
      return stats;
    });
    const idle = this.#notStarted().map((n): ProviderStats => ({
      id: n.id,
      protocol: n.protocol,
      status: "not_started",
      healthy: false,
      methods: methodsOf(n.protocol),
      inFlight: 0,
      queued: 0,
      calls: 0,
      successes: 0,
      failures: 0,
      successRate: undefined,
      meanLatencyMs: undefined,
      lastLatencyMs: undefined,
    }));
    return [...started, ...idle];
  }

  /** Stops probes, fails queued calls and closes every provider. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#healthTimer !== undefined) clearInterval(this.#healthTimer);
    for (const t of this.#wakeTimers.values()) clearTimeout(t);
    this.#wakeTimers.clear();
    for (const s of [...this.#slots.values()].flat()) {
      if (s.recovery !== undefined) clearTimeout(s.recovery);
    }
    for (const t of this.#startRetries.values()) clearTimeout(t);
    this.#startRetries.clear();
    const closed = new GleitzeitError("PROVIDER_UNAVAILABLE", "the registry is closed", {
      retryable: false,
    });
    for (const queue of this.#waiters.values()) {
      for (const w of queue.splice(0)) w.reject(closed);
    }
    await Promise.allSettled([...this.#starting.values()]);
    const all = [...this.#slots.values()].flat();
    this.#slots.clear();
    await Promise.allSettled(all.map((s) => s.provider.close?.()));
  }
}
