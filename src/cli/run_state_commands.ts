/** `workflow list | status | resume | cancel`: runs in the store @module */

import type { Command } from "@commander-js/extra-typings";
import { type ExitCode, GleitzeitError } from "../core/errors.ts";
import type { Workflow } from "../core/workflow.ts";
import { createApp } from "../app.ts";
import { configFromFlags, interruptSignal } from "./context.ts";
import { colors, err, out, printJson } from "./output.ts";
import { printSummary, ProgressRenderer } from "./render.ts";
import { exitCodeOf, failureLine, outcomeJson, sandboxWarnings } from "./run_commands.ts";
import {
  cancelRun,
  globalsOf,
  type ListOptions,
  listOptions,
  listRuns,
  mustRun,
  printRuns,
  printRunStatus,
  withStore,
} from "./stored_state.ts";

/** Registers `workflow list | status | resume | cancel`. */
export function registerRunCommands(workflow: Command, setExit: (code: ExitCode) => void): void {
  const wList = listOptions(
    workflow.command("list").description("stored runs, newest first"),
    false,
  );
  wList.action(async () => {
    const opts = wList.opts() as ListOptions;
    await withStore(
      globalsOf(wList),
      async (store) => printRuns(await listRuns(store, opts), globalsOf(wList).json === true),
    );
    setExit(0);
  });
  const wStatus = workflow.command("status").description("a run and its tasks").argument(
    "<run-id>",
  );
  wStatus.action(async (id) => {
    await withStore(globalsOf(wStatus), async (store) => {
      const globals = globalsOf(wStatus);
      await printRunStatus(store, await mustRun(store, id), globals.json === true, globals);
    });
    setExit(0);
  });
  const wResume = workflow.command("resume").description(
    "continue an interrupted, cancelled, failed or queued run",
  )
    .argument("<run-id>");
  wResume.action(async (id) => {
    const globals = globalsOf(wResume);
    const config = await configFromFlags(globals);
    const json = globals.json === true;
    const quiet = globals.quiet === true; // -q, before or after the command
    let tasks: Workflow["tasks"] = [];
    const renderer = new ProgressRenderer({
      quiet: json || quiet,
      maxAttempts: (taskId) => tasks.find((t) => t.id === taskId)?.retry.maxAttempts,
    });
    const app = await createApp(config, { onEvent: renderer.handle });
    try {
      const stored = await mustRun(app.store, id);
      tasks = stored.workflow.tasks;
      if (stored.state === "completed") {
        // Nothing to do, and nothing wrong: resume is safe to repeat (a CI step, say).
        err(`run ${id} already completed: nothing to resume`);
        if (json) {
          // the report a resume that executed it gives (`results` too), of the run as stored
          const tasks = await app.store.listTasks({ runId: id });
          const durationMs = (stored.finishedAt ?? Date.now()) -
            (stored.startedAt ?? stored.createdAt);
          printJson(
            outcomeJson({ runId: id, state: "completed", durationMs, tasks }, stored.workflowName),
          );
        } else await printRunStatus(app.store, stored, false, globals);
        setExit(0);
        return;
      }
      // What is left to run needs its protocols here, as `run` checks them before it starts:
      // a run started with --config FILE (its providers) is resumed with the same. Said now,
      // before an attempt is spent on it.
      const left = (await app.store.listTasks({ runId: id })).filter((t) =>
        t.state !== "completed"
      );
      const unknown = [...new Set(left.map((t) => t.protocol))].filter((p) =>
        app.registry.protocol(p) === undefined
      );
      if (unknown.length > 0) {
        const tasks = left.filter((t) => unknown.includes(t.protocol)).map((t) => t.taskId);
        throw new GleitzeitError(
          "PROTOCOL_NOT_FOUND",
          `run ${id}: task${tasks.length === 1 ? "" : "s"} ${tasks.join(", ")} need${
            tasks.length === 1 ? "s" : ""
          } ${unknown.join(", ")}, which no provider here serves; nothing was run`,
          {
            hint: "resume with the configuration the run was started with, e.g. " +
              `\`gleitzeit --config FILE workflow resume ${id}\` (gleitzeit provider list shows ` +
              "what this one serves)",
          },
        );
      }
      // as `run` says it: a resumed run executes its Python tasks here too
      for (
        const warning of sandboxWarnings(
          stored.workflow,
          config.sandbox,
          config.sources.sandbox,
          config.configPath,
          config.minSandbox,
        )
      ) {
        err(colors("stderr").yellow(`warning: ${warning}`));
      }
      const { signal, dispose } = interruptSignal(json);
      try {
        const outcome = await app.engine.execute(id, { signal });
        const run = await app.store.getRun(id);
        if (json) printJson(outcomeJson(outcome, run?.workflowName ?? ""));
        else printSummary(outcome);
        const code = exitCodeOf(outcome);
        if (code !== 0 && (json || quiet)) err(failureLine(outcome));
        setExit(code);
      } finally {
        dispose();
      }
    } finally {
      await app.close();
    }
  });
  const wCancel = workflow.command("cancel").description("cancel a run").argument("<run-id>");
  wCancel.action(async (id) => {
    await withStore(globalsOf(wCancel), async (store) => {
      const message = await cancelRun(store, await mustRun(store, id));
      if (globalsOf(wCancel).json) printJson({ run_id: id, message });
      else out(message);
    });
    setExit(0);
  });
}
