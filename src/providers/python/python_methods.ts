/** The methods and parameter schemas of `python/v1`. @module */

import { TIMEOUT_PARAM_SCHEMA } from "../../core/duration.ts";
import type { ProtocolSpec } from "../provider.ts";

/** `python/v1`: Python 3 in a separate process per task. */
export const PYTHON_PROTOCOL: ProtocolSpec = {
  protocol: "python/v1",
  description: "Python 3 code in a separate process per task",
  // a task that asks for `basic` or `none` does not need bubblewrap (see PythonProvider.health)
  routes: { names: ["bwrap", "basic", "none"], of: (ctx) => askedSandbox(ctx.sandbox) },
  methods: [
    {
      name: "python/execute",
      description:
        "Runs `code`; entries of `context` become variables; the variable `result` is the task's result",
      params: {
        type: "object",
        properties: {
          code: { type: "string", minLength: 1, description: "Python source" },
          context: { type: "object", description: "Variables made available to the code" },
          timeout: TIMEOUT_PARAM_SCHEMA,
        },
        required: ["code"],
        additionalProperties: false,
      },
    },
    {
      name: "python/script",
      description: "Runs a .py file (relative to the workflow) with `args` and `context`",
      params: {
        type: "object",
        properties: {
          script: { type: "string", minLength: 1, description: "Path of the .py file" },
          // numbers and booleans too (a whole-string reference keeps its JSON type):
          // each becomes its text in sys.argv
          args: { type: "array", items: { type: ["string", "number", "boolean"] } },
          context: { type: "object" },
          timeout: TIMEOUT_PARAM_SCHEMA,
        },
        required: ["script"],
        additionalProperties: false,
      },
    },
  ],
};

/**
 * The sandbox mode a workflow or task asks for by name (the task's wins), or undefined when
 * neither does (the executing Gleitzeit's default applies). Not validated here: the provider
 * does that.
 */
export function askedSandbox(
  sandbox: { workflow?: unknown; task?: unknown } | undefined,
): string | undefined {
  const modeOf = (decl: unknown): string | undefined => {
    if (typeof decl === "string") return decl;
    if (decl && typeof decl === "object" && !Array.isArray(decl)) {
      const mode = (decl as Record<string, unknown>).mode;
      if (typeof mode === "string") return mode;
    }
    return undefined;
  };
  const mode = modeOf(sandbox?.task) ?? modeOf(sandbox?.workflow);
  return mode === "bwrap" || mode === "basic" || mode === "none" ? mode : undefined;
}
