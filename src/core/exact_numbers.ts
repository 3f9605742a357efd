/**
 * Integers that JSON numbers (IEEE doubles: what every workflow value becomes) would not pass
 * exactly: one written beyond ±2^53 is rounded on parsing and written out again as the
 * double's shortest form (1152921504606846977 reaches a task as 1152921504606847000, one past
 * ~1.8e308 as null) with no word said. Results are checked as strictly (see the Python
 * provider: TASK_RESULT_ERROR), so inputs are refused with a hint to quote them.
 *
 * @module
 */

/** The largest integer every integer up to which passes exactly. */
const LIMIT = 2 ** 53;

/** The hint for an integer that cannot pass exactly. */
export function quoteHint(literal: string): string {
  return `quote it to pass it as text ("${literal}"); integers pass exactly up to ` +
    "9007199254740992 (2^53)";
}

/** The message for `literal`, an integer that would not pass exactly as `value`. */
export function inexactMessage(literal: string, value: number): string {
  // (what a task would get: the number as JSON writes it)
  return `the integer ${literal} is too large to pass exactly (it would become ${
    JSON.stringify(value)
  })`;
}

/** Whether `literal` (its source text) is an integer that its parsed `value` is not. */
export function isInexactInteger(
  value: unknown,
  literal: string | undefined,
): literal is string {
  if (typeof value !== "number" || literal === undefined) return false;
  if (!/^[-+]?(\d+|0x[0-9a-fA-F]+|0o[0-7]+)$/.test(literal)) return false;
  if (!Number.isFinite(value) || Math.abs(value) > LIMIT) return true;
  const digits = BigInt(literal.replace(/^[-+]/, "")); // (BigInt reads 0x and 0o too)
  return (literal.startsWith("-") ? -digits : digits) !== BigInt(value);
}

/** An integer literal (JSON) that would not pass exactly: see parseJsonExact. */
export class InexactIntegerError extends Error {
  constructor(readonly literal: string, value: number) {
    super(inexactMessage(literal, value));
  }
}

/**
 * JSON.parse, except that an integer literal beyond ±2^53 throws InexactIntegerError
 * (syntax errors throw SyntaxError as ever).
 */
export function parseJsonExact(text: string): unknown {
  // (the reviver's third argument: the literal's source text, V8 11.4 and later)
  const reviver = (_key: string, value: unknown, context?: { source?: string }) => {
    if (isInexactInteger(value, context?.source)) {
      throw new InexactIntegerError(context!.source!, value as number);
    }
    return value;
  };
  return JSON.parse(text, reviver as (key: string, value: unknown) => unknown);
}
