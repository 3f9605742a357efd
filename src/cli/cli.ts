/** The command tree. `runCli` returns the exit code; only main.ts exits. @module */

import {
  Command,
  CommanderError,
  Help,
  InvalidArgumentError,
  Option,
} from "@commander-js/extra-typings";
import type { ExitCode } from "../core/errors.ts";
import { collect, type GlobalOptions } from "./context.ts";
import { errorJson, reportError } from "./errors.ts";
import { colors, err, printJson } from "./output.ts";
import { runFileCommand, taskSubmitCommand } from "./run_commands.ts";
import { graphCommand, schemaCommand, validateCommand } from "./workflow_commands.ts";
import { registerBackendCommands } from "./backend_commands.ts";
import { registerRunCommands } from "./run_state_commands.ts";
import { registerSystemCommands } from "./system_commands.ts";
import { registerTaskCommands } from "./task_state_commands.ts";
import { registerProviderCommands } from "./provider_commands.ts";
import { registerWorkerCommand } from "./worker_command.ts";

/** The version printed by `gleitzeit --version`. */
export const VERSION = "0.1.0";

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) {
    throw new InvalidArgumentError("expected a positive integer, e.g. 8.");
  }
  return n;
}

function nonNegativeInt(value: string): string {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) {
    throw new InvalidArgumentError("expected a whole number of retries, e.g. 3.");
  }
  return value;
}

/** Adds the options shared by commands that start a run. */
function submitOptions<C extends Command<[string], Record<string, never>>>(cmd: C) {
  return cmd
    .option("--params <json>", "workflow inputs as a JSON object")
    .option("-p, --param <key=value>", "one workflow input (repeatable)", collect, [] as string[])
    .option("--wait", "wait for the run to finish (default)")
    .option("--detach", "record the run as queued and print its id")
    .option("--output-file <file>", "write the run's JSON report to a file");
}

/**
 * Help with the command's own options and commands first. A subcommand's help then lists the
 * global options it takes; a group's (`task --help`), whose commands take them, only names them
 * in one line.
 */
function formatHelp(cmd: Command, helper: Help): string {
  const showGlobal = helper.showGlobalOptions;
  helper.showGlobalOptions = false;
  let text: string;
  try {
    text = Help.prototype.formatHelp.call(helper, cmd, helper);
  } finally {
    helper.showGlobalOptions = showGlobal;
  }
  const globals = cmd.parent ? helper.visibleGlobalOptions(cmd) : [];
  if (!showGlobal || globals.length === 0) return text;
  if (cmd.commands.length > 0) {
    const names = globals.map((o) => o.long ?? o.short)
      .filter((n) => n !== undefined && n !== "--version");
    const line = `Global Options: ${names.join(", ")} (see \`gleitzeit --help\`)`;
    return `${text.trimEnd()}\n\n${helper.boxWrap(line, helper.helpWidth ?? 80)}\n`;
  }
  const width = helper.padWidth(cmd, helper);
  const items = globals.map((o) =>
    helper.formatItem(
      helper.styleOptionTerm(helper.optionTerm(o)),
      width,
      helper.styleOptionDescription(helper.optionDescription(o)),
      helper,
    )
  );
  return `${text.trimEnd()}\n\n${
    helper.formatItemList("Global Options:", items, helper).join("\n")
  }\n`;
}

/** Builds the program; `setExit` receives each action's exit code. */
export function buildProgram(setExit: (code: ExitCode) => void): Command {
  const program = new Command()
    .name("gleitzeit")
    .description("Run YAML workflows of Python, LLM and JSON-RPC tasks, in order and in parallel.")
    .version(VERSION, "-V, --version")
    .option("--config <file>", "config file (default ~/.gleitzeit/config.yaml)")
    .addOption(
      new Option("--backend <backend>", "persistence backend").choices([
        "sqlite",
        "redis",
        "memory",
        "none",
      ]),
    )
    .option("--sqlite-path <file>", "SQLite database file")
    .option("--redis-url <url>", "Redis URL")
    .option("--redis-prefix <prefix>", "prefix of every Redis key (default gleitzeit:)")
    .option("--ollama-url <url>", "Ollama server URL")
    .option("--max-concurrent <n>", "tasks running at once", positiveInt)
    .option("--python <path>", "Python interpreter")
    .addOption(new Option("--sandbox <mode>", "Python sandbox").choices(["bwrap", "basic", "none"]))
    .option("--json", "machine-readable output")
    .option("-q, --quiet", "no progress lines (of run, submit and resume)")
    .option("--debug", "stack traces on errors")
    .showSuggestionAfterError(true)
    // `gleitzeit run --help` lists --json, --sandbox, --ollama-url... too (they work there),
    // after its own options; a group (`task --help`) lists its commands, then one line for them
    .configureHelp({ showGlobalOptions: true, formatHelp })
    .exitOverride()
    .configureOutput({ outputError: (str, write) => write(`${oneLine(str)}\n`) });

  const run = submitOptions(
    program.command("run").description("run a workflow file and wait (the main job)")
      .argument("<file>", "workflow YAML or JSON file"),
  );
  run.action(async (file, opts) => {
    setExit(await runFileCommand(file, opts, run.optsWithGlobals() as GlobalOptions));
  });

  const workflow = program.command("workflow").description("workflow files and runs");
  const submit = submitOptions(
    workflow.command("submit").description("submit a workflow file (waits by default)")
      .argument("<file>", "workflow YAML or JSON file"),
  );
  submit.action(async (file, opts) => {
    setExit(await runFileCommand(file, opts, submit.optsWithGlobals() as GlobalOptions));
  });
  const validate = workflow.command("validate").description(
    "check workflow files, every problem at once",
  )
    .argument("<files...>");
  validate.action(async (files: string[]) => {
    setExit(await validateCommand(files, validate.optsWithGlobals() as GlobalOptions));
  });
  const schema = workflow.command("schema").description("print the JSON Schema of workflow files");
  schema.action(() => setExit(schemaCommand()));
  const graph = workflow.command("graph").description(
    "print the dependency graph of a workflow file",
  )
    .argument("<file>")
    .addOption(
      new Option("--format <format>", "output format").choices(["text", "mermaid", "dot"]),
    );
  graph.action(async (file, opts) => {
    setExit(await graphCommand(file, opts, graph.optsWithGlobals() as GlobalOptions));
  });

  const task = program.command("task").description("single tasks");
  const taskSubmit = task.command("submit").description(
    "run one task, e.g. `task submit python/execute --code 'result=1'`",
  )
    .argument("<method>", "method, e.g. python/execute, llm/chat, echo")
    .option("--protocol <protocol>", "protocol, when the method does not imply it")
    .option("--code <code>", "Python code (python/execute)")
    .option("--model <model>", "model (llm/*)")
    .option("--prompt <text>", "prompt (llm/generate, llm/vision)")
    .option("--system <text>", "system prompt (llm/generate)")
    .option("--messages <json>", "chat messages as JSON (llm/chat)")
    .option("--params <json>", "all parameters as a JSON object")
    .option("--priority <priority>", "urgent, high, normal, low or an integer")
    .option("--timeout <seconds>", "attempt timeout (30, 30s, 5m)")
    .option("--retries <n>", "retries after the first attempt", nonNegativeInt)
    .option(
      "--depends-on <ids>",
      "wait for these stored tasks (comma-separated); use ${ID.path} for their results",
    )
    .option("--wait", "wait for the task to finish (default)")
    .option("--detach", "record the task as queued and print its run id")
    .option("--output-file <file>", "write the JSON report to a file");
  taskSubmit.action(async (method, opts) => {
    setExit(await taskSubmitCommand(method, opts, taskSubmit.optsWithGlobals() as GlobalOptions));
  });

  registerRunCommands(workflow, setExit);
  registerTaskCommands(task, setExit);
  registerBackendCommands(program, setExit);
  registerSystemCommands(program, setExit);
  registerProviderCommands(program, setExit);
  registerWorkerCommand(program, setExit, positiveInt);
  return program;
}

/** Runs the CLI with `args` (without the program name) and returns the exit code. */
export async function runCli(args: string[]): Promise<ExitCode> {
  let code: ExitCode = 0;
  const program = buildProgram((c) => (code = c));
  const debug = args.includes("--debug");
  const json = args.includes("--json");
  try {
    if (args.length === 0) {
      program.outputHelp();
      // (every non-zero exit says why, on stderr)
      err(`${colors("stderr").red("error:")} no command given: see the commands above`);
      if (json) printJsonError({ code: "USAGE_ERROR", message: "no command given", hint: null });
      return 2;
    }
    await program.parseAsync(args, { from: "user" });
    return code;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.exitCode === 0) return 0;
      if (e.code === "commander.helpDisplayed") return 0;
      if (e.code === "commander.help") {
        // a group without its command (`gleitzeit workflow`): its help is out, on stderr; a
        // usage error, as `gleitzeit` alone is
        err(`${colors("stderr").red("error:")} no command given: see the commands above`);
        if (json) printJsonError({ code: "USAGE_ERROR", message: "no command given", hint: null });
        return 2;
      }
      // `gleitzeit config` for `gleitzeit system config`: the groups that have such a command
      const unknown = e.code === "commander.unknownCommand"
        ? /unknown command '([^']+)'/.exec(e.message)?.[1]
        : undefined;
      const within = unknown === undefined ? [] : program.commands
        .filter((group) => group.commands.some((sub) => sub.name() === unknown))
        .map((group) => `\`gleitzeit ${group.name()} ${unknown}\``);
      const hint = within.length > 0
        ? `did you mean ${within.join(" or ")}?`
        : "see `gleitzeit --help` (or `gleitzeit COMMAND --help`)";
      err(colors("stderr").dim(`hint: ${hint}`));
      if (json) {
        printJsonError({
          code: "USAGE_ERROR",
          message: oneLine(e.message).replace(/^error: /, ""),
          hint,
        });
      }
      return 2;
    }
    const code = reportError(e, debug);
    if (json) printJsonError(errorJson(e));
    return code;
  }
}

/** Commander's message with its "(Did you mean run?)" on the same line. */
function oneLine(message: string): string {
  return message.replace(/\s*\n\(Did you mean (.+)\?\)\s*$/, " (did you mean $1?)").trimEnd();
}

/** With --json, errors are also printed on stdout as `{"error": {...}}` for scripts. */
function printJsonError(error: Record<string, unknown>): void {
  printJson({ error });
}
