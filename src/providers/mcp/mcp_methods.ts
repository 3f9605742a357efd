/** The methods every MCP server offers as a provider (`mcp/<server>`). @module */

import type { ProtocolSpec } from "../provider.ts";

const none = { type: "object", additionalProperties: false } as const;

/** The `mcp/*` family: one protocol per configured MCP server. */
export const MCP_PROTOCOL_FAMILY: ProtocolSpec = {
  protocol: "mcp/*",
  description: "Model Context Protocol servers (`mcp/<server>`, `mcp/v1` = the only one)",
  methods: [
    { name: "ping", description: "Checks the server answers", params: none },
    { name: "tools/list", description: "Lists the server's tools", params: none },
    {
      name: "tools/call",
      description: "Calls a tool",
      params: {
        type: "object",
        properties: { name: { type: "string", minLength: 1 }, arguments: { type: "object" } },
        required: ["name"],
        additionalProperties: false,
      },
    },
    { name: "resources/list", description: "Lists resources", params: none },
    {
      name: "resources/read",
      description: "Reads a resource",
      params: {
        type: "object",
        properties: { uri: { type: "string", minLength: 1 } },
        required: ["uri"],
        additionalProperties: false,
      },
    },
    { name: "prompts/list", description: "Lists prompts", params: none },
    {
      name: "prompts/get",
      description: "Gets a prompt",
      params: {
        type: "object",
        properties: { name: { type: "string", minLength: 1 }, arguments: { type: "object" } },
        required: ["name"],
        additionalProperties: false,
      },
    },
  ],
};
