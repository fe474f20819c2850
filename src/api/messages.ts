/**
 * What a schema pattern or format means, in words: an ajv "pattern" error names the rule the
 * value breaks ("not a quantity such as 4Gi"), never the regular expression.
 *
 * Contract: every `pattern` and `format` in crds/ has an entry here (test/api/messages.test.ts
 * walks the CRDs and fails on one without), keyed by the exact pattern text; an entry no CRD uses
 * fails the same test, so the table cannot drift from the schema.
 */

const IPV4 = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";

/** Pattern (exactly as written in the CRD) -> the rule a matching value follows. */
export const PATTERN_RULES: Readonly<Record<string, string>> = {
  [`^(${IPV4}\\.){3}${IPV4}$`]: "not an IPv4 address such as 10.0.0.10",
  [`^(${IPV4}\\.){3}${IPV4}/([8-9]|[12][0-9]|30)$`]:
    "not a CIDR such as 10.0.0.0/24 (an IPv4 address and a prefix length from /8 to /30)",
  "^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$": "not a MAC address such as 52:54:00:12:34:56",
  "^[0-9]+(\\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$":
    "not a quantity such as 4Gi, 512Mi or 2 (a number with an optional unit: Ki Mi Gi Ti Pi Ei, k M G T P E, m)",
  "^[0-9]+(m|h|d|w)$": "not a duration such as 30m, 12h, 7d or 2w (a whole number and one of m, h, d, w)",
  "^[1-9][0-9]{0,5}(m|h|d|w)$":
    "not a positive duration such as 5m, 12h, 7d or 2w (a whole number from 1 to 999999 and one of m, h, d, w)",
  "^(auto|@(yearly|annually|monthly|weekly|daily|hourly)|[0-9*,/-]+( +[0-9A-Za-z*,/?-]+){4})$":
    'not a cron schedule such as "0 3 * * *" (five fields: minute hour day-of-month month day-of-week), @daily, or auto',
  "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$":
    "not a DNS-1123 label (lower-case letters, digits and '-', starting and ending with a letter or digit)",
  "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$":
    "not a DNS-1123 name (lower-case letters, digits, '-' and '.', starting and ending with a letter or digit)",
  "^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?$":
    "not a host name (letters, digits and '-', starting and ending with a letter or digit)",
  "^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$":
    "not a label value (letters, digits, '-', '_' and '.', starting and ending with a letter or digit)",
  "^[A-Za-z0-9][A-Za-z0-9._-]*$":
    "not a name of letters, digits, '.', '_' and '-' that starts with a letter or digit",
  "^[A-Za-z0-9][A-Za-z0-9_.-]*$":
    "not an interface name of letters, digits, '.', '_' and '-' that starts with a letter or digit",
  "^(sim://[a-z0-9]([-a-z0-9.]*[a-z0-9])?(\\?[^\\s]*)?|(qemu|test)(\\+(unix|tcp|tls|ssh))?://[^\\s]*)$":
    "not a libvirt URI such as qemu+ssh://root@host1/system, qemu:///system or sim://host1 (sim://host1?cpus=4&memory=8Gi)",
  "^fence_[a-z0-9_]+$":
    "not a ClusterLabs fence agent program name such as fence_ipmilan (fence_ and lower-case letters, digits, '_')",
  "^[^\\n\\r]*$": "not a single line (no line breaks)",
};

/** JSON-schema format -> the rule. */
export const FORMAT_RULES: Readonly<Record<string, string>> = {
  "date-time": "not an RFC 3339 time such as 2026-01-02T15:04:05Z",
};

/** The words for a pattern; the pattern itself only for one this table lacks (a test forbids it). */
export function patternRule(pattern: string): string {
  return PATTERN_RULES[pattern] ?? `does not match the pattern '${pattern}'`;
}

export function formatRule(format: string): string {
  return FORMAT_RULES[format] ?? `not a ${format}`;
}

/** `"4GB"` for messages: short values quoted as they were written, long ones cut. */
export function shownValue(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}
