/**
 * The schemas of the config file's `providers:` and `mcp_servers:` entries: checked with the
 * rest of the file (its positions, "did you mean"), and again where they are registered.
 *
 * @module
 */

import { z } from "zod";

const name = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, "letters, digits, _ . - only");
const stringMap = z.record(z.string(), z.union([z.string(), z.number(), z.boolean()]))
  .transform((m) => Object.fromEntries(Object.entries(m).map(([k, v]) => [k, String(v)])));

const methodSpec = z.object({
  description: z.string().optional(),
  params: z.record(z.string(), z.unknown()).optional(),
}).strict();

/** One `providers:` entry. */
export const ProviderEntrySchema = z.object({
  id: name,
  protocol: z.string().regex(/^[a-z0-9][a-z0-9_-]*\/[A-Za-z0-9_.-]+$/, "must look like name/v1"),
  description: z.string().optional(),
  command: z.string({
    error: (i) =>
      Array.isArray(i.input)
        ? "must be a string: the program alone, its arguments go in `args`"
        : undefined,
  }).min(1).optional(),
  args: z.array(z.union([z.string(), z.number()]).transform(String)).optional(),
  env: stringMap.optional(),
  cwd: z.string().optional(),
  url: z.url().optional(),
  headers: z.record(z.string(), z.string()).optional(),
  methods: z.union([
    z.array(methodSpec.extend({ name: z.string().min(1) })),
    z.record(z.string(), methodSpec),
  ]).optional(),
  describe: z.union([z.boolean(), z.string().min(1)]).optional(),
  health_method: z.string().min(1).optional(),
  max_concurrency: z.number().int().positive().optional(),
  rate_limit: z.object({
    requests: z.number().int().positive(),
    per_seconds: z.number().positive(),
  }).strict().optional(),
  instances: z.number().int().positive().max(64).default(1),
  timeout_ms: z.number().positive().optional(),
  stderr_lines: z.number().int().positive().optional(),
  restart: z.object({
    base_delay_ms: z.number().nonnegative().optional(),
    max_delay_ms: z.number().positive().optional(),
  }).strict().optional(),
}).strict().superRefine((e, ctx) => {
  if ((e.command === undefined) === (e.url === undefined)) {
    ctx.addIssue({ code: "custom", message: "give exactly one of `command` and `url`" });
  }
  if (e.methods === undefined && !e.describe) {
    ctx.addIssue({
      code: "custom",
      message: "give `methods` (with param schemas) or `describe: true`",
    });
  }
  if (e.url !== undefined && e.instances > 1) {
    ctx.addIssue({ code: "custom", path: ["instances"], message: "only for `command` providers" });
  }
});

/** One `mcp_servers:` entry. */
export const McpServerEntrySchema = z.object({
  name,
  command: z.string().min(1),
  args: z.array(z.union([z.string(), z.number()]).transform(String)).optional(),
  env: stringMap.optional(),
  cwd: z.string().optional(),
  timeout_ms: z.number().positive().optional(),
  description: z.string().optional(),
}).strict();

/** A parsed `providers:` entry. */
export type ProviderEntry = z.output<typeof ProviderEntrySchema>;
/** A parsed `mcp_servers:` entry. */
export type McpServerEntry = z.output<typeof McpServerEntrySchema>;
