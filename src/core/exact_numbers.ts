/**
 * Integers that JSON numbers (IEEE doubles: what every workflow value becomes) would not pass
 * exactly: one written past ±(2^53 - 1) is rounded on parsing (1152921504606846977 becomes
 * ...976, shown as ...7000) with no word said. Results are checked as strictly (see the Python
 * provider: TASK_RESULT_ERROR), so inputs are refused with a hint to quote them.
 *
 * @module
 */

/** The hint for an integer that cannot pass exactly. */
export function quoteHint(literal: string): string {
  return `quote it to pass it as text ("${literal}"), or use a float (${literal}.0) if ` +
    "rounding is fine; integers pass exactly up to 9007199254740991 (2^53 - 1)";
}

/** The message for `literal`, an integer past 2^53 - 1. */
export function inexactMessage(literal: string): string {
  const negative = literal.startsWith("-");
  const value = Number(literal.replace(/^[-+]/, ""));
  // (the double it would be, written out in full)
  const becomes = Number.isFinite(value)
    ? ` (it would become ${negative ? "-" : ""}${BigInt(value)})`
    : "";
  return `the integer ${literal} is too large to pass exactly${becomes}`;
}

/** Whether `literal` (its source text) is an integer whose parsed `value` is not exact. */
export function isInexactInteger(
  value: unknown,
  literal: string | undefined,
): literal is string {
  return typeof value === "number" && Number.isFinite(value) && !Number.isSafeInteger(value) &&
    literal !== undefined && /^[-+]?(\d+|0x[0-9a-fA-F]+|0o[0-7]+)$/.test(literal);
}

/** An integer literal (JSON) that would not pass exactly: see parseJsonExact. */
export class InexactIntegerError extends Error {
  constructor(readonly literal: string) {
    super(inexactMessage(literal));
  }
}

/**
 * JSON.parse, except that an integer literal past ±(2^53 - 1) throws InexactIntegerError
 * (syntax errors throw SyntaxError as ever).
 */
export function parseJsonExact(text: string): unknown {
  // (the reviver's third argument: the literal's source text, V8 11.4 and later)
  const reviver = (_key: string, value: unknown, context?: { source?: string }) => {
    if (isInexactInteger(value, context?.source)) throw new InexactIntegerError(context!.source!);
    return value;
  };
  return JSON.parse(text, reviver as (key: string, value: unknown) => unknown);
}
