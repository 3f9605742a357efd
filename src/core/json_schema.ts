/**
 * A small JSON Schema validator for method parameter schemas (draft 2020-12 subset:
 * type, properties, required, additionalProperties, items, enum, const, anyOf, oneOf,
 * minimum/maximum, exclusiveMinimum/Maximum, minLength/maxLength, minItems/maxItems, pattern).
 * Providers in any language declare their params this way, so the registry needs a
 * validator that does not depend on how the schema was produced.
 *
 * @module
 */

/** A JSON Schema object. */
export type JsonSchema = {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: boolean | JsonSchema;
  items?: JsonSchema;
  enum?: unknown[];
  const?: unknown;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  pattern?: string;
  description?: string;
  default?: unknown;
  [key: string]: unknown;
};

/** One validation failure. */
export interface SchemaIssue {
  path: (string | number)[];
  message: string;
}

function typeOf(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return typeof v;
}

function matchesType(v: unknown, t: string): boolean {
  const actual = typeOf(v);
  if (t === "number") return actual === "number" || actual === "integer";
  return actual === t;
}

/**
 * Validates `value` against `schema`. A string value containing `${` is accepted for any
 * type, because references are substituted before the final check at run time.
 */
export function validateSchema(
  schema: JsonSchema,
  value: unknown,
  options: { allowReferences?: boolean } = {},
  path: (string | number)[] = [],
): SchemaIssue[] {
  const issues: SchemaIssue[] = [];
  if (options.allowReferences && typeof value === "string" && value.includes("${")) return issues;
  if (schema.anyOf || schema.oneOf) {
    const alts = (schema.anyOf ?? schema.oneOf)!;
    const ok = alts.some((s) => validateSchema(s, value, options, path).length === 0);
    if (!ok) {
      // (a description says what the forms are: "must be a number of seconds or ...")
      const forms = schema.description
        ? `must be ${schema.description}`
        : "does not match any allowed form";
      issues.push({ path, message: forms });
      return issues;
    }
  }
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (!types.some((t) => matchesType(value, t))) {
      issues.push({ path, message: `must be ${types.join(" or ")}, got ${typeOf(value)}` });
      return issues;
    }
  }
  if (schema.enum && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(value))) {
    issues.push({
      path,
      message: `must be one of ${schema.enum.map((e) => JSON.stringify(e)).join(", ")}`,
    });
  }
  if ("const" in schema && JSON.stringify(schema.const) !== JSON.stringify(value)) {
    issues.push({ path, message: `must be ${JSON.stringify(schema.const)}` });
  }
  if (typeof value === "number") {
    if (schema.minimum !== undefined && value < schema.minimum) {
      issues.push({ path, message: `must be >= ${schema.minimum}` });
    }
    if (schema.maximum !== undefined && value > schema.maximum) {
      issues.push({ path, message: `must be <= ${schema.maximum}` });
    }
    if (schema.exclusiveMinimum !== undefined && value <= schema.exclusiveMinimum) {
      issues.push({ path, message: `must be > ${schema.exclusiveMinimum}` });
    }
    if (schema.exclusiveMaximum !== undefined && value >= schema.exclusiveMaximum) {
      issues.push({ path, message: `must be < ${schema.exclusiveMaximum}` });
    }
  }
  if (typeof value === "string") {
    if (schema.minLength !== undefined && value.length < schema.minLength) {
      issues.push({ path, message: `must have at least ${schema.minLength} characters` });
    }
    if (schema.maxLength !== undefined && value.length > schema.maxLength) {
      issues.push({ path, message: `must have at most ${schema.maxLength} characters` });
    }
    if (schema.pattern !== undefined && !new RegExp(schema.pattern, "u").test(value)) {
      issues.push({ path, message: `must match /${schema.pattern}/` });
    }
  }
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems) {
      issues.push({ path, message: `must have at least ${schema.minItems} items` });
    }
    if (schema.maxItems !== undefined && value.length > schema.maxItems) {
      issues.push({ path, message: `must have at most ${schema.maxItems} items` });
    }
    if (schema.items) {
      value.forEach((v, i) =>
        issues.push(...validateSchema(schema.items!, v, options, [...path, i]))
      );
    }
  }
  if (typeOf(value) === "object") {
    const obj = value as Record<string, unknown>;
    for (const key of schema.required ?? []) {
      if (!(key in obj) || obj[key] === undefined) {
        issues.push({ path: [...path, key], message: `is required` });
      }
    }
    const props = schema.properties ?? {};
    for (const [key, v] of Object.entries(obj)) {
      const sub = props[key];
      if (sub) issues.push(...validateSchema(sub, v, options, [...path, key]));
      else if (schema.additionalProperties === false) {
        const known = Object.keys(props);
        issues.push({
          path: [...path, key],
          message: `is not a known parameter${known.length ? ` (known: ${known.join(", ")})` : ""}`,
        });
      } else if (typeof schema.additionalProperties === "object") {
        issues.push(...validateSchema(schema.additionalProperties, v, options, [...path, key]));
      }
    }
  }
  return issues;
}
