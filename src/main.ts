/** Entry point of the `gleitzeit` command: the only place that exits. @module */

import { runCli } from "./cli/cli.ts";

if (import.meta.main) {
  const code = await runCli(Deno.args);
  Deno.exit(code);
}
