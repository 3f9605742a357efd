import { deepStrictEqual, equal, throws } from "node:assert/strict";
import { InexactIntegerError, parseJsonExact } from "../../src/core/exact_numbers.ts";

Deno.test("parseJsonExact: JSON.parse's values, but an integer that would not pass exactly throws, naming it and what it would become", () => {
  deepStrictEqual(
    parseJsonExact(
      '{"a": [9007199254740992, -9007199254740992, 1.5e300, 2.5, 1e400, "9007199254740993"]}',
    ),
    { a: [9007199254740992, -9007199254740992, 1.5e300, 2.5, Infinity, "9007199254740993"] },
  );
  const cases: [string, string][] = [
    ["9007199254740993", "9007199254740992"],
    ["-9007199254740993", "-9007199254740992"],
    ["1152921504606846977", "1152921504606847000"],
    ["1" + "0".repeat(400), "null"], // beyond a double: null, not a silent change
  ];
  for (const [big, becomes] of cases) {
    throws(() => parseJsonExact(`{"x": {"y": [${big}]}}`), (e: unknown) => {
      equal(e instanceof InexactIntegerError && e.literal, big);
      equal(
        (e as Error).message,
        `the integer ${big} is too large to pass exactly (it would become ${becomes})`,
      );
      return true;
    });
  }
  throws(() => parseJsonExact("{"), SyntaxError);
});
