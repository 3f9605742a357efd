/**
 * `sandbox: {network: ["host:port"]}`: parsing, address planning, policy merging, and real
 * connections through the forwarding proxy from inside bubblewrap (Redis on 127.0.0.1:6379,
 * an HTTP server started here).
 */

import assert from "node:assert/strict";
import { isGrantProblem, parseNetworkGrant } from "../../../src/core/network_grant.ts";
import { GleitzeitError } from "../../../src/core/errors.ts";
import { MAX_GRANT_CONNECTIONS, planGrants } from "../../../src/providers/python/network_grants.ts";
import { PythonProvider } from "../../../src/providers/python/python_provider.ts";
import { resolveSandboxPolicy } from "../../../src/providers/python/sandbox_policy.ts";
import { DEFAULT_LIMITS } from "../../../src/providers/python/sandbox_policy.ts";
import { requireRedis } from "./escape_suite.ts";
import { makeCtx } from "./helpers.ts";

Deno.test("network grants: what can be granted one destination at a time", () => {
  assert.deepEqual(parseNetworkGrant("API.Example.com:443"), {
    host: "api.example.com",
    port: 443,
  });
  assert.deepEqual(parseNetworkGrant("127.0.0.1:6379"), { host: "127.0.0.1", port: 6379 });
  assert.deepEqual(parseNetworkGrant("localhost:8080"), { host: "localhost", port: 8080 });
  const refused: [unknown, RegExp][] = [
    ["example.com", /host:port/],
    ["example.com:0", /1-65535/],
    ["example.com:70000", /1-65535/],
    ["*.example.com:443", /wildcards/],
    ["10.0.0.5:80", /loopback/],
    ["[::1]:80", /IPv6/],
    ["exa mple.com:80", /host name/],
    ["2130706433:80", /address written as a name/],
    ["0x7f000001:6379", /address written as a name/],
    ["10.1:80", /address written as a name/],
    ["999.1.1.1:80", /address written as a name/],
    ["0177.0.0.1:80", /address written as a name/],
    ["127.0.0.01:80", /leading zeros/],
    [443, /string/],
    ["http://example.com:80", /a URL cannot be granted/],
    ["https://api.example.com/v1", /a URL cannot be granted/],
  ];
  for (const [entry, why] of refused) {
    const parsed = parseNetworkGrant(entry);
    assert.ok(isGrantProblem(parsed), `${entry} must be refused`);
    assert.match(parsed.problem, why, String(entry));
  }
  const url = parseNetworkGrant("https://api.example.com/v1");
  assert.ok(isGrantProblem(url) && url.hint === 'write "api.example.com:443"');
});

Deno.test("network grants: loopback addresses inside the sandbox and its /etc/hosts", () => {
  const plan = planGrants([
    { host: "127.0.0.1", port: 6379 },
    { host: "localhost", port: 6379 }, // the same listener as the first
    { host: "api.example.com", port: 443 },
    { host: "127.0.1.1", port: 80 }, // a literal address: names skip it
    { host: "db.internal", port: 5432 },
    { host: "api.example.com", port: 8443 },
  ]);
  assert.deepEqual(plan.listeners, [
    { id: 0, addr: "127.0.0.1", port: 6379 },
    { id: 2, addr: "127.0.1.2", port: 443 },
    { id: 3, addr: "127.0.1.1", port: 80 },
    { id: 4, addr: "127.0.1.3", port: 5432 },
    { id: 5, addr: "127.0.1.2", port: 8443 },
  ]);
  assert.equal(
    plan.hosts,
    "127.0.0.1\tlocalhost\n127.0.1.2\tapi.example.com\n127.0.1.3\tdb.internal\n",
  );
  assert.equal(plan.lowPorts, true);
  assert.equal(planGrants([{ host: "localhost", port: 8080 }]).lowPorts, false);
});

Deno.test("network grants: a list adds to the workflow's; true/false replace", () => {
  const defaults = { mode: "bwrap" as const, limits: DEFAULT_LIMITS };
  const both = resolveSandboxPolicy(defaults, {
    workflow: { network: ["127.0.0.1:6379"] },
    task: { network: ["localhost:8080"] },
  }, "/");
  assert.equal(both.network, false);
  assert.deepEqual(both.grants.map((g) => `${g.host}:${g.port}`), [
    "127.0.0.1:6379",
    "localhost:8080",
  ]);
  const off = resolveSandboxPolicy(defaults, {
    workflow: { network: ["127.0.0.1:6379"] },
    task: { network: false },
  }, "/");
  assert.deepEqual([off.network, off.grants], [false, []]);
  const narrowed = resolveSandboxPolicy(defaults, {
    workflow: { network: true },
    task: { network: ["localhost:8080"] },
  }, "/");
  assert.equal(narrowed.network, false, "a task's list narrows the workflow's whole network");
  assert.equal(narrowed.grants.length, 1);
  assert.throws(
    () => resolveSandboxPolicy(defaults, { task: { network: ["10.1.2.3:80"] } }, "/"),
    (e: unknown) => e instanceof GleitzeitError && e.code === "TASK_PARAMETER_ERROR",
  );
});

Deno.test("[bwrap] a grant reaches its destination and nothing else", async () => {
  await requireRedis();
  // Pool of 1: a task with grants must still run (cold), next to warm ones.
  const provider = new PythonProvider({ sandbox: "bwrap", poolSize: 1 });
  const code = `
import os, socket
s = socket.create_connection(("127.0.0.1", 6379), timeout=5)
s.sendall(b"PING\\r\\n")
pong = s.recv(16).decode()
s.close()
refused = []
for host, port in [("127.0.0.1", 5432), ("127.0.0.1", 6380), ("127.0.0.2", 6379)]:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError as e:
        refused.append(type(e).__name__)
caps = {l.split(":")[0]: l.split()[1] for l in open("/proc/self/status") if l.startswith("Cap")}
result = {"pong": pong, "refused": refused, "uid": os.getuid(), "eff": caps["CapEff"],
          "prm": caps["CapPrm"]}
`;
  try {
    const r = await provider.call(
      "python/execute",
      { code },
      makeCtx({ sandbox: { task: { network: ["127.0.0.1:6379"] } } }),
    ) as { result: Record<string, unknown> };
    assert.equal(r.result.pong, "+PONG\r\n");
    assert.deepEqual(r.result.refused, [
      "ConnectionRefusedError",
      "ConnectionRefusedError",
      "ConnectionRefusedError",
    ]);
    if (Deno.uid() === 0) assert.equal(r.result.uid, 65534);
    assert.equal(r.result.eff, "0000000000000000", "no capabilities left for user code");
    assert.equal(r.result.prm, "0000000000000000");
    // The same provider's warm path is untouched by it.
    const warm = await provider.call("python/execute", { code: "result = 2" }, makeCtx());
    assert.equal((warm as { result: number }).result, 2);
    // A destination outside the grants: the error names them and how to add one, and is not
    // retried (it would be refused again)
    const outside = await provider.call(
      "python/execute",
      { code: 'import socket\nsocket.create_connection(("127.0.0.1", 5432), timeout=2)' },
      makeCtx({ sandbox: { task: { network: ["127.0.0.1:6379"] } } }),
    ).then(() => undefined, (e) => e);
    assert.ok(outside instanceof GleitzeitError, String(outside));
    assert.match(outside.message, /ConnectionRefusedError/);
    assert.match(outside.hint ?? "", /reaches only its network grants \(127\.0\.0\.1:6379\)/);
    assert.equal(outside.retryable, false);
  } finally {
    await provider.close();
  }
});

Deno.test("[bwrap] a granted host name: resolved inside to its own loopback address, 1 MiB each way", async () => {
  // An echo server on the host: answers with the request body, reversed end to end.
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (req) => {
      const body = new Uint8Array(await req.arrayBuffer());
      return new Response(body.reverse());
    },
  );
  const port = server.addr.port;
  const provider = new PythonProvider({ sandbox: "bwrap" });
  const code = `
import socket, urllib.request
body = bytes(range(256)) * 4096
req = urllib.request.Request("http://localhost:${port}/echo", data=body, method="POST")
with urllib.request.urlopen(req, timeout=10) as resp:
    back = resp.read()
result = {
    "same": back == body[::-1],
    "size": len(back),
    "named": socket.gethostbyname("db.internal"),
    "localhost": socket.gethostbyname("localhost"),
}
`;
  try {
    const r = await provider.call(
      "python/execute",
      { code },
      makeCtx({ sandbox: { task: { network: [`localhost:${port}`, "db.internal:5432"] } } }),
    ) as { result: Record<string, unknown> };
    assert.deepEqual(r.result, {
      same: true,
      size: 1024 * 1024,
      named: "127.0.1.1",
      localhost: "127.0.0.1",
    });
  } finally {
    await provider.close();
    await server.shutdown();
  }
});

Deno.test("[bwrap] a granted destination that refuses resets the connection; low ports bind", async () => {
  const provider = new PythonProvider({ sandbox: "bwrap" });
  // Port 1 (below 1024: the runner needs its capability to listen) has no server outside.
  const code = `
import socket
try:
    # the reset may come before connect() has reported success
    s = socket.create_connection(("127.0.0.1", 1), timeout=5)
    s.sendall(b"hello")
    data = s.recv(10)
    outcome = "eof" if data == b"" else "data"
except OSError as e:
    outcome = type(e).__name__
result = outcome
`;
  try {
    const r = await provider.call(
      "python/execute",
      { code },
      makeCtx({ sandbox: { task: { network: ["127.0.0.1:1"] } } }),
    ) as { result: string };
    assert.ok(["ConnectionResetError", "eof"].includes(r.result), r.result);
  } finally {
    await provider.close();
  }
});

Deno.test("[bwrap] a task failing on a granted destination that refuses or does not resolve: its error says which and why", async () => {
  const provider = new PythonProvider({ sandbox: "bwrap" });
  // Port 1 has no server outside; the .invalid top-level domain never resolves.
  const code = `
import socket
for host, port in (("127.0.0.1", 1), ("gleitzeit-test.invalid", 80)):
    try:
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(b"hello")
        s.recv(10)
    except OSError:
        pass
socket.create_connection(("127.0.0.1", 1), timeout=5).recv(10)
`;
  try {
    const e = await provider.call(
      "python/execute",
      { code },
      makeCtx({
        sandbox: { task: { network: ["127.0.0.1:1", "gleitzeit-test.invalid:80"] } },
      }),
    ).then(() => undefined, (x) => x);
    assert.ok(e instanceof GleitzeitError, String(e));
    assert.deepEqual(e.details.unreachable, [
      "127.0.0.1:1: connection refused",
      "gleitzeit-test.invalid:80: the name does not resolve",
    ]);
    assert.match(
      e.hint ?? "",
      /a granted destination could not be reached: 127\.0\.0\.1:1: connection refused; gleitzeit-test\.invalid:80: the name does not resolve/,
    );
    // the same where the task then hangs until its timeout
    const hung = await provider.call(
      "python/execute",
      {
        code: "import socket, time\ntry:\n    socket.create_connection(('127.0.0.1', 1), " +
          "timeout=5).recv(10)\nexcept OSError:\n    pass\ntime.sleep(60)",
        timeout: 3,
      },
      makeCtx({ sandbox: { task: { network: ["127.0.0.1:1"] } } }),
    ).then(() => undefined, (x) => x);
    assert.ok(hung instanceof GleitzeitError, String(hung));
    assert.equal(hung.code, "TASK_TIMEOUT");
    assert.deepEqual(hung.details.unreachable, ["127.0.0.1:1: connection refused"]);
  } finally {
    await provider.close();
  }
});

Deno.test("[bwrap] the sandbox user can read /etc's shared files (CA certificates for HTTPS)", async () => {
  for (const poolSize of [0, 1]) {
    const provider = new PythonProvider({ sandbox: "bwrap", poolSize });
    try {
      const r = await provider.call(
        "python/execute",
        {
          code: "import os, ssl\nresult = [ssl.create_default_context().cert_store_stats()" +
            "['x509_ca'], os.access('/etc/passwd', os.R_OK), os.getuid()]",
        },
        makeCtx(),
      ) as { result: [number, boolean, number] };
      assert.ok(r.result[0] > 0, `CA certificates visible (pool ${poolSize})`);
      assert.equal(r.result[1], true);
      if (Deno.uid() === 0) assert.equal(r.result[2], 65534);
    } finally {
      await provider.close();
    }
  }
});

Deno.test("[bwrap] a task cannot hold more than MAX_GRANT_CONNECTIONS through its grants", async () => {
  // A server that accepts and says nothing: every granted connection stays open.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) held.push(conn);
  })();
  const port = (listener.addr as Deno.NetAddr).port;
  const provider = new PythonProvider({ sandbox: "bwrap" });
  const code = `
import os, socket
path = "/gleitzeit/net.sock"  # the proxy's socket, bound in there
acked, refused, socks = 0, 0, []
for i in range(${MAX_GRANT_CONNECTIONS + 44}):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(path)
        s.sendall(b"0\\n")
        answer = s.recv(1)
    except OSError:  # closed at once: reset, broken pipe
        answer = b""
    if answer == b"1":
        acked += 1
        socks.append(s)
    else:
        refused += 1
        s.close()
result = [acked, refused]
`;
  try {
    const r = await provider.call(
      "python/execute",
      { code },
      makeCtx({ sandbox: { task: { network: [`127.0.0.1:${port}`], open_files: 2048 } } }),
    ) as { result: [number, number] };
    assert.deepEqual(r.result, [MAX_GRANT_CONNECTIONS, 44]);
  } finally {
    await provider.close();
    for (const c of held) c.close();
    listener.close();
    await accepting.catch(() => {});
  }
});

Deno.test("[bwrap] 200 connections open at once through one grant, and the grant still works after", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    for await (const conn of listener) {
      (async () => {
        const buf = new Uint8Array(1024);
        try {
          for (;;) {
            const n = await conn.read(buf);
            if (n === null) break;
            await conn.write(buf.subarray(0, n));
          }
        } catch {
          // closed
        } finally {
          try {
            conn.close();
          } catch {
            // closed already
          }
        }
      })();
    }
  })();
  const port = (listener.addr as Deno.NetAddr).port;
  const provider = new PythonProvider({ sandbox: "bwrap" });
  const code = `
import socket
socks = [socket.create_connection(("127.0.0.1", ${port}), timeout=10) for _ in range(200)]
for i, s in enumerate(socks):
    s.sendall(b"%d;" % i)
echoed = sum(1 for i, s in enumerate(socks) if s.recv(16) == b"%d;" % i)
for s in socks:
    s.close()
late = socket.create_connection(("127.0.0.1", ${port}), timeout=10)
late.sendall(b"late")
result = [echoed, late.recv(16).decode()]
`;
  try {
    const r = await provider.call(
      "python/execute",
      { code },
      makeCtx({ sandbox: { task: { network: [`127.0.0.1:${port}`] } } }),
    ) as { result: [number, string] };
    assert.deepEqual(r.result, [200, "late"]);
  } finally {
    await provider.close();
    listener.close();
    await serving.catch(() => {});
  }
});
