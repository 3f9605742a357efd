/** The methods and parameter schemas of `llm/v1` (served by Ollama). @module */

import type { JsonSchema } from "../../core/json_schema.ts";
import { TIMEOUT_PARAM_SCHEMA } from "../../core/duration.ts";
import type { ProtocolSpec } from "../provider.ts";

const common: Record<string, JsonSchema> = {
  model: { type: "string", minLength: 1 },
  options: { type: "object" },
  format: { anyOf: [{ type: "string", enum: ["json"] }, { type: "object" }] },
  keep_alive: { type: ["string", "number"] },
  num_ctx: { type: "integer", minimum: 1 },
  temperature: { type: "number", minimum: 0 },
  max_tokens: { type: "integer", minimum: 1 },
  top_p: { type: "number", minimum: 0, maximum: 1 },
  stream: { type: "boolean" },
  timeout: TIMEOUT_PARAM_SCHEMA,
};

const message: JsonSchema = {
  type: "object",
  properties: {
    role: { type: "string", enum: ["system", "user", "assistant", "tool"] },
    content: { type: "string" },
    images: { type: "array", items: { type: "string" } },
  },
  required: ["role", "content"],
};

const generate: JsonSchema = {
  type: "object",
  properties: {
    ...common,
    prompt: { type: "string" },
    system: { type: "string" },
    images: { type: "array", items: { type: "string" } },
  },
  required: ["model", "prompt"],
  additionalProperties: false,
};

/** `llm/v1`: chat, generate, vision and embeddings on Ollama's native API. */
export const LLM_PROTOCOL: ProtocolSpec = {
  protocol: "llm/v1",
  description: "Local LLMs through Ollama",
  methods: [
    {
      name: "llm/chat",
      description: "Chat completion",
      params: {
        type: "object",
        properties: {
          ...common,
          messages: { type: "array", items: message, minItems: 1 },
          tools: { type: "array" },
        },
        required: ["model", "messages"],
        additionalProperties: false,
      },
    },
    { name: "llm/generate", description: "Text completion of a prompt", params: generate },
    { name: "llm/complete", description: "Alias of llm/generate", params: generate },
    {
      name: "llm/vision",
      description: "Describe images (base64 or file paths relative to the workflow)",
      params: {
        ...generate,
        required: ["model", "prompt", "images"],
      },
    },
    {
      name: "llm/embed",
      description: "Embeddings of a text or a list of texts",
      params: {
        type: "object",
        properties: {
          model: { type: "string", minLength: 1 },
          input: { anyOf: [{ type: "string" }, { type: "array", items: { type: "string" } }] },
          truncate: { type: "boolean" },
          dimensions: { type: "integer", minimum: 1 },
          keep_alive: { type: ["string", "number"] },
          options: { type: "object" },
          timeout: TIMEOUT_PARAM_SCHEMA,
        },
        required: ["model", "input"],
        additionalProperties: false,
      },
    },
  ],
};
