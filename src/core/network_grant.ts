/**
 * `host:port` network grants of the Python sandbox (`sandbox: {network: [...]}`): what may be
 * granted one destination at a time. Shared by the loader (checked when a file is validated)
 * and the Python provider (which builds the forwarding).
 *
 * @module
 */

/** One granted destination, as declared. */
export interface NetworkGrant {
  /** A host name (lower-cased), `localhost`, or a 127.x.x.x address. */
  host: string;
  port: number;
}

/** Why an entry cannot be granted, with a hint. */
export interface GrantProblem {
  problem: string;
  hint: string;
}

const HOST_NAME = /^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*$/;
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** True for a dotted-quad IPv4 address. */
export function isIpv4(host: string): boolean {
  const m = IPV4.exec(host);
  return m !== null && m.slice(1).every((part) => Number(part) <= 255);
}

/** Parses one `host:port` entry, or says why it cannot be granted. */
export function parseNetworkGrant(entry: unknown): NetworkGrant | GrantProblem {
  if (typeof entry !== "string") {
    return { problem: "must be a string", hint: 'write "host:port", e.g. "api.example.com:443"' };
  }
  const url = /^([a-z][a-z0-9+.-]*):\/\/([^/:]+)(?::(\d+))?/i.exec(entry);
  if (url) {
    const example = `${url[2]}:${url[3] ?? (url[1]!.toLowerCase() === "http" ? 80 : 443)}`;
    return {
      problem: "a URL cannot be granted: grants are host:port",
      hint: `write "${example}"`,
    };
  }
  const colon = entry.lastIndexOf(":");
  const host = colon > 0 ? entry.slice(0, colon).toLowerCase() : "";
  const portText = colon > 0 ? entry.slice(colon + 1) : "";
  if (!host || !/^\d{1,5}$/.test(portText)) {
    return { problem: "must be host:port", hint: 'e.g. "api.example.com:443" or "127.0.0.1:6379"' };
  }
  const port = Number(portText);
  if (port < 1 || port > 65535) {
    return { problem: "the port must be 1-65535", hint: "use the service's TCP port" };
  }
  if (host.startsWith("[") || host.includes(":")) {
    return {
      problem: "IPv6 addresses cannot be granted one by one",
      hint: "grant a host name that resolves to it, or use `network: true`",
    };
  }
  if (host.includes("*")) {
    return {
      problem: "wildcards cannot be granted",
      hint: "list each host name, or use `network: true`",
    };
  }
  if (isIpv4(host)) {
    if (host.split(".").some((part) => part.length > 1 && part.startsWith("0"))) {
      return {
        problem: "leading zeros make an address octal to some resolvers",
        hint: "write the address without leading zeros, e.g. 127.0.0.1",
      };
    }
    if (!host.startsWith("127.")) {
      return {
        problem: "only loopback addresses (127.x.x.x) can be granted by address",
        hint: "grant a host name that resolves to it, or use `network: true`",
      };
    }
  } else if (!HOST_NAME.test(host)) {
    return { problem: "not a valid host name", hint: 'e.g. "api.example.com:443"' };
  } else if (/^\d+$/.test(host.slice(host.lastIndexOf(".") + 1)) || /(^|\.)0x/.test(host)) {
    // `2130706433`, `10.1`, `0x7f000001`, `999.1.1.1`: resolvers read these as addresses
    return {
      problem: "an address written as a name (numeric or hex labels) cannot be granted",
      hint: "write a 127.x.x.x address in dotted decimal, or a real host name",
    };
  }
  return { host, port };
}

/** Type guard for {@link parseNetworkGrant}'s failure. */
export function isGrantProblem(x: NetworkGrant | GrantProblem): x is GrantProblem {
  return "problem" in x;
}
