/**
 * Configuration: defaults < config file < environment < flags, resolved once, with the
 * source of every value recorded for `gleitzeit system config`.
 *
 * @module
 */

import { posix } from "node:path";
import { LineCounter, parseDocument } from "yaml";
import { z } from "zod";
import { GleitzeitError } from "../core/errors.ts";
import { inHome } from "../core/home.ts";
import { Positions } from "../loader/positions.ts";
import { schemaIssues } from "../loader/schema_issues.ts";
import { McpServerEntrySchema, ProviderEntrySchema } from "./provider_entries.ts";

/** Where a configuration value came from. */
export type ConfigSource = "default" | "file" | "env" | "flag";

/** Persistence backends; `none` is an alias of `memory`. */
export type Backend = "sqlite" | "redis" | "memory";

/** Python sandbox modes (issue 5): bwrap is the safe default. */
export type SandboxMode = "bwrap" | "basic" | "none";

/** The effective configuration. */
export interface ResolvedConfig {
  backend: Backend;
  sqlitePath: string;
  redisUrl: string;
  redisPrefix: string;
  ollamaUrl: string;
  ollamaMaxConcurrent: number;
  maxConcurrentTasks: number;
  /** Interval of health probes of started providers (ms); 0 = only when a call fails. */
  healthIntervalMs: number;
  python?: string;
  sandbox: SandboxMode;
  /**
   * The weakest sandbox a task may choose (`python.min_sandbox`, GLEITZEIT_MIN_SANDBOX): a
   * workflow or task asking for less fails with SANDBOX_UNAVAILABLE. Default: none (any).
   */
  minSandbox: SandboxMode;
  /**
   * Whether workflows and tasks may grant paths or network (`read`, `write`, `network`;
   * `python.allow_grants`, GLEITZEIT_ALLOW_GRANTS). Default true. False makes `minSandbox`
   * bwrap (basic and none reach everything a grant could give).
   */
  allowGrants: boolean;
  logLevel: string;
  /** The config file read, if any. */
  configPath?: string;
  /** Raw `providers:` section (external JSON-RPC providers). */
  providers: unknown[];
  /** Raw `mcp_servers:` section. */
  mcpServers: unknown[];
  /** Source of each scalar value above. */
  sources: Record<string, ConfigSource>;
}

/** Flag values that override everything else. */
export interface ConfigFlags {
  config?: string;
  backend?: string;
  sqlitePath?: string;
  redisUrl?: string;
  redisPrefix?: string;
  ollamaUrl?: string;
  maxConcurrent?: number;
  python?: string;
  sandbox?: string;
  logLevel?: string;
}

const backendSchema = z.enum(["sqlite", "redis", "memory", "none"]);
const sandboxSchema = z.enum(["bwrap", "basic", "none"]);

const fileSchema = z.strictObject({
  persistence: z.strictObject({
    backend: backendSchema.optional(),
    sqlite_path: z.string().optional(),
    redis_url: z.string().optional(),
    redis_prefix: z.string().optional(),
  }).optional(),
  ollama: z.strictObject({
    url: z.string().optional(),
    max_concurrent: z.number().int().positive().optional(),
  }).optional(),
  engine: z.strictObject({
    max_concurrent_tasks: z.number().int().positive().optional(),
    health_interval: z.number().nonnegative().optional(),
  }).optional(),
  python: z.strictObject({
    executable: z.string().optional(),
    sandbox: sandboxSchema.optional(),
    min_sandbox: sandboxSchema.optional(),
    allow_grants: z.boolean().optional(),
  }).optional(),
  log_level: z.enum(["debug", "info", "warn", "error"]).optional(),
  // (checked here for the file's positions; parsed again where they are registered)
  providers: z.array(ProviderEntrySchema).optional(),
  mcp_servers: z.array(McpServerEntrySchema).optional(),
});

type FileConfig = z.infer<typeof fileSchema>;

/** Reads an environment variable (injectable for tests). */
export type EnvReader = (name: string) => string | undefined;

function defaultEnv(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

/** `~/x` -> `$HOME/x` (values from the config file, flags or environment may use `~`). */
export function expandHome(path: string, env: EnvReader = defaultEnv): string {
  if (path !== "~" && !path.startsWith("~/")) return path;
  const home = env("HOME");
  if (!home) {
    throw new GleitzeitError("CONFIG_ERROR", `cannot expand '${path}': HOME is not set`, {
      hint: "give an absolute path",
    });
  }
  return inHome(path, home);
}

/** `~/.gleitzeit`, or a relative `.gleitzeit` when HOME is unknown. */
export function gleitzeitHome(env: EnvReader = defaultEnv): string {
  const home = env("HOME");
  return home ? `${home}/.gleitzeit` : ".gleitzeit";
}

async function readConfigFile(path: string, explicit: boolean): Promise<FileConfig | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound && !explicit) return undefined;
    const why = e instanceof Deno.errors.NotFound ? "no such file" : (e as Error).message;
    throw new GleitzeitError("CONFIG_ERROR", `cannot read config file ${path}: ${why}`, {
      hint: "check the path given with --config or GLEITZEIT_CONFIG",
    });
  }
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false });
  const pos = new Positions(doc, lines, text);
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const at = pos.ofOffset(e.pos[0]);
    // the yaml package's message may quote the source after a colon: keep its first line
    const first = (e.message.split("\n")[0] ?? "").trim().replace(/:$/, "");
    throw new GleitzeitError(
      "CONFIG_ERROR",
      `config file ${path}:${at.line}:${at.column}: ${first}`,
      {
        hint: "fix the YAML syntax (indentation, quotes, colons) at that line",
      },
    );
  }
  const raw: unknown = doc.toJS() ?? {};
  const parsed = fileSchema.safeParse(raw);
  if (!parsed.success) {
    // as the workflow loader reports a file's problems, the keys being the config file's
    const problems = schemaIssues(parsed.error.issues, raw, pos, configKeys)
      .sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0))
      .map((p) => ({
        ...p,
        text: `${p.line}:${p.column}: ${p.path || "(top level)"}: ${p.message}`,
      }));
    // the first one's hint is the hint; the others' go with them
    const more = problems.length > 1
      ? ` (and ${problems.length - 1} more: ${
        problems.slice(1).map((p) => p.hint ? `${p.text}, ${p.hint}` : p.text).join("; ")
      })`
      : "";
    throw new GleitzeitError("CONFIG_ERROR", `config file ${path}:${problems[0]!.text}${more}`, {
      hint: problems[0]!.hint ??
        "the README's Configuration section lists every key; " +
          "run `gleitzeit --config /dev/null system config` to see the defaults",
    });
  }
  return parsed.data;
}

/** The keys a section of the config file may have (`[]`: the top level). */
function configKeys(path: readonly PropertyKey[]): string[] {
  type Walked = {
    def?: { type?: string };
    shape?: Record<string, unknown>;
    element?: unknown;
    unwrap?: () => unknown;
  };
  // (a list's unwrap() is its item: only optional and default values are unwrapped)
  const unwrap = (s: unknown): unknown =>
    ["optional", "default", "nullable"].includes((s as Walked | undefined)?.def?.type ?? "")
      ? unwrap((s as Walked).unwrap!())
      : s;
  let schema: unknown = fileSchema;
  for (const key of path) {
    schema = unwrap(schema);
    // an item of a list (`providers[0]`), else a key of a mapping
    schema = typeof key === "number"
      ? (schema as Walked | undefined)?.element
      : (schema as Walked | undefined)?.shape?.[String(key)];
    schema = unwrap(schema);
  }
  return Object.keys((schema as { shape?: Record<string, unknown> } | undefined)?.shape ?? {});
}

function positiveInt(name: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) {
    throw new GleitzeitError("CONFIG_ERROR", `${name} must be a positive integer, got '${value}'`, {
      hint: `e.g. ${name}=8`,
    });
  }
  return n;
}

function normaliseBackend(name: string, value: string): Backend {
  const parsed = backendSchema.safeParse(value);
  if (!parsed.success) {
    throw new GleitzeitError(
      "CONFIG_ERROR",
      `${name}: unknown backend '${value}'`,
      { hint: "choose one of sqlite, redis, memory (or none)" },
    );
  }
  return parsed.data === "none" ? "memory" : parsed.data;
}

/** none < basic < bwrap. */
export function sandboxStrength(mode: SandboxMode): number {
  return ["none", "basic", "bwrap"].indexOf(mode);
}

function normaliseSandbox(name: string, value: string): SandboxMode {
  const parsed = sandboxSchema.safeParse(value);
  if (!parsed.success) {
    throw new GleitzeitError("CONFIG_ERROR", `${name}: unknown sandbox mode '${value}'`, {
      hint: "choose one of bwrap, basic, none",
    });
  }
  return parsed.data;
}

/** Resolves the configuration from defaults, file, environment and flags. */
export async function resolveConfig(
  flags: ConfigFlags = {},
  env: EnvReader = defaultEnv,
): Promise<ResolvedConfig> {
  const home = gleitzeitHome(env);
  const explicitRaw = flags.config ?? env("GLEITZEIT_CONFIG");
  const explicitPath = explicitRaw === undefined ? undefined : expandHome(explicitRaw, env);
  const configPath = explicitPath ?? `${home}/config.yaml`;
  const file = await readConfigFile(configPath, explicitPath !== undefined);
  const sources: Record<string, ConfigSource> = {};

  function pick<T>(
    key: string,
    def: T,
    fromFile: T | undefined,
    envName: string | undefined,
    fromEnv: (v: string) => T,
    fromFlag: T | undefined,
  ): T {
    if (fromFlag !== undefined) {
      sources[key] = "flag";
      return fromFlag;
    }
    const e = envName ? env(envName) : undefined;
    if (e !== undefined && e !== "") {
      sources[key] = "env";
      return fromEnv(e);
    }
    if (fromFile !== undefined) {
      sources[key] = "file";
      return fromFile;
    }
    sources[key] = "default";
    return def;
  }

  const str = (v: string) => v;
  const config: ResolvedConfig = {
    backend: pick(
      "backend",
      "sqlite" as Backend,
      file?.persistence?.backend === undefined
        ? undefined
        : normaliseBackend("config persistence.backend", file.persistence.backend),
      "GLEITZEIT_PERSISTENCE_BACKEND",
      (v) => normaliseBackend("GLEITZEIT_PERSISTENCE_BACKEND", v),
      flags.backend === undefined ? undefined : normaliseBackend("--backend", flags.backend),
    ),
    sqlitePath: pick(
      "sqlitePath",
      `${home}/gleitzeit.db`,
      file?.persistence?.sqlite_path,
      "GLEITZEIT_SQLITE_PATH",
      str,
      flags.sqlitePath,
    ),
    redisUrl: pick(
      "redisUrl",
      "redis://127.0.0.1:6379",
      file?.persistence?.redis_url,
      "GLEITZEIT_REDIS_URL",
      str,
      flags.redisUrl,
    ),
    redisPrefix: pick(
      "redisPrefix",
      "gleitzeit:",
      file?.persistence?.redis_prefix,
      "GLEITZEIT_REDIS_PREFIX",
      str,
      flags.redisPrefix,
    ),
    ollamaUrl: checkHttpUrl(
      pick(
        "ollamaUrl",
        "http://localhost:11434",
        file?.ollama?.url,
        "GLEITZEIT_OLLAMA_URL",
        str,
        flags.ollamaUrl,
      ),
      { flag: "--ollama-url", env: "GLEITZEIT_OLLAMA_URL", file: "config ollama.url" }[
        sources.ollamaUrl as "flag" | "env" | "file"
      ] ?? "the Ollama URL",
      "Ollama",
      "http://127.0.0.1:11434",
    ),
    ollamaMaxConcurrent: pick(
      "ollamaMaxConcurrent",
      1,
      file?.ollama?.max_concurrent,
      undefined,
      (v) => positiveInt("ollama.max_concurrent", v),
      undefined,
    ),
    maxConcurrentTasks: pick(
      "maxConcurrentTasks",
      16,
      file?.engine?.max_concurrent_tasks,
      "GLEITZEIT_MAX_CONCURRENT_TASKS",
      (v) => positiveInt("GLEITZEIT_MAX_CONCURRENT_TASKS", v),
      flags.maxConcurrent,
    ),
    healthIntervalMs: pick(
      "healthIntervalMs",
      30_000,
      file?.engine?.health_interval === undefined ? undefined : file.engine.health_interval * 1000,
      undefined,
      (v) => Number(v) * 1000,
      undefined,
    ),
    sandbox: pick(
      "sandbox",
      "bwrap" as SandboxMode,
      file?.python?.sandbox,
      undefined,
      (v) => normaliseSandbox("sandbox", v),
      flags.sandbox === undefined ? undefined : normaliseSandbox("--sandbox", flags.sandbox),
    ),
    minSandbox: pick(
      "minSandbox",
      "none" as SandboxMode,
      file?.python?.min_sandbox,
      "GLEITZEIT_MIN_SANDBOX",
      (v) => normaliseSandbox("GLEITZEIT_MIN_SANDBOX", v),
      undefined,
    ),
    allowGrants: pick(
      "allowGrants",
      true,
      file?.python?.allow_grants,
      "GLEITZEIT_ALLOW_GRANTS",
      (v) => {
        if (!["true", "false", "1", "0"].includes(v)) {
          throw new GleitzeitError("CONFIG_ERROR", `GLEITZEIT_ALLOW_GRANTS: not a boolean '${v}'`, {
            hint: "true or false",
          });
        }
        return v === "true" || v === "1";
      },
      undefined,
    ),
    logLevel: pick(
      "logLevel",
      "info",
      file?.log_level,
      "GLEITZEIT_LOG_LEVEL",
      (v) => {
        if (!["debug", "info", "warn", "error"].includes(v)) {
          throw new GleitzeitError("CONFIG_ERROR", `GLEITZEIT_LOG_LEVEL: unknown level '${v}'`, {
            hint: "one of debug, info, warn, error",
          });
        }
        return v;
      },
      flags.logLevel,
    ),
    providers: file?.providers ?? [],
    mcpServers: file?.mcp_servers ?? [],
    sources,
  };
  const python = pick<string | undefined>(
    "python",
    undefined,
    file?.python?.executable,
    "GLEITZEIT_PYTHON",
    str,
    flags.python,
  );
  if (python !== undefined) config.python = expandHome(python, env);
  if (!config.allowGrants && config.minSandbox !== "bwrap") {
    // basic and none reach everything a grant could give (the host's files and network)
    config.minSandbox = "bwrap";
    sources.minSandbox = sources.allowGrants ?? "default";
  }
  if (sandboxStrength(config.sandbox) < sandboxStrength(config.minSandbox)) {
    throw new GleitzeitError(
      "CONFIG_ERROR",
      `the Python sandbox '${config.sandbox}' is weaker than the least allowed, ` +
        `'${config.minSandbox}' (python.min_sandbox or GLEITZEIT_MIN_SANDBOX; python.allow_grants: ` +
        "false makes it bwrap)",
      { hint: `choose --sandbox ${config.minSandbox}, or lower the least allowed` },
    );
  }
  config.sqlitePath = expandHome(config.sqlitePath, env);
  // (absolute: paths in it are relative to its folder, whatever the working directory)
  if (file !== undefined) config.configPath = posix.resolve(Deno.cwd(), configPath);
  return config;
}

/** `url` when it is an http(s) URL; otherwise a CONFIG_ERROR naming where it came from. */
function checkHttpUrl(url: string, where: string, what: string, example: string): string {
  let ok = false;
  try {
    ok = ["http:", "https:"].includes(new URL(url).protocol);
  } catch {
    // not a URL at all
  }
  if (!ok) {
    // a password in it is not shown
    const shown = url.replace(/([^/@:]+):[^/@]+@/, "$1:***@");
    throw new GleitzeitError("CONFIG_ERROR", `${where}: '${shown}' is not an ${what} URL`, {
      hint: `use http://HOST:PORT (or https://), e.g. ${example}`,
    });
  }
  return url;
}
