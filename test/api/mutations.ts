/**
 * Mutations of manifest texts for the fuzz tests (test/api/fuzz.test.ts, test/cli/validate.test.ts):
 * the corpus is the examples and the invalid fixtures.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";

const ROOT = join(import.meta.dirname, "..", "..");
const corpusDirs = [
  join(ROOT, "examples"),
  join(ROOT, "examples", "on-demand"),
  join(ROOT, "test", "fixtures", "invalid"),
];
export const CORPUS: string[] = corpusDirs.flatMap((d) =>
  readdirSync(d)
    .filter((f) => f.endsWith(".yaml"))
    .map((f) => readFileSync(join(d, f), "utf8")),
);

/** A "billion laughs": nine levels of nine aliases each (9^9 strings if expanded). */
export function aliasBomb(levels = 9): string {
  const out = ['l0: &l0 "lol"'];
  for (let i = 1; i < levels; i++)
    out.push(
      `l${i}: &l${i} [${Array(9)
        .fill(`*l${i - 1}`)
        .join(", ")}]`,
    );
  out.push(
    `boom: [${Array(9)
      .fill(`*l${levels - 1}`)
      .join(", ")}]`,
  );
  return out.join("\n");
}

type Mutation =
  | { op: "delete" | "duplicate"; at: number }
  | { op: "swap"; at: number; with: number }
  | { op: "indent"; at: number; by: number }
  | { op: "tab"; at: number }
  | { op: "truncate"; at: number }
  | { op: "insert"; at: number; text: string }
  | { op: "byte"; at: number; code: number }
  | { op: "number"; at: number; value: string }
  | { op: "nest"; at: number; depth: number; flow: boolean }
  | { op: "bomb"; at: number; levels: number }
  | { op: "separator"; at: number };

const index = fc.nat({ max: 10_000 });
export const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constantFrom("delete" as const, "duplicate" as const), at: index }),
  fc.record({ op: fc.constant("swap" as const), at: index, with: index }),
  fc.record({ op: fc.constant("indent" as const), at: index, by: fc.integer({ min: -6, max: 6 }) }),
  fc.record({ op: fc.constant("tab" as const), at: index }),
  fc.record({ op: fc.constant("truncate" as const), at: index }),
  fc.record({
    op: fc.constant("insert" as const),
    at: index,
    text: fc.oneof(
      fc.string({ unit: "binary", maxLength: 12 }),
      fc.constantFrom(
        ": ",
        "- ",
        "{",
        "[",
        '"',
        "'",
        "&a ",
        "*a",
        "!!binary ",
        "? ",
        "|",
        ">",
        "%YAML 1.1",
        "\u0000",
        "\uFEFF",
      ),
    ),
  }),
  fc.record({ op: fc.constant("byte" as const), at: index, code: fc.integer({ min: 0, max: 0x10ffff }) }),
  fc.record({
    op: fc.constant("number" as const),
    at: index,
    value: fc.constantFrom(
      "1e999",
      "-1e999",
      "99999999999999999999999999",
      "0x7fffffffffffffff",
      ".nan",
      "-.inf",
      "1_000",
      "007",
    ),
  }),
  fc.record({
    op: fc.constant("nest" as const),
    at: index,
    depth: fc.integer({ min: 50, max: 3000 }),
    flow: fc.boolean(),
  }),
  fc.record({ op: fc.constant("bomb" as const), at: index, levels: fc.integer({ min: 3, max: 10 }) }),
  fc.record({ op: fc.constant("separator" as const), at: index }),
);

export function mutate(text: string, m: Mutation): string {
  const lines = text.split("\n");
  const i = m.at % Math.max(1, lines.length);
  const line = lines[i] ?? "";
  switch (m.op) {
    case "delete":
      lines.splice(i, 1);
      break;
    case "duplicate":
      lines.splice(i, 0, line);
      break;
    case "swap": {
      const j = m.with % Math.max(1, lines.length);
      lines[i] = lines[j] ?? "";
      lines[j] = line;
      break;
    }
    case "indent":
      lines[i] = m.by >= 0 ? " ".repeat(m.by) + line : line.replace(new RegExp(`^ {0,${-m.by}}`), "");
      break;
    case "tab":
      lines[i] = `\t${line}`;
      break;
    case "truncate":
      return text.slice(0, m.at % (text.length + 1));
    case "insert": {
      const at = m.at % (text.length + 1);
      return text.slice(0, at) + m.text + text.slice(at);
    }
    case "byte": {
      const at = m.at % Math.max(1, text.length);
      const ch = m.code >= 0xd800 && m.code <= 0xdfff ? "\uFFFD" : String.fromCodePoint(m.code);
      return text.slice(0, at) + ch + text.slice(at + 1);
    }
    case "number":
      lines[i] = line.replace(/\b\d+\b/, m.value);
      break;
    case "nest":
      lines.splice(
        i,
        0,
        m.flow
          ? `deep: ${"[".repeat(m.depth)}1${"]".repeat(m.depth)}`
          : Array.from({ length: Math.min(m.depth, 400) }, (_, d) => `${" ".repeat(d)}k${d}:`).join("\n"),
      );
      break;
    case "bomb":
      lines.splice(i, 0, aliasBomb(m.levels));
      break;
    case "separator":
      lines.splice(i, 0, "---");
      break;
  }
  return lines.join("\n");
}
