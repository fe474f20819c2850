/**
 * The CRDs' cross-field rules (x-kubernetes-validations, CEL) re-implemented for standalone mode.
 *
 * Contract: this table and the CRDs hold exactly the same (kind, path, rule, message) entries —
 * test/api/rules.test.ts extracts every rule from crds/ and compares — and each `check` means what
 * its CEL says, so a manifest is accepted by `virtwarden validate` exactly when the API server
 * accepts it (test/store/kube parity test feeds both the same invalid corpus).
 *
 * Paths use `[*]` for every list item: "spec.disks[*].source".
 */
import type { FieldError } from "./field-error.js";
import type { Kind } from "./types.js";

// biome-ignore lint/suspicious/noExplicitAny: rules inspect arbitrary schema-valid JSON
type Node = any;

export interface Rule {
  kind: Kind;
  path: string;
  cel: string;
  message: string;
  check: (self: Node) => boolean;
}

const has = (o: Node, k: string) => o !== null && typeof o === "object" && o[k] !== undefined;

const selectorExpr = (kind: Kind, path: string): Rule => ({
  kind,
  path,
  cel: "(self.operator in ['In', 'NotIn']) == (has(self.values) && size(self.values) > 0)",
  message: "In and NotIn need values; Exists and DoesNotExist take none",
  check: (s) => ["In", "NotIn"].includes(s.operator) === (has(s, "values") && s.values.length > 0),
});

const execNeedsCommand = (kind: Kind, path: string, what: string): Rule => ({
  kind,
  path,
  cel: "self.agent != 'exec' || has(self.command)",
  message: `the exec ${what} agent needs a command`,
  check: (s) => s.agent !== "exec" || has(s, "command"),
});

const ipmiNeedsAddress = (kind: Kind, path: string, what: string): Rule => ({
  kind,
  path,
  cel: "self.agent != 'ipmi' || has(self.address)",
  message: `the ipmi ${what} agent needs the BMC address`,
  check: (s) => s.agent !== "ipmi" || has(s, "address"),
});

const fenceAgentsNeedsProgram = (kind: Kind, path: string, what: string): Rule => ({
  kind,
  path,
  cel: "self.agent != 'fence-agents' || has(self.program)",
  message: `the fence-agents ${what} agent needs a program`,
  check: (s) => s.agent !== "fence-agents" || has(s, "program"),
});

const UNIT_SECONDS: Record<string, number> = { m: 60, h: 3600, d: 86_400, w: 604_800 };
/** A schema-valid duration ("5m", "7d") in seconds, as the CEL rule computes it. */
const durationSeconds = (d: string): number =>
  Number(d.slice(0, -1)) * (UNIT_SECONDS[d.slice(-1)] ?? Number.NaN);

/** Options that virtwarden sets itself (action) or takes from the credentials (the password). */
const RESERVED_OPTIONS = ["action", "password", "passwd", "password_script", "passwd_script"];

const fenceAgentsOptions = (kind: Kind, path: string): Rule => ({
  kind,
  path,
  cel: `!has(self.options) || self.options.all(k, k.matches('^[a-z][a-z0-9_]*$') && !(k in [${RESERVED_OPTIONS.map((o) => `'${o}'`).join(", ")}]))`,
  message:
    "options are fence-agents option names (lower case, digits, _), never action or a password: the password comes from credentialsSecretRef or credentialsFile",
  check: (s) =>
    !has(s, "options") ||
    Object.keys(s.options).every((k) => /^[a-z][a-z0-9_]*$/.test(k) && !RESERVED_OPTIONS.includes(k)),
});

export const RULES: readonly Rule[] = [
  {
    kind: "VirtualMachine",
    path: "spec",
    cel: "has(self.resources) != has(self.instanceType)",
    message: "exactly one of resources or instanceType must be set",
    check: (s) => has(s, "resources") !== has(s, "instanceType"),
  },
  {
    kind: "VirtualMachine",
    path: "spec.disks[*]",
    cel: "has(self.size) || (has(self.source) && (has(self.source.image) || has(self.source.volume)))",
    message: "a blank disk (no image or volume source) needs a size",
    check: (s) => has(s, "size") || (has(s, "source") && (has(s.source, "image") || has(s.source, "volume"))),
  },
  {
    kind: "VirtualMachine",
    path: "spec.disks[*].source",
    cel: "has(self.image) != has(self.volume)",
    message: "a disk source is exactly one of image or volume",
    check: (s) => has(s, "image") !== has(s, "volume"),
  },
  selectorExpr("VirtualMachine", "spec.placement.affinity[*].selector.matchExpressions[*]"),
  selectorExpr("VirtualMachine", "spec.placement.antiAffinity[*].selector.matchExpressions[*]"),
  selectorExpr("VirtualMachine", "spec.placement.preferredAffinity[*].selector.matchExpressions[*]"),
  selectorExpr("VirtualMachine", "spec.placement.preferredAntiAffinity[*].selector.matchExpressions[*]"),
  {
    kind: "VirtualMachine",
    path: "spec.availability.restartBackoff",
    cel: "!has(self.initialSeconds) || !has(self.maxSeconds) || self.initialSeconds <= self.maxSeconds",
    message: "initialSeconds must not exceed maxSeconds",
    check: (s) => !has(s, "initialSeconds") || !has(s, "maxSeconds") || s.initialSeconds <= s.maxSeconds,
  },
  // VirtualMachineClass carries the VM's disks, placement and availability schemas, rules too.
  {
    kind: "VirtualMachineClass",
    path: "spec.disks[*]",
    cel: "has(self.size) || (has(self.source) && (has(self.source.image) || has(self.source.volume)))",
    message: "a blank disk (no image or volume source) needs a size",
    check: (s) => has(s, "size") || (has(s, "source") && (has(s.source, "image") || has(s.source, "volume"))),
  },
  {
    kind: "VirtualMachineClass",
    path: "spec.disks[*].source",
    cel: "has(self.image) != has(self.volume)",
    message: "a disk source is exactly one of image or volume",
    check: (s) => has(s, "image") !== has(s, "volume"),
  },
  selectorExpr("VirtualMachineClass", "spec.placement.affinity[*].selector.matchExpressions[*]"),
  selectorExpr("VirtualMachineClass", "spec.placement.antiAffinity[*].selector.matchExpressions[*]"),
  selectorExpr("VirtualMachineClass", "spec.placement.preferredAffinity[*].selector.matchExpressions[*]"),
  selectorExpr("VirtualMachineClass", "spec.placement.preferredAntiAffinity[*].selector.matchExpressions[*]"),
  {
    kind: "VirtualMachineClass",
    path: "spec.availability.restartBackoff",
    cel: "!has(self.initialSeconds) || !has(self.maxSeconds) || self.initialSeconds <= self.maxSeconds",
    message: "initialSeconds must not exceed maxSeconds",
    check: (s) => !has(s, "initialSeconds") || !has(s, "maxSeconds") || s.initialSeconds <= s.maxSeconds,
  },
  {
    kind: "Host",
    path: "spec",
    cel: "!has(self.allowPowerOff) || !self.allowPowerOff || has(self.power)",
    message: "allowPowerOff needs a power agent",
    check: (s) => !has(s, "allowPowerOff") || !s.allowPowerOff || has(s, "power"),
  },
  execNeedsCommand("Host", "spec.fencing", "fence"),
  ipmiNeedsAddress("Host", "spec.fencing", "fence"),
  {
    kind: "Host",
    path: "spec.fencing",
    cel: "!(has(self.credentialsSecretRef) && has(self.credentialsFile))",
    message: "credentials come from a Secret or a file, not both",
    check: (s) => !(has(s, "credentialsSecretRef") && has(s, "credentialsFile")),
  },
  fenceAgentsNeedsProgram("Host", "spec.fencing", "fence"),
  fenceAgentsOptions("Host", "spec.fencing"),
  execNeedsCommand("Host", "spec.power", "power"),
  ipmiNeedsAddress("Host", "spec.power", "power"),
  fenceAgentsNeedsProgram("Host", "spec.power", "power"),
  fenceAgentsOptions("Host", "spec.power"),
  {
    kind: "VirtualNetwork",
    path: "spec",
    cel: "self.mode == 'bridge' || has(self.subnet)",
    message: "subnet is required unless mode is bridge",
    check: (s) => s.mode === "bridge" || has(s, "subnet"),
  },
  {
    kind: "VirtualNetwork",
    path: "spec",
    cel: "self.mode != 'bridge' || has(self.bridge)",
    message: "bridge mode attaches to an existing bridge: set bridge",
    check: (s) => s.mode !== "bridge" || has(s, "bridge"),
  },
  {
    kind: "VirtualNetwork",
    path: "spec",
    cel: "self.mode != 'bridge' || !has(self.dhcp)",
    message: "DHCP is served in nat, route and isolated modes only",
    check: (s) => s.mode !== "bridge" || !has(s, "dhcp"),
  },
  {
    kind: "VirtualNetwork",
    path: "spec.dhcp.leases",
    cel: "self.all(l, self.exists_one(m, m.ip == l.ip))",
    message: "each fixed IP may be leased once",
    check: (s: Node[]) => s.every((l) => s.filter((m) => m.ip === l.ip).length === 1),
  },
  selectorExpr("SnapshotPolicy", "spec.selector.matchExpressions[*]"),
  {
    kind: "SnapshotPolicy",
    path: "spec.retention",
    cel: "has(self.keepLast) || has(self.maxAge)",
    message: "retention needs keepLast, maxAge or both",
    check: (s) => has(s, "keepLast") || has(s, "maxAge"),
  },
  {
    kind: "SnapshotPolicy",
    path: "spec.auto",
    // The durations in seconds (number times unit), compared. The schema's defaults fill both
    // bounds before rules run, in the API server and in standalone validation alike.
    cel: "int(self.minInterval.substring(0, size(self.minInterval) - 1)) * {'m': 60, 'h': 3600, 'd': 86400, 'w': 604800}[self.minInterval.substring(size(self.minInterval) - 1)] <= int(self.maxInterval.substring(0, size(self.maxInterval) - 1)) * {'m': 60, 'h': 3600, 'd': 86400, 'w': 604800}[self.maxInterval.substring(size(self.maxInterval) - 1)]",
    message: "minInterval must not be longer than maxInterval",
    check: (s) =>
      typeof s.minInterval !== "string" ||
      typeof s.maxInterval !== "string" ||
      durationSeconds(s.minInterval) <= durationSeconds(s.maxInterval),
  },
  {
    kind: "VirtualMachineSnapshot",
    path: "spec",
    cel: "has(self.vmName) != has(self.group)",
    message: "exactly one of vmName or group must be set",
    check: (s) => has(s, "vmName") !== has(s, "group"),
  },
];

/** Every node of `obj` at `path` (with `[*]` expanded), with its concrete path. */
export function nodesAt(obj: Node, path: string): { node: Node; path: string }[] {
  let current: { node: Node; path: string }[] = [{ node: obj, path: "" }];
  for (const seg of path.split(".")) {
    const m = /^([^[]+)(\[\*\])?$/.exec(seg);
    if (!m?.[1]) return [];
    const key = m[1];
    const next: { node: Node; path: string }[] = [];
    for (const c of current) {
      const v = has(c.node, key) ? c.node[key] : undefined;
      if (v === undefined) continue;
      const p = c.path ? `${c.path}.${key}` : key;
      if (m[2]) {
        if (Array.isArray(v))
          for (const [i, item] of v.entries()) next.push({ node: item, path: `${p}[${i}]` });
      } else next.push({ node: v, path: p });
    }
    current = next;
  }
  return current;
}

/** Evaluate every rule of the kind; a failing rule reports at the node it is attached to. */
export function checkRules(kind: Kind, obj: Node): FieldError[] {
  const out: FieldError[] = [];
  for (const rule of RULES) {
    if (rule.kind !== kind) continue;
    for (const { node, path } of nodesAt(obj, rule.path)) {
      if (!rule.check(node)) out.push({ path, message: `Invalid value: ${rule.message}` });
    }
  }
  return out;
}
