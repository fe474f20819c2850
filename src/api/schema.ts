/**
 * Schema validation in standalone mode, from the CRDs themselves (crds/*.yaml): ajv compiles each
 * kind's openAPIV3Schema, applies its defaults like the API server's structural defaulting, and
 * the checks the API server adds on top of the schema are done here too: unknown fields (kubectl's
 * strict field validation), list-map key uniqueness, object metadata, and the CEL rules
 * (rules.ts).
 *
 * Errors come back as field paths ("spec.disks[1].size") for the loader to turn into lines.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import addFormatsModule from "ajv-formats";
import { parse } from "yaml";
import type { FieldError } from "./field-error.js";
import { formatRule, patternRule, shownValue } from "./messages.js";
import { checkRules } from "./rules.js";
import { API_VERSION, CLUSTER_SCOPED, KINDS, type Kind } from "./types.js";

// ajv-formats is CommonJS with a default export.
type AddFormats = (ajv: Ajv, formats: string[]) => Ajv;
const addFormats = ((addFormatsModule as unknown as { default?: AddFormats }).default ??
  addFormatsModule) as unknown as AddFormats;

export type JSONSchema = {
  type?: string;
  properties?: Record<string, JSONSchema>;
  items?: JSONSchema;
  additionalProperties?: JSONSchema | boolean;
  required?: string[];
  "x-kubernetes-preserve-unknown-fields"?: boolean;
  "x-kubernetes-list-type"?: string;
  "x-kubernetes-list-map-keys"?: string[];
  "x-kubernetes-validations"?: { rule: string; message: string; reason?: string }[];
  [k: string]: unknown;
};

export const CRD_DIR = fileURLToPath(new URL("../../crds/", import.meta.url));

interface CRD {
  spec: {
    names: { kind: string; plural: string };
    group: string;
    scope: "Namespaced" | "Cluster";
    versions: { name: string; schema: { openAPIV3Schema: JSONSchema } }[];
  };
}

let cache: Map<Kind, { schema: JSONSchema; validate: ValidateFunction }> | undefined;

/** The CRD documents from crds/, keyed by kind. */
export function loadCRDs(dir = CRD_DIR): Map<Kind, CRD> {
  const out = new Map<Kind, CRD>();
  for (const f of readdirSync(dir).sort()) {
    if (!f.endsWith(".yaml") || f === "kustomization.yaml") continue;
    const crd = parse(readFileSync(join(dir, f), "utf8")) as CRD;
    out.set(crd.spec.names.kind as Kind, crd);
  }
  return out;
}

/**
 * The schema less the default of `status` (crds/: {observedGeneration: 0}, so that Flux and Argo
 * CD see an object nobody has reconciled yet as generation-ahead). The loader checks manifests:
 * their status is the controller's, and loading must not invent one.
 */
function withoutStatusDefault(schema: JSONSchema): JSONSchema {
  const props = (schema as { properties?: Record<string, JSONSchema> }).properties;
  const status = props?.status as Record<string, unknown> | undefined;
  if (!status || !("default" in status)) return schema;
  const { default: _d, ...rest } = status;
  return { ...schema, properties: { ...props, status: rest } } as JSONSchema;
}

function compiled(): Map<Kind, { schema: JSONSchema; validate: ValidateFunction }> {
  if (cache) return cache;
  const ajv = new Ajv({
    allErrors: true,
    verbose: true,
    useDefaults: true,
    strict: false,
    discriminator: false,
  });
  addFormats(ajv, ["date-time"]);
  const out = new Map<Kind, { schema: JSONSchema; validate: ValidateFunction }>();
  for (const [kind, crd] of loadCRDs()) {
    const version = crd.spec.versions.find((v) => `${crd.spec.group}/${v.name}` === API_VERSION);
    if (!version) throw new Error(`crds: ${kind} has no version ${API_VERSION}`);
    const schema = version.schema.openAPIV3Schema;
    out.set(kind, { schema, validate: ajv.compile(withoutStatusDefault(schema)) });
  }
  for (const k of KINDS) if (!out.has(k)) throw new Error(`crds: no CRD for ${k}`);
  cache = out;
  return out;
}

export function schemaFor(kind: Kind): JSONSchema {
  const c = compiled().get(kind);
  if (!c) throw new Error(`no schema for ${kind}`);
  return c.schema;
}

/** JSON pointer (/spec/disks/0/size) -> field path (spec.disks[0].size). */
export function pointerToPath(pointer: string): string {
  let out = "";
  for (const raw of pointer.split("/").slice(1)) {
    const part = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    out += /^\d+$/.test(part) ? `[${part}]` : out ? `.${part}` : part;
  }
  return out;
}

function ajvMessage(e: ErrorObject): FieldError {
  const path = pointerToPath(e.instancePath);
  const join = (p: string, k: string) => (p ? `${p}.${k}` : k);
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case "required":
      return { path: join(path, String(p.missingProperty)), message: "Required value", missing: true };
    case "enum":
      return {
        path,
        message: `Unsupported value: supported values: ${(p.allowedValues as unknown[]).map((v) => `"${v}"`).join(", ")}`,
      };
    case "type":
      return { path, message: `Invalid value: must be of type ${String(p.type)}` };
    case "pattern":
      return { path, message: `Invalid value: ${shownValue(e.data)}: ${patternRule(String(p.pattern))}` };
    case "minimum":
    case "maximum":
    case "exclusiveMinimum":
    case "exclusiveMaximum":
      return { path, message: `Invalid value: should be ${String(p.comparison)} ${String(p.limit)}` };
    case "maxLength":
      return { path, message: `Too long: may not be longer than ${String(p.limit)}` };
    case "minLength":
      return { path, message: `Invalid value: should be at least ${String(p.limit)} chars long` };
    case "maxItems":
      return { path, message: `Too many: must have at most ${String(p.limit)} items` };
    case "minItems":
      return { path, message: `Invalid value: must have at least ${String(p.limit)} items` };
    case "maxProperties":
      return { path, message: `Too many: must have at most ${String(p.limit)} properties` };
    case "format":
      return { path, message: `Invalid value: ${shownValue(e.data)}: ${formatRule(String(p.format))}` };
    default:
      return { path, message: e.message ?? e.keyword };
  }
}

/** Fields the schema does not know (kubectl --validate=strict rejects them; so do we). */
function unknownFields(value: unknown, schema: JSONSchema, path: string, out: FieldError[]): void {
  if (schema["x-kubernetes-preserve-unknown-fields"]) return;
  if (Array.isArray(value)) {
    if (schema.items)
      for (const [i, v] of value.entries())
        unknownFields(v, schema.items as JSONSchema, `${path}[${i}]`, out);
    return;
  }
  if (!value || typeof value !== "object") return;
  if (path === "metadata") return;
  const props = schema.properties;
  if (!props) {
    if (schema.additionalProperties && typeof schema.additionalProperties === "object") {
      for (const [k, v] of Object.entries(value))
        unknownFields(v, schema.additionalProperties, `${path}.${k}`, out);
    }
    return;
  }
  for (const [k, v] of Object.entries(value)) {
    const sub = props[k];
    const p = path ? `${path}.${k}` : k;
    if (!sub) out.push({ path: p, message: "unknown field" });
    else unknownFields(v, sub, p, out);
  }
}

/** x-kubernetes-list-type: map — the keys must be unique across items. */
function mapListKeys(value: unknown, schema: JSONSchema, path: string, out: FieldError[]): void {
  if (Array.isArray(value)) {
    const keys = schema["x-kubernetes-list-map-keys"];
    if (schema["x-kubernetes-list-type"] === "map" && keys) {
      const seen = new Map<string, number>();
      value.forEach((item, i) => {
        if (!item || typeof item !== "object") return;
        const id = keys.map((k) => `${k}=${String((item as Record<string, unknown>)[k])}`).join(",");
        if (seen.has(id))
          out.push({
            path: `${path}[${i}]`,
            message: `Duplicate value: ${id} (already at [${seen.get(id)}])`,
          });
        else seen.set(id, i);
      });
    }
    if (schema.items)
      for (const [i, v] of value.entries()) mapListKeys(v, schema.items as JSONSchema, `${path}[${i}]`, out);
    return;
  }
  if (!value || typeof value !== "object" || !schema.properties) return;
  for (const [k, v] of Object.entries(value)) {
    const sub = schema.properties[k];
    if (sub) mapListKeys(v, sub, path ? `${path}.${k}` : k, out);
  }
}

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const LABEL_NAME =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

function checkMetadata(kind: Kind, obj: Record<string, unknown>, out: FieldError[]): void {
  const meta = obj.metadata as Record<string, unknown> | undefined;
  if (!meta || typeof meta !== "object" || Array.isArray(meta)) {
    out.push({ path: "metadata", message: "Required value", missing: true });
    return;
  }
  const name = meta.name;
  if (typeof name !== "string" || name === "")
    out.push({
      path: "metadata.name",
      message: "Required value: name is required",
      missing: name === undefined,
    });
  else if (name.length > 253 || !DNS_SUBDOMAIN.test(name)) {
    out.push({
      path: "metadata.name",
      message: `Invalid value: "${name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'`,
    });
  }
  const ns = meta.namespace;
  if (
    ns !== undefined &&
    !CLUSTER_SCOPED.has(kind) &&
    (typeof ns !== "string" || ns.length > 63 || !DNS_LABEL.test(ns))
  ) {
    out.push({
      path: "metadata.namespace",
      message: `Invalid value: "${String(ns)}": a lowercase RFC 1123 label`,
    });
  }
  for (const field of ["labels", "annotations"] as const) {
    const m = meta[field];
    if (m === undefined) continue;
    if (!m || typeof m !== "object" || Array.isArray(m)) {
      out.push({ path: `metadata.${field}`, message: "Invalid value: must be a map of strings" });
      continue;
    }
    for (const [k, v] of Object.entries(m)) {
      if (!LABEL_NAME.test(k) || k.length > 316)
        out.push({ path: `metadata.${field}.${k}`, message: "Invalid value: not a valid key name" });
      if (typeof v !== "string")
        out.push({ path: `metadata.${field}.${k}`, message: "Invalid value: must be a string" });
      else if (field === "labels" && (v.length > 63 || !LABEL_VALUE.test(v))) {
        out.push({
          path: `metadata.${field}.${k}`,
          message: `Invalid value: "${v}": a valid label must be 63 characters or less, alphanumeric, '-', '_' or '.'`,
        });
      }
    }
  }
}

/**
 * Validate one object of a known kind: mutates `obj` by applying schema defaults, returns every
 * error found (schema, unknown fields, list-map keys, metadata, CEL rules).
 */
export function validateObject(kind: Kind, obj: Record<string, unknown>): FieldError[] {
  const c = compiled().get(kind);
  if (!c) return [{ path: "kind", message: `unknown kind ${kind}` }];
  const errors: FieldError[] = [];
  checkMetadata(kind, obj, errors);
  const { metadata, ...rest } = obj;
  const body = { ...rest, metadata: {} } as Record<string, unknown>;
  if (!c.validate(body)) for (const e of c.validate.errors ?? []) errors.push(ajvMessage(e));
  Object.assign(obj, body, { metadata });
  unknownFields(obj, c.schema, "", errors);
  mapListKeys(obj, c.schema, "", errors);
  // CEL rules run only on objects the schema accepts (the API server does the same).
  if (errors.length === 0) errors.push(...checkRules(kind, obj));
  return dedupe(errors);
}

function dedupe(errors: FieldError[]): FieldError[] {
  const seen = new Set<string>();
  return errors.filter((e) => {
    const k = `${e.path}\n${e.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
