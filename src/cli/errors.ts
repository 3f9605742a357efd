/** The CLI boundary: errors become one line, a hint and an exit code. @module */

import { type ExitCode, GleitzeitError, WorkflowValidationError } from "../core/errors.ts";
import { colors, err } from "./output.ts";

/** Prints an error the way the CLI promises (SPEC section 7) and returns its exit code. */
export function reportError(e: unknown, debug: boolean): ExitCode {
  const c = colors("stderr");
  if (e instanceof WorkflowValidationError) {
    for (const issue of e.issues) {
      const where = issue.line !== undefined
        ? `${e.file}:${issue.line}:${issue.column ?? 1}`
        : e.file;
      const path = issue.path ? `${issue.path}: ` : "";
      err(`${where}: ${path}${issue.message}`);
      if (issue.hint) err(c.dim(`  hint: ${issue.hint}`));
    }
    err(
      `${c.red("error:")} invalid workflow: ${e.issues.length} problem${
        e.issues.length === 1 ? "" : "s"
      } in ${e.file}`,
    );
    if (e.hint) err(c.dim(`hint: ${e.hint}`));
    if (debug && e.stack) err(e.stack);
    return e.exitCode;
  }
  if (e instanceof GleitzeitError) {
    err(`${c.red("error:")} ${plain(e.message)}`);
    if (e.hint) err(c.dim(`hint: ${e.hint}`));
    if (debug && e.stack) err(e.stack);
    return e.exitCode;
  }
  if (e instanceof Deno.errors.NotCapable) {
    err(`${c.red("error:")} ${plain(e.message)}`);
    err(
      c.dim("hint: system directories such as /proc and /sys are out of bounds; use another path"),
    );
    return 2;
  }
  const message = e instanceof Error ? e.message : String(e);
  err(`${c.red("error:")} internal error: ${message}`);
  err(c.dim("hint: this is a bug in gleitzeit; run again with --debug for the stack trace"));
  if (debug && e instanceof Error && e.stack) err(e.stack);
  return 1;
}

/**
 * Deno's permission errors end with advice to pass a flag of deno (`run again with the
 * --allow-all flag`), which a gleitzeit user cannot act on: say what it means instead.
 */
function plain(message: string): string {
  return message.replace(
    /Requires (\w+) access to ("[^"]*"), run again with the --allow-[\w-]+ flag/,
    "gleitzeit may not use $2 (a system path)",
  );
}

/** The JSON form of an error, for `--json` output. */
export function errorJson(e: unknown): Record<string, unknown> {
  if (e instanceof WorkflowValidationError) {
    return { code: e.code, message: e.message, issues: e.issues, hint: e.hint ?? null };
  }
  if (e instanceof GleitzeitError) {
    return { code: e.code, message: plain(e.message), hint: e.hint ?? null, details: e.details };
  }
  return { code: "INTERNAL_ERROR", message: e instanceof Error ? e.message : String(e) };
}
