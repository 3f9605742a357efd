/** Terminal output: colour only on a TTY and never with NO_COLOR. @module */

import stringWidth from "string-width";

const encoder = new TextEncoder();

function envGet(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

/** Whether stdout / stderr are terminals that may get colour. */
export const term = {
  stdoutTty: Deno.stdout.isTerminal(),
  stderrTty: Deno.stderr.isTerminal(),
  noColor: envGet("NO_COLOR") !== undefined && envGet("NO_COLOR") !== "",
};

function paint(code: string, tty: boolean) {
  return (s: string) => (tty && !term.noColor ? `\x1b[${code}m${s}\x1b[0m` : s);
}

/** Colour helpers for stderr (progress) and stdout (tables). */
export function colors(stream: "stdout" | "stderr") {
  const tty = stream === "stdout" ? term.stdoutTty : term.stderrTty;
  return {
    green: paint("32", tty),
    red: paint("31", tty),
    yellow: paint("33", tty),
    cyan: paint("36", tty),
    dim: paint("2", tty),
    bold: paint("1", tty),
  };
}

const closed = { stdout: false, stderr: false };

/**
 * Writes all of `text`. A reader that went away (`| head`) closes that stream for the rest of
 * the command: output is dropped quietly, the work itself goes on (a run still records its
 * results).
 */
function write(stream: "stdout" | "stderr", text: string): void {
  if (closed[stream]) return;
  const file = stream === "stdout" ? Deno.stdout : Deno.stderr;
  let bytes = encoder.encode(text);
  try {
    while (bytes.length > 0) bytes = bytes.subarray(file.writeSync(bytes));
  } catch (e) {
    if (e instanceof Deno.errors.BrokenPipe) closed[stream] = true;
    else throw e;
  }
}

/** Writes a line to stdout. */
export function out(line = ""): void {
  write("stdout", line + "\n");
}

/** Writes a line to stderr. */
export function err(line = ""): void {
  write("stderr", line + "\n");
}

/** Writes text without a newline to stderr (streamed tokens). */
export function errRaw(text: string): void {
  write("stderr", text);
}

/** Prints a value as pretty JSON on stdout. */
export function printJson(value: unknown): void {
  out(JSON.stringify(value, null, 2));
}

/** `1.23s`, `450ms`, `2m03s`. */
export function formatDuration(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return "-";
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(2)}s`;
  const m = Math.floor(ms / 60_000);
  const s = Math.round((ms % 60_000) / 1000);
  return `${m}m${String(s).padStart(2, "0")}s`;
}

/**
 * `text` with its control characters (ESC and the others, but tab and newline) written out as
 * `\x1b`: a task's output or error must not move the cursor, clear the screen or recolour a
 * terminal or CI log it is shown in.
 */
export function visible(text: string): string {
  return text.replace(
    // deno-lint-ignore no-control-regex
    /[\x00-\x08\x0b-\x1f\x7f-\x9f]/g,
    (ch) => `\\x${ch.charCodeAt(0).toString(16).padStart(2, "0")}`,
  );
}

/** One line, at most `max` terminal columns wide, of any JSON value. */
export function preview(value: unknown, max = 60): string {
  let s = typeof value === "string" ? value : JSON.stringify(value) ?? "null";
  // (a long value is cut before it is measured: at most 2 columns per code unit kept)
  s = visible(s.slice(0, 4 * max).replace(/\s+/g, " ").trim());
  if (stringWidth(s) <= max) return s;
  // by terminal columns, not code units: CJK and most emoji take two
  let out = "";
  let width = 0;
  for (const ch of s) {
    const w = stringWidth(ch);
    if (width + w > max - 1) break;
    out += ch;
    width += w;
  }
  return out + "…";
}
