import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { WorkflowValidationError } from "../../src/core/errors.ts";
import { formatIssues, parseWorkflow } from "../../src/loader/load_workflow.ts";
import { assertAt, catalog, issueAt, issuesOf, yaml } from "./catalog.ts";

Deno.test("three different mistakes give three issues with line:column, in file order", () => {
  const text = yaml(
    "name: three",
    "tasks:",
    "  - id: fetch",
    "    method: python/execute",
    "    params: {code: 'result = 1'}",
    "    priorty: high", // 6: unknown key
    "  - id: report",
    "    method: python/execute",
    "    params: {code: 'print(1)'}",
    "    dependencies: [fetch, missing]", // 10: unknown dependency
    "  - id: late",
    "    method: echo",
    "    timeout: soon", // 13: bad duration
  );
  let err: unknown;
  try {
    parseWorkflow(text, "three.yaml", catalog);
  } catch (e) {
    err = e;
  }
  ok(err instanceof WorkflowValidationError);
  equal(err.code, "WORKFLOW_VALIDATION_ERROR");
  equal(err.exitCode, 2);
  equal(err.issues.length, 3, JSON.stringify(err.issues, null, 1));
  assertAt(issueAt(err.issues, "tasks[0].priorty"), 6, 5);
  assertAt(issueAt(err.issues, "tasks[1].dependencies[1]"), 10, 27);
  assertAt(issueAt(err.issues, "tasks[2].timeout"), 13, 14);
  deepStrictEqual(formatIssues(err), [
    "three.yaml:6:5: tasks[0].priorty: unknown key 'priorty' (did you mean 'priority'?)",
    "three.yaml:10:27: tasks[1].dependencies[1]: unknown dependency: no task 'missing' (tasks: fetch, report, late)",
    'three.yaml:13:14: tasks[2].timeout: must be a duration such as "30s", "5m", "1h", "500ms" or a number of seconds',
  ]);
  ok(err.message.includes("3 problems"), err.message);
  deepStrictEqual((err.details as { issues: unknown[] }).issues, err.issues);
});

Deno.test("cycles print the cycle, including one made by a reference", () => {
  const issues = issuesOf(yaml(
    "name: c",
    "tasks:",
    "  - {id: a, method: echo, dependencies: [c]}",
    "  - {id: b, method: echo, dependencies: [a]}",
    "  - {id: c, method: echo, dependencies: [b]}",
    "  - {id: x, method: echo, params: {v: '${y.out}'}}",
    "  - {id: y, method: echo, dependencies: [x]}",
    "  - {id: self, method: echo, dependencies: [self]}",
  ));
  equal(issues.length, 3, JSON.stringify(issues, null, 1));
  const abc = issueAt(issues, "tasks[0].dependencies[0]");
  equal(abc.message, "dependency cycle: a -> c -> b -> a");
  assertAt(abc, 3, 42);
  const xy = issueAt(issues, "tasks[3].params.v");
  equal(xy.message, "dependency cycle: x -> y -> x");
  ok(xy.hint?.includes("${y.out}"), xy.hint);
  assertAt(xy, 6, 40);
  equal(
    issueAt(issues, "tasks[5].dependencies[0]").message,
    "task 'self' depends on itself (self -> self)",
  );
});

Deno.test("did you mean: keys at every level, methods, protocols, dependencies, inputs, params", () => {
  const issues = issuesOf(yaml(
    "name: m",
    "parms: {topic: x}",
    "tasks:",
    "  - id: first",
    "    method: python/exec",
    "    dependecies: []",
    "    retry: {max_attempt: 2}",
    "  - id: second",
    "    protocol: pyhton/v1",
    "    method: python/execute",
    "    params: {code: x}",
    "  - id: third",
    "    protocol: echo/v1",
    "    method: ech",
    "    depends_on: [frist]",
    "  - id: fourth",
    "    method: python/execute",
    "    params: {code: '${params.topic}', contxt: {}}",
    "    sandbox: {netwrok: true}",
  ));
  const hints = Object.fromEntries(issues.map((i) => [i.path, i.hint]));
  deepStrictEqual(hints, {
    "parms": "did you mean 'params'?",
    "tasks[0].method": "did you mean 'python/execute'?",
    "tasks[0].dependecies": "did you mean 'dependencies'?",
    "tasks[0].retry.max_attempt": "did you mean 'max_attempts'?",
    "tasks[1].protocol":
      "did you mean 'python/v1'? known protocols: echo/v1, python/v1, llm/v1, mcp/*",
    "tasks[2].method": "did you mean 'echo'? its methods: echo, ping, delay, error",
    "tasks[2].depends_on[0]": "did you mean 'first'?",
    "tasks[3].params.code": "declare it under `params:` at the top of the file",
    "tasks[3].params.contxt": "did you mean 'context'?",
    "tasks[3].sandbox.netwrok": "did you mean 'network'?",
  });
  assertAt(issueAt(issues, "parms"), 2, 1);
  assertAt(issueAt(issues, "tasks[3].params.contxt"), 18, 39);
  equal(issueAt(issues, "tasks[0].method").message, "unknown method 'python/exec'");
  ok(
    issuesOf(yaml("name: x", "tasks:", "  - {id: a, method: zzz}"))[0]!.hint!.includes(
      "known methods: echo, ping",
    ),
  );
  // a protocol's name in front of its method; a provider that only a config file declares
  equal(
    issuesOf(yaml("name: x", "tasks:", "  - {id: a, method: echo/error}"))[0]!.hint,
    "did you mean 'error'?",
  );
  ok(
    issuesOf(yaml("name: x", "tasks:", "  - {id: a, method: calc/add}"))[0]!.hint!.includes(
      "methods of other providers ('calc/...') come from the config file",
    ),
  );
});

Deno.test("references: syntax, unknown tasks, unknown inputs, names, unterminated", () => {
  const issues = issuesOf(yaml(
    "name: r",
    "params: {topic: x}",
    "tasks:",
    "  - {name: Data Set, method: echo}",
    "  - id: use",
    "    method: echo",
    "    params:",
    "      a: 'x ${nothere.result} y'",
    "      b: '${params.topik}'",
    "      c: '${use..x}'",
    "      d: ['${params}']",
    "      e: '${data_set.id} open ${data_set.result'",
    "      f: '${Data Set.result}'",
    "      g: '${data_set.rows[0]} ${params.topic}'",
  ));
  equal(
    issueAt(issues, "tasks[1].params.a").message,
    "reference ${nothere.result}: no task 'nothere'",
  );
  assertAt(issueAt(issues, "tasks[1].params.a"), 8, 13);
  const b = issueAt(issues, "tasks[1].params.b");
  equal(b.message, "reference ${params.topik}: no workflow input 'topik'");
  equal(b.hint, "did you mean 'topic'?");
  ok(issueAt(issues, "tasks[1].params.c").message.includes("expected a key after '.'"));
  ok(issueAt(issues, "tasks[1].params.d[0]").message.includes("must name an input"));
  equal(issueAt(issues, "tasks[1].params.e").message, "'${' without a closing '}'");
  assertAt(issueAt(issues, "tasks[1].params.e"), 12, 31);
  ok(
    issueAt(issues, "tasks[1].params.f").message.includes("is not a valid reference") ||
      issueAt(issues, "tasks[1].params.f").message.includes("unexpected"),
  );
  equal(issues.length, 6, JSON.stringify(issues, null, 1));
});

Deno.test("a name shared by several tasks cannot be referenced; duplicate ids are errors", () => {
  const issues = issuesOf(yaml(
    "name: d",
    "tasks:",
    "  - {id: a, name: Twin, method: echo}",
    "  - {id: b, name: Twin, method: echo}",
    "  - {id: c, method: echo, params: {v: '${Twin.x}'}}",
    "  - {id: a, method: echo}",
    "  - {name: 'C!', method: echo}",
    "  - {name: '!!!', method: echo}",
    "  - {method: echo}",
    "  - {id: 'bad id', method: echo}",
    "  - {id: params, method: echo}",
  ));
  ok(issueAt(issues, "tasks[2].params.v").message.includes("name of several tasks (a, b)"));
  const dup = issueAt(issues, "tasks[3].id");
  equal(dup.message, "duplicate task id 'a' (first used by tasks[0] at line 3)");
  assertAt(dup, 6, 10);
  ok(issueAt(issues, "tasks[4].name").message.startsWith("duplicate task id 'c'"));
  equal(issueAt(issues, "tasks[4].name").hint, "give the tasks distinct names or explicit ids");
  ok(issueAt(issues, "tasks[5].name").message.startsWith("cannot derive an id"));
  equal(issueAt(issues, "tasks[6]").message, "a task needs an id or a name");
  equal(issueAt(issues, "tasks[7].id").hint, "try 'bad_id'");
  ok(issueAt(issues, "tasks[8].id").message.includes("reserved"));
  equal(issues.length, 7, JSON.stringify(issues, null, 1));
});

Deno.test("the id of one task that is the name of another cannot be referenced, nor depended on", () => {
  const issues = issuesOf(yaml(
    "name: d",
    "tasks:",
    "  - {id: summary, method: echo}",
    "  - {id: b2, name: summary, method: echo}",
    "  - {id: c, method: echo, params: {v: '${summary.x}'}}",
    "  - {id: d, method: echo, depends_on: [summary]}",
    "  - {id: e, method: echo, params: {v: '${b2.x}'}}",
  ));
  const ref = issueAt(issues, "tasks[2].params.v");
  ok(ref.message.includes("'summary' is the id of one task and the name of another (b2)"));
  equal(ref.hint, "rename one of them: a reference cannot tell them apart");
  ok(issueAt(issues, "tasks[3].depends_on[0]").message.includes("id of one task"));
  equal(issues.length, 2, JSON.stringify(issues, null, 1));
});

Deno.test("params are checked against the method's schema; references pass", () => {
  const issues = issuesOf(yaml(
    "name: p",
    "tasks:",
    "  - {id: a, method: python/execute, params: {code: 42}}",
    "  - {id: b, method: python/execute}",
    "  - id: c",
    "    method: llm/chat",
    "    params: {model: m, messages: '${a.result}', temperature: -1}",
    "  - {id: d, protocol: mcp/files, method: tools/call, params: {arguments: {}}}",
    "  - {id: e, method: echo, params: {x: 1}, parameters: {x: 2}}",
    // a call's timeout, as a task's own: seconds or a duration
    "  - {id: f, method: python/execute, params: {code: x, timeout: 2s}}",
    "  - {id: g, method: llm/generate, params: {model: m, prompt: p, timeout: 1.5}}",
    "  - {id: h, method: python/execute, params: {code: x, timeout: 2 sec}}",
    "  - {id: i, method: python/execute, params: {code: x, timeout: 0s}}",
  ));
  equal(issueAt(issues, "tasks[0].params.code").message, "must be string, got integer");
  assertAt(issueAt(issues, "tasks[0].params.code"), 3, 52);
  equal(issueAt(issues, "tasks[1].params.code").message, "is required");
  assertAt(issueAt(issues, "tasks[1].params.code"), 4, 5);
  equal(issueAt(issues, "tasks[2].params.temperature").message, "must be >= 0");
  equal(issueAt(issues, "tasks[3].params.name").message, "is required");
  ok(issueAt(issues, "tasks[4].parameters").message.includes("both 'params' and 'parameters'"));
  equal(
    issueAt(issues, "tasks[7].params.timeout").message,
    'must be a number of seconds (> 0) or a duration such as "30s", "5m", "500ms"',
  );
  // (0 seconds is no timeout: refused, as a number 0 is)
  equal(issueAt(issues, "tasks[8].params.timeout").message.startsWith("must be a number"), true);
  equal(issues.length, 7, JSON.stringify(issues, null, 1));
});

Deno.test("wrong types and values are reported with readable messages", () => {
  const issues = issuesOf(yaml(
    "name: 5",
    "timeout: -1",
    "max_parallel: 0",
    "on_failure: stop",
    "params: {'bad key': 1}",
    "tasks:",
    "  - id: a",
    "    method: echo",
    "    priority: highest",
    "    retry: {max_attempts: 0, backoff: random, base_delay: -2}",
    "    continue_on_failure: 'yes'",
    "    dependencies: a",
    "  - just a string",
  ));
  const messages = Object.fromEntries(issues.map((i) => [i.path, i.message]));
  deepStrictEqual(messages, {
    "name": "must be a string, got an integer",
    "timeout": "must be more than 0 seconds",
    "max_parallel": "must be > 0",
    "on_failure": 'must be one of fail_fast, continue, got "stop"',
    "params.bad key": "key 'bad key' must use only letters, digits, _ and -",
    "tasks[0].priority": "must be urgent, high, normal, low or an integer",
    "tasks[0].retry.max_attempts": "must be >= 1",
    "tasks[0].retry.backoff": 'must be one of fixed, linear, exponential, got "random"',
    "tasks[0].retry.base_delay": "must not be negative",
    "tasks[0].continue_on_failure": "must be true or false, got a string",
    "tasks[0].dependencies": "must be a list, got a string",
    "tasks[1]": "must be a mapping, got a string",
  });
  assertAt(issueAt(issues, "tasks[0].retry.backoff"), 10, 39);
  // one item where a list goes: the hint writes the list
  deepStrictEqual(issueAt(issues, "tasks[0].dependencies").hint, "a list of one: [a]");
});

Deno.test("missing name and tasks, empty files, non-mappings", () => {
  const missing = issuesOf("description: nothing\n");
  deepStrictEqual(missing.map((i) => [i.path, i.message, i.line, i.column]), [
    ["name", "is required", 1, 1],
    ["tasks", "is required", 1, 1],
  ]);
  deepStrictEqual(issuesOf("").map((i) => i.message), ["the file is empty"]);
  deepStrictEqual(issuesOf("# only a comment\n").map((i) => i.message), ["the file is empty"]);
  deepStrictEqual(issuesOf("- a\n- b\n").map((i) => i.message), ["must be a mapping, got a list"]);
  deepStrictEqual(issuesOf("name: x\ntasks: []\n").map((i) => i.message), [
    "a workflow needs at least one task",
  ]);
});

Deno.test("YAML syntax errors report their own line:column", () => {
  const issues = issuesOf(yaml(
    "name: s",
    "tasks:",
    "  - id: a",
    "    method: echo",
    "    params: {a: [1, 2}",
  ));
  ok(issues.length >= 1);
  assertAt(issues[0]!, 5, 22);
  equal(issues[0]!.path, "");
  ok(!issues[0]!.message.includes("\n"), issues[0]!.message);
  const dupKey = issuesOf("name: a\nname: b\ntasks: []\n");
  assertAt(dupKey[0]!, 2, 1);
  ok(/unique/i.test(dupKey[0]!.message), dupKey[0]!.message);
  // an unclosed quote where it opens, not past the last line (where the parser finds out)
  for (const [quote, inside] of [['"', 'a \\"b\\" c'], ["'", "it''s"]]) {
    const unclosed = issuesOf(yaml(
      "name: q",
      "tasks:",
      "  - id: a",
      "    method: echo",
      `    params: {message: ${quote}${inside} never closed}`,
      "  - id: b",
      "    method: echo",
    ));
    assertAt(unclosed[0]!, 5, 23); // the opening quote
    ok(/Missing closing/.test(unclosed[0]!.message), unclosed[0]!.message);
  }
  const tabs = issuesOf("name: t\ntasks:\n\t- id: a\n");
  equal(tabs[0]!.line, 3);
  // one slip, not the dozens of errors the parser stumbles into after it
  const slip = issuesOf(yaml(
    "name: y",
    "tasks:",
    "  - id: a",
    "    method: echo",
    '    params: {code: result = {"a": 1, "s": "str"}}',
    "  - {id: b, method: echo}",
    "  - {id: c, method: echo}",
  ));
  equal(slip.length, 1, JSON.stringify(slip));
  assertAt(slip[0]!, 5, 29);
  ok(/\d+ later errors? follows? from it, not shown/.test(slip[0]!.hint ?? ""), slip[0]!.hint);
  // a `{` left open: where it opens, not the next line (where the parser found out), and
  // none of the errors the parser stumbles into after it
  for (
    const [value, opener] of [['{message: "x"', "{"], ['{message: "x", n: {a: 1}', "{"], [
      "[1, 2",
      "[",
    ]]
  ) {
    const open = issuesOf(yaml(
      "name: y",
      "tasks:",
      "  - id: a",
      "    method: echo",
      `    params: ${value}`,
      "  - id: b",
      "    method: echo",
      "    params: {message: y}",
    ));
    equal(open.length, 1, JSON.stringify(open));
    assertAt(open[0]!, 5, 13);
    ok(open[0]!.message.endsWith(`(this ${opener} is not closed before line 6)`), open[0]!.message);
  }
});

Deno.test("sandbox validation", () => {
  const issues = issuesOf(yaml(
    "name: s",
    "sandbox: docker",
    "tasks:",
    "  - id: a",
    "    method: echo",
    "    sandbox:",
    "      mode: jail",
    "      network: [example.com, 'db:5432', '*.example.com:443', '10.0.0.1:80']",
    "      read: /data",
    "      memory_mb: 1.5",
    "      cpu_seconds: 0",
    "      timeout: forever",
    "      rootfs: /",
    "  - {id: b, method: echo, sandbox: {network: yes}}",
  ));
  const messages = Object.fromEntries(issues.map((i) => [i.path, i.message]));
  deepStrictEqual(messages, {
    "sandbox":
      'must be "bwrap", "basic", "none" or {mode, network, read, write, memory_mb, cpu_seconds, timeout, max_processes, file_size_mb, open_files}',
    "tasks[0].sandbox.mode": 'must be one of bwrap, basic, none, got "jail"',
    "tasks[0].sandbox.network[0]":
      'must be host:port (e.g. "api.example.com:443" or "127.0.0.1:6379")',
    "tasks[0].sandbox.network[2]":
      "wildcards cannot be granted (list each host name, or use `network: true`)",
    "tasks[0].sandbox.network[3]": "only loopback addresses (127.x.x.x) can be granted by " +
      "address (grant a host name that resolves to it, or use `network: true`)",
    "tasks[0].sandbox.read": "must be a list, got a string",
    "tasks[0].sandbox.memory_mb": "must be an integer, got a number",
    "tasks[0].sandbox.cpu_seconds": "must be > 0",
    "tasks[0].sandbox.timeout":
      'must be a duration such as "30s", "5m", "1h", "500ms" or a number of seconds',
    "tasks[0].sandbox.rootfs": "unknown key 'rootfs'",
    "tasks[1].sandbox.network": 'must be true, false or a list of "host:port"',
  });
  assertAt(issueAt(issues, "tasks[0].sandbox.network[0]"), 8, 17);
  ok(issueAt(issues, "tasks[0].sandbox.rootfs").hint?.startsWith("allowed keys: mode, network"));
});

Deno.test("sandbox paths that can never be granted are errors of the file, not of the run", () => {
  const issues = issuesOf(yaml(
    "name: x",
    "sandbox: {read: [/]}",
    "tasks:",
    "  - id: a",
    "    method: echo",
    "    sandbox: {read: [/proc/self, /dev/shm/, data, /tmp], write: [/sys/../sys/kernel, /devices]}",
  ));
  deepStrictEqual(issues.map((i) => i.path).sort(), [
    "sandbox.read[0]",
    "tasks[0].sandbox.read[0]",
    "tasks[0].sandbox.read[1]",
    "tasks[0].sandbox.write[0]",
  ]);
  ok(
    issues.every((i) => /cannot be granted: it would cover the sandbox's own root/.test(i.message)),
  );
});

Deno.test("a misspelt choice gets a did-you-mean", () => {
  const issues = issuesOf(yaml(
    "name: x",
    "on_failure: continu",
    "tasks:",
    "  - id: a",
    "    method: echo",
    "    retry: {max_attempts: 2, backoff: exponentail}",
    "    priority: hihg",
  ));
  equal(issueAt(issues, "on_failure").hint, "did you mean 'continue'?");
  equal(issueAt(issues, "tasks[0].retry.backoff").hint, "did you mean 'exponential'?");
  // where a number may stand instead of the word
  equal(issueAt(issues, "tasks[0].priority").hint, "did you mean 'high'?");
});

Deno.test("integers too large to pass exactly are problems where they are written, with a hint to quote them; keys, quoted text, floats and 2^53 - 1 are not", () => {
  const issues = issuesOf(yaml(
    "name: big",
    "tasks:",
    "  - id: a",
    "    method: python/execute",
    "    params:",
    "      code: 'result = n'",
    "      context: {n: 1152921504606846977, ok: 9007199254740992, f: 1.5e300, s: '9007199254740993'}",
    "  - id: b",
    "    method: echo",
    "    params: {list: [1, -9007199254740993, 0x20000000000001], 9007199254740993: key}",
    "x-anchors: {big: 9007199254740993}", // (never passed on)
  ));
  equal(issues.length, 3, JSON.stringify(issues, null, 1));
  const n = issueAt(issues, "tasks[0].params.context.n");
  assertAt(n, 7, 20);
  equal(
    n.message,
    "the integer 1152921504606846977 is too large to pass exactly (it would become 1152921504606847000)",
  );
  ok(n.hint?.includes('quote it to pass it as text ("1152921504606846977")'), n.hint);
  assertAt(issueAt(issues, "tasks[1].params.list[1]"), 10, 24);
  assertAt(issueAt(issues, "tasks[1].params.list[2]"), 10, 43);
});

Deno.test("a reference to a task by a name with spaces says which id refers to it", () => {
  const issues = issuesOf(yaml(
    "name: r",
    "tasks:",
    "  - {name: Load Data, method: echo, params: {n: 1}}",
    '  - {id: b, method: echo, params: {m: "${Load Data.n}"}}',
  ));
  equal(issues.length, 1, JSON.stringify(issues, null, 1));
  const issue = issueAt(issues, "tasks[1].params.m");
  equal(issue.message, "'${Load Data.n}': unexpected ' ' at position 4");
  equal(issue.hint, "refer to task 'Load Data' by its id: ${load_data.n}");
});
