/**
 * Small assertion helpers (JSR's @std/assert cannot be reached here). Each throws an
 * AssertionError with a message that shows what differed.
 *
 * @module
 */

/** Thrown when an assertion fails. */
export class AssertionError extends Error {
  override name = "AssertionError";
}

function show(v: unknown): string {
  try {
    return JSON.stringify(v, (_k, x) => (x instanceof Map ? Object.fromEntries(x) : x));
  } catch {
    return String(v);
  }
}

function equal(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a).filter((k) => (a as Record<string, unknown>)[k] !== undefined);
  const kb = Object.keys(b).filter((k) => (b as Record<string, unknown>)[k] !== undefined);
  if (ka.length !== kb.length) return false;
  return ka.every((k) =>
    equal((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])
  );
}

/** Asserts a truthy value. */
export function assert(cond: unknown, msg = "expected a truthy value"): asserts cond {
  if (!cond) throw new AssertionError(msg);
}

/** Asserts deep equality (objects, arrays, primitives). */
export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  if (!equal(actual, expected)) {
    throw new AssertionError(
      `${msg ? msg + ": " : ""}values differ\n  actual:   ${show(actual)}\n  expected: ${
        show(expected)
      }`,
    );
  }
}

/** Asserts deep inequality. */
export function assertNotEquals<T>(actual: T, expected: T, msg?: string): void {
  if (equal(actual, expected)) {
    throw new AssertionError(
      `${msg ? msg + ": " : ""}expected a difference from ${show(expected)}`,
    );
  }
}

/** Asserts that a value is neither null nor undefined. */
export function assertExists<T>(v: T, msg = "expected a value"): asserts v is NonNullable<T> {
  if (v === null || v === undefined) throw new AssertionError(msg);
}

/** Asserts that `text` contains `part`. */
export function assertStringIncludes(text: string, part: string, msg?: string): void {
  if (!text.includes(part)) {
    throw new AssertionError(
      `${msg ? msg + ": " : ""}expected to find ${show(part)} in:\n${text.slice(0, 2000)}`,
    );
  }
}

/** Asserts that `text` matches `re`. */
export function assertMatch(text: string, re: RegExp, msg?: string): void {
  if (!re.test(text)) {
    throw new AssertionError(
      `${msg ? msg + ": " : ""}expected ${re} to match:\n${text.slice(0, 2000)}`,
    );
  }
}

/** Asserts that `fn` throws (synchronously), optionally an instance of `cls` with `includes` in its message. */
export function assertThrows<E extends Error = Error>(
  fn: () => unknown,
  // deno-lint-ignore no-explicit-any
  cls?: new (...args: any[]) => E,
  includes?: string,
): E {
  try {
    fn();
  } catch (e) {
    check(e, cls, includes);
    return e as E;
  }
  throw new AssertionError("expected the function to throw");
}

/** Asserts that `fn` rejects, optionally with an instance of `cls` whose message includes `includes`. */
export async function assertRejects<E extends Error = Error>(
  fn: () => Promise<unknown>,
  // deno-lint-ignore no-explicit-any
  cls?: new (...args: any[]) => E,
  includes?: string,
): Promise<E> {
  try {
    await fn();
  } catch (e) {
    check(e, cls, includes);
    return e as E;
  }
  throw new AssertionError("expected the promise to reject");
}

// deno-lint-ignore no-explicit-any
function check(e: unknown, cls?: new (...args: any[]) => Error, includes?: string): void {
  if (cls && !(e instanceof cls)) {
    throw new AssertionError(
      `expected ${cls.name}, got ${e instanceof Error ? e.name : show(e)}: ${String(e)}`,
    );
  }
  if (includes && !(e instanceof Error && e.message.includes(includes))) {
    throw new AssertionError(
      `expected the error message to include ${show(includes)}, got ${show((e as Error)?.message)}`,
    );
  }
}
