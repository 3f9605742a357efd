import { assertEquals } from "../assert.ts";
import { preview, visible } from "../../src/cli/output.ts";
import stringWidth from "string-width";

Deno.test("preview: one line at most `max` terminal columns, wide characters counted as two", () => {
  assertEquals(preview({ a: 1 }), '{"a":1}');
  assertEquals(preview("a\n  b\tc"), "a b c");
  assertEquals(preview("x".repeat(70), 10), "x".repeat(9) + "…");
  // CJK and emoji take two columns each: 20 of them fill 40, not 20
  const wide = preview("世".repeat(50), 21);
  assertEquals(wide, "世".repeat(10) + "…");
  assertEquals(stringWidth(wide), 21);
  const mixed = preview(`{"text":"${"こんにちは".repeat(10)} 🌍🌍"}`, 60);
  assertEquals(stringWidth(mixed) <= 60, true, mixed);
  assertEquals(mixed.endsWith("…"), true);
  assertEquals(preview("🌍🌍🌍", 6), "🌍🌍🌍");
  assertEquals(preview("🌍🌍🌍🌍", 6), "🌍🌍…");
});

Deno.test("preview and visible: a task's control characters (ESC, BEL, DEL, C1) are written out, not sent to the terminal", () => {
  assertEquals(preview("a\x1b[2J\x1b[31mred\x07"), "a\\x1b[2J\\x1b[31mred\\x07");
  assertEquals(
    visible("tab\tand\nline stay; \x7f and \x9b do not"),
    "tab\tand\nline stay; \\x7f and \\x9b do not",
  );
  assertEquals(visible("plain, ünïcode, 漢字"), "plain, ünïcode, 漢字");
});
