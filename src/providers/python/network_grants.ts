/**
 * Per-destination network grants (`sandbox: {network: ["host:port", ...]}`): the sandbox keeps
 * its own, empty network namespace; for each grant the runner listens inside it (on a loopback
 * address that the sandbox's /etc/hosts gives the granted name) and forwards each connection
 * over a Unix socket to {@link GrantProxy}, outside, which connects to the granted
 * destination and nothing else. A connection names its grant by number, never by address, so
 * whatever runs inside cannot reach anything that was not granted.
 *
 * @module
 */

import { GleitzeitError } from "../../core/errors.ts";
import {
  isGrantProblem,
  isIpv4,
  type NetworkGrant,
  parseNetworkGrant,
} from "../../core/network_grant.ts";

export type { NetworkGrant } from "../../core/network_grant.ts";

/** Where the runner listens for one grant, inside the sandbox. */
export interface GrantListener {
  /** Index into the grant list (what the runner sends the proxy). */
  id: number;
  /** Loopback address inside the sandbox. */
  addr: string;
  port: number;
}

/** How the sandbox is set up for a grant list. */
export interface GrantPlan {
  listeners: GrantListener[];
  /** The sandbox's /etc/hosts. */
  hosts: string;
  /** True when a listener needs a port below 1024. */
  lowPorts: boolean;
}

/**
 * Parses one `host:port` entry (see core/network_grant.ts), or fails with why it cannot be
 * granted. Host names resolve outside the sandbox, with the host's resolver, per connection.
 */
export function parseGrant(entry: unknown, where: string): NetworkGrant {
  const parsed = parseNetworkGrant(entry);
  if (!isGrantProblem(parsed)) return parsed;
  throw new GleitzeitError(
    "TASK_PARAMETER_ERROR",
    `sandbox (${where}): network grant ${JSON.stringify(entry)}: ${parsed.problem}`,
    { details: { where, entry }, hint: parsed.hint },
  );
}

/**
 * Assigns each grant a loopback address inside the sandbox: 127.x addresses keep their own,
 * `localhost` is 127.0.0.1, every other host name gets one of its own from 127.0.1.1 on
 * (and /etc/hosts says so). Grants to the same address and port share one listener.
 */
export function planGrants(grants: readonly NetworkGrant[]): GrantPlan {
  const names = new Map<string, string>();
  const listeners: GrantListener[] = [];
  const taken = new Set<string>();
  let next = 0;
  // Names get addresses no grant names literally.
  const literal = new Set(grants.filter((g) => isIpv4(g.host)).map((g) => g.host));
  for (const [id, grant] of grants.entries()) {
    let addr: string;
    if (isIpv4(grant.host)) addr = grant.host;
    else if (grant.host === "localhost") addr = "127.0.0.1";
    else {
      addr = names.get(grant.host) ?? "";
      if (!addr) {
        do {
          addr = `127.0.${1 + Math.floor(next / 250)}.${1 + (next % 250)}`;
          next++;
        } while (literal.has(addr));
        names.set(grant.host, addr);
      }
    }
    const key = `${addr}:${grant.port}`;
    if (taken.has(key)) continue;
    taken.add(key);
    listeners.push({ id, addr, port: grant.port });
  }
  const lines = ["127.0.0.1\tlocalhost"];
  for (const [name, addr] of names) lines.push(`${addr}\t${name}`);
  return {
    listeners,
    hosts: lines.join("\n") + "\n",
    lowPorts: listeners.some((l) => l.port < 1024),
  };
}

const HEADER_MAX = 16;

/**
 * Connections one task may have open through its grants at once: each costs the orchestrator
 * two descriptors, which a task must not be able to exhaust. Beyond it, a new connection is
 * closed at once (the task sees a reset).
 */
export const MAX_GRANT_CONNECTIONS = 256;

/**
 * The outside end: a Unix socket the sandbox's forwarder connects to. Each connection starts
 * with `<grant number>\n`; the proxy connects to that grant's destination, answers `1` (or `0`
 * when it cannot connect, then closes), and copies bytes both ways until both sides are done.
 */
export class GrantProxy {
  readonly path: string;
  #listener: Deno.Listener;
  #grants: readonly NetworkGrant[];
  #conns = new Set<Deno.Conn>();
  /** Connections from inside the sandbox being served. */
  #inside = 0;
  #serving: Promise<void>;
  /** Granted destinations that could not be reached, and why (the first few). */
  readonly failures: string[] = [];

  private constructor(path: string, listener: Deno.Listener, grants: readonly NetworkGrant[]) {
    this.path = path;
    this.#listener = listener;
    this.#grants = grants;
    this.#serving = this.#serve();
  }

  /** Listens on `path` (a Unix socket; its directory must exist). */
  static open(path: string, grants: readonly NetworkGrant[]): GrantProxy {
    if (new TextEncoder().encode(path).length > 107) {
      throw new GleitzeitError(
        "SANDBOX_UNAVAILABLE",
        `the sandbox's network socket path is too long (${path})`,
        { hint: "set a shorter temporary directory (TMPDIR)" },
      );
    }
    const listener = Deno.listen({ transport: "unix", path });
    return new GrantProxy(path, listener, grants);
  }

  async #serve(): Promise<void> {
    try {
      for await (const conn of this.#listener) {
        if (this.#inside >= MAX_GRANT_CONNECTIONS) {
          close(conn);
          continue;
        }
        this.#inside++;
        this.#conns.add(conn);
        this.#handle(conn).finally(() => {
          this.#inside--;
          this.#conns.delete(conn);
        });
      }
    } catch {
      // closed
    }
  }

  async #handle(inside: Deno.Conn): Promise<void> {
    let outside: Deno.TcpConn | undefined;
    try {
      const id = await readHeader(inside);
      const grant = id === undefined ? undefined : this.#grants[id];
      if (!grant) return;
      try {
        outside = await Deno.connect({ hostname: grant.host, port: grant.port });
      } catch (e) {
        // the task sees a reset connection; its error, should it fail, says why
        const why = `${grant.host}:${grant.port}: ${connectError(e)}`;
        if (this.failures.length < 5 && !this.failures.includes(why)) this.failures.push(why);
        await inside.write(new Uint8Array([0x30])).catch(() => 0);
        return;
      }
      this.#conns.add(outside);
      await inside.write(new Uint8Array([0x31]));
      await Promise.all([pump(inside, outside), pump(outside, inside)]);
    } catch {
      // a side went away: close both
    } finally {
      close(inside);
      if (outside) {
        this.#conns.delete(outside);
        close(outside);
      }
    }
  }

  /** Stops listening and drops every open connection. */
  async close(): Promise<void> {
    try {
      this.#listener.close();
    } catch {
      // already closed
    }
    for (const conn of this.#conns) close(conn);
    this.#conns.clear();
    await this.#serving;
  }
}

/** Why a connection to a granted destination failed, in a few words. */
function connectError(e: unknown): string {
  if (e instanceof Deno.errors.ConnectionRefused) return "connection refused";
  if (e instanceof Deno.errors.TimedOut) return "timed out";
  const message = e instanceof Error ? e.message : String(e);
  if (/lookup|resolve|name or service|no address/i.test(message)) {
    return "the name does not resolve";
  }
  return message.split("\n")[0]!.slice(0, 200);
}

/** Reads `<digits>\n` byte by byte (nothing past the newline belongs to the header). */
async function readHeader(conn: Deno.Conn): Promise<number | undefined> {
  const one = new Uint8Array(1);
  let text = "";
  while (text.length < HEADER_MAX) {
    const n = await conn.read(one);
    if (n === null) return undefined;
    if (one[0] === 0x0a) return /^\d+$/.test(text) ? Number(text) : undefined;
    text += String.fromCharCode(one[0]);
  }
  return undefined;
}

/** Copies `from` to `to` until end of stream, then half-closes `to`. */
async function pump(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(64 * 1024);
  try {
    for (;;) {
      const n = await from.read(buf);
      if (n === null) break;
      let off = 0;
      while (off < n) off += await to.write(buf.subarray(off, n));
    }
  } finally {
    try {
      await to.closeWrite();
    } catch {
      // already closed
    }
  }
}

function close(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}
