import { deepStrictEqual, equal, throws } from "node:assert/strict";
import { InexactIntegerError, parseJsonExact } from "../../src/core/exact_numbers.ts";

Deno.test("parseJsonExact: JSON.parse's values, but an integer past 2^53 - 1 throws, naming it", () => {
  deepStrictEqual(
    parseJsonExact(
      '{"a": [9007199254740991, -9007199254740991, 1.5e300, 2.5, "9007199254740993"]}',
    ),
    {
      a: [9007199254740991, -9007199254740991, 1.5e300, 2.5, "9007199254740993"],
    },
  );
  for (const big of ["9007199254740993", "-9007199254740993", "12345678901234567890"]) {
    throws(() => parseJsonExact(`{"x": {"y": [${big}]}}`), (e: unknown) => {
      equal(e instanceof InexactIntegerError && e.literal, big);
      return true;
    });
  }
  throws(() => parseJsonExact("{"), SyntaxError);
});
