/** Assertions for the provider tests (node:assert, since JSR's @std/assert is out of reach). */

import assert from "node:assert/strict";

/** Deep equality. */
export function assertEquals(actual: unknown, expected: unknown, message?: string): void {
  assert.deepStrictEqual(actual, expected, message);
}

/** Identity. */
export function assertStrictEquals(actual: unknown, expected: unknown, message?: string): void {
  assert.strictEqual(actual, expected, message);
}

/** Truthiness. */
export function assertOk(value: unknown, message?: string): asserts value {
  assert.ok(value, message);
}

/** Awaits a rejection and returns the error. */
export async function rejects(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error("expected the promise to reject");
}
