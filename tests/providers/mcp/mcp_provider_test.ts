/**
 * MCP servers as providers, against the real `@modelcontextprotocol/server-everything`
 * from the npm registry: tools, resources, prompts, one tool's output as another's input,
 * tool errors, `mcp/v1` resolution, a server killed mid-use.
 */

import { assertEquals, assertOk, rejects } from "../jsonrpc/assert.ts";
import { GleitzeitError } from "../../../src/core/errors.ts";
import { registerConfiguredProviders } from "../../../src/config/providers_config.ts";
import { ProviderRegistry } from "../../../src/providers/registry.ts";
import { ctx } from "../plugin/helpers.ts";
import { everythingServer } from "./everything_server.ts";

async function mcpRegistry(names: string[]): Promise<ProviderRegistry> {
  const server = await everythingServer();
  const registry = new ProviderRegistry();
  await registerConfiguredProviders(registry, {
    mcp_servers: names.map((name) => ({ name, ...server })),
  }, { baseDir: Deno.cwd() });
  return registry;
}

type ToolResult = {
  content: { type: string; text?: string }[];
  text: string;
  structuredContent?: unknown;
};

Deno.test("MCP everything server: ping and tools/list through mcp/v1 (the only server)", async () => {
  const registry = await mcpRegistry(["everything"]);
  try {
    const t0 = performance.now();
    const pong = await registry.call("mcp/v1", "ping", {}, ctx()) as {
      ok: boolean;
      server: { name: string };
    };
    const startMs = performance.now() - t0;
    assertEquals(pong.ok, true);
    assertEquals(pong.server.name, "mcp-servers/everything");
    const { tools } = await registry.call("mcp/v1", "tools/list", {}, ctx()) as {
      tools: { name: string; inputSchema: unknown }[];
    };
    const names = tools.map((t) => t.name);
    for (const n of ["echo", "get-sum", "get-structured-content"]) {
      assertOk(names.includes(n), `${n} in ${names}`);
    }
    const s = registry.stats().find((x) => x.id === "mcp:everything")!;
    assertEquals([s.protocol, s.status, s.calls], ["mcp/everything", "healthy", 2]);
    assertOk(
      (s.info!.stderrTail as string[]).some((l) => l.includes("Starting")),
      "server stderr kept",
    );
    const [h] = await registry.health("mcp:everything");
    assertEquals(h!.report.healthy, true);
    console.log(
      `MCP server start + handshake + ping: ${startMs.toFixed(0)} ms; ${names.length} tools`,
    );
  } finally {
    await registry.close();
  }
});

Deno.test("MCP everything server: get-sum's output passed into echo; structured content; params validated", async () => {
  const registry = await mcpRegistry(["everything"]);
  try {
    const sum = await registry.call("mcp/everything", "tools/call", {
      name: "get-sum",
      arguments: { a: 2, b: 3 },
    }, ctx()) as ToolResult;
    assertEquals(sum.text, "The sum of 2 and 3 is 5.");
    assertEquals(sum.content, [{ type: "text", text: "The sum of 2 and 3 is 5." }]);
    const echo = await registry.call("mcp/everything", "tools/call", {
      name: "echo",
      arguments: { message: sum.text },
    }, ctx()) as ToolResult;
    assertEquals(echo.text, "Echo: The sum of 2 and 3 is 5.");
    const weather = await registry.call("mcp/v1", "tools/call", {
      name: "get-structured-content",
      arguments: { location: "New York" },
    }, ctx()) as ToolResult;
    assertOk(typeof weather.structuredContent === "object");
    assertEquals(
      registry.validateParams("mcp/everything", "tools/call", { arguments: {} })[0]!.message,
      "is required",
    );
    const bad = await rejects(
      registry.call("mcp/v1", "tools/call", { name: "get-sum", extra: 1 }, ctx()),
    ) as GleitzeitError;
    assertEquals(bad.code, "INVALID_PARAMS");
  } finally {
    await registry.close();
  }
});

Deno.test("MCP everything server: a tool result with isError fails the task (TASK_EXECUTION_FAILED)", async () => {
  const registry = await mcpRegistry(["everything"]);
  try {
    const e1 = await rejects(
      registry.call("mcp/v1", "tools/call", { name: "get-sum", arguments: { a: "x" } }, ctx()),
    ) as GleitzeitError;
    assertEquals([e1.code, e1.retryable], ["TASK_EXECUTION_FAILED", false]);
    assertOk(e1.message.startsWith("mcp/everything tool get-sum failed:"), e1.message);
    assertEquals((e1.details.result as { isError: boolean }).isError, true);
    const e2 = await rejects(
      registry.call("mcp/v1", "tools/call", { name: "no-such-tool", arguments: {} }, ctx()),
    ) as GleitzeitError;
    assertEquals(e2.code, "TASK_EXECUTION_FAILED");
    assertOk(e2.message.includes("no-such-tool"), e2.message);
  } finally {
    await registry.close();
  }
});

Deno.test("MCP everything server: resources and prompts", async () => {
  const registry = await mcpRegistry(["everything"]);
  try {
    const { resources } = await registry.call("mcp/v1", "resources/list", {}, ctx()) as {
      resources: { uri: string; name: string }[];
    };
    assertOk(resources.length > 0);
    const doc = resources.find((r) => r.name.endsWith(".md")) ?? resources[0]!;
    const read = await registry.call("mcp/v1", "resources/read", { uri: doc.uri }, ctx()) as {
      contents: { uri: string }[];
      text: string;
    };
    assertEquals(read.contents[0]!.uri, doc.uri);
    assertOk(read.text.length > 0);
    const { prompts } = await registry.call("mcp/v1", "prompts/list", {}, ctx()) as {
      prompts: { name: string }[];
    };
    assertOk(prompts.some((p) => p.name === "args-prompt"));
    const prompt = await registry.call("mcp/v1", "prompts/get", {
      name: "args-prompt",
      arguments: { city: "Berlin" },
    }, ctx()) as { messages: { content: { text: string } }[] };
    assertOk(JSON.stringify(prompt.messages).includes("Berlin"));
    const missing = await rejects(
      registry.call("mcp/v1", "resources/read", { uri: "demo://nope/nothing" }, ctx()),
    ) as GleitzeitError;
    assertOk(
      missing instanceof GleitzeitError && typeof missing.details.rpcCode === "number",
      String(missing),
    );
  } finally {
    await registry.close();
  }
});

Deno.test("MCP: mcp/v1 names the choices when several servers exist, hints at the config when none", async () => {
  const two = await mcpRegistry(["alpha", "beta"]);
  try {
    const e = await rejects(two.call("mcp/v1", "ping", {}, ctx())) as GleitzeitError;
    assertEquals(e.code, "PROVIDER_NOT_FOUND");
    assertOk(e.message.includes("mcp/alpha, mcp/beta"), e.message);
    const u = await rejects(two.call("mcp/gamma", "ping", {}, ctx())) as GleitzeitError;
    assertOk(u.message.includes("no MCP server named gamma (configured: alpha, beta)"), u.message);
    assertEquals(
      await two.call("mcp/beta", "ping", {}, ctx()).then((r) => (r as { ok: boolean }).ok),
      true,
    );
    assertEquals(two.stats().map((s) => [s.id, s.status]).sort(), [["mcp:alpha", "not_started"], [
      "mcp:beta",
      "healthy",
    ]]);
  } finally {
    await two.close();
  }
  const none = new ProviderRegistry();
  await registerConfiguredProviders(none, {}, { baseDir: "." });
  const e = await rejects(none.call("mcp/v1", "ping", {}, ctx())) as GleitzeitError;
  assertEquals(e.code, "PROVIDER_NOT_FOUND");
  assertOk(e.message.includes("no MCP server is configured"), e.message);
  assertOk(e.hint?.includes("mcp_servers:"), e.hint);
  await none.close();
});

Deno.test("MCP: a server killed mid-use fails the call as retryable; the next call restarts it", async () => {
  const registry = await mcpRegistry(["everything"]);
  try {
    await registry.call("mcp/v1", "ping", {}, ctx());
    const pid = registry.stats()[0]!.info!.pid as number;
    const slow = registry.call("mcp/v1", "tools/call", {
      name: "trigger-long-running-operation",
      arguments: { duration: 5, steps: 5 },
    }, ctx());
    await new Promise((r) => setTimeout(r, 200));
    Deno.kill(pid, "SIGKILL");
    const e = await rejects(slow) as GleitzeitError;
    assertEquals([e.code, e.retryable], ["PROVIDER_UNAVAILABLE", true]);
    let again: ToolResult | undefined;
    for (let attempt = 1; attempt <= 3 && !again; attempt++) {
      try {
        again = await registry.call("mcp/v1", "tools/call", {
          name: "echo",
          arguments: { message: "back" },
        }, ctx()) as ToolResult;
      } catch (err) {
        if (!(err instanceof GleitzeitError) || !err.retryable) throw err;
      }
    }
    assertEquals(again?.text, "Echo: back");
    const info = registry.stats()[0]!.info!;
    assertOk(info.pid !== pid);
    assertEquals(info.restarts, 1);
  } finally {
    await registry.close();
  }
});
