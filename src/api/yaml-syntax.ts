/**
 * Where a YAML syntax fault is. Two parsers, each for what it does best:
 *
 * - `yaml` parses (loader.ts): it keeps every node's source range, so schema errors point at the
 *   line of their field, and it parses each document of a stream on its own, so one broken
 *   document does not hide the good ones.
 * - js-yaml places the fault: `yaml` reports an over-indented key (`runStrategy: Always` followed
 *   by `    memory: 4Gi`) on the line *before* it, at the value it thinks became a key, and a
 *   mapping under a scalar (`spec: Always` / `  cpus: 2`) on the scalar's line; js-yaml, like
 *   PyYAML, reports the line of the offending key. So a document `yaml` rejects is parsed again,
 *   alone, by js-yaml, and js-yaml's first fault is the one shown.
 * - An unclosed quote or flow collection is reported by both where the parser gave up (the next
 *   line, or the end of the file); the fault is where it was opened, which `yaml`'s node ranges
 *   give: that line is shown, with where the parser gave up in the message.
 *
 * Contract: never throws; the line is always within the text (1 .. number of lines).
 */
import { loadAll, YAMLException } from "js-yaml";
import { type Document, isMap, isScalar, isSeq, type LineCounter, visit, type YAMLError } from "yaml";

export interface SyntaxFault {
  line: number;
  column: number;
  message: string;
}

/** js-yaml's nesting limit when it re-reads a broken document (its default, 100, could hide the fault). */
const JS_YAML_MAX_DEPTH = 1000;

const OPENERS: { test: RegExp; what: string; is: (n: unknown) => boolean }[] = [
  {
    test: /Missing closing "quote/,
    what: 'a double-quoted string (")',
    is: (n) => isScalar(n) && n.type === "QUOTE_DOUBLE",
  },
  {
    test: /Missing closing 'quote/,
    what: "a single-quoted string (')",
    is: (n) => isScalar(n) && n.type === "QUOTE_SINGLE",
  },
  { test: /Flow map|end with a \}/, what: "a flow mapping ({)", is: (n) => isMap(n) && n.flow === true },
  {
    test: /Flow sequence|end with a \]/,
    what: "a flow sequence ([)",
    is: (n) => isSeq(n) && n.flow === true,
  },
];

/** The unclosed quote or flow collection a `yaml` error is about, when it is one. */
function unclosedOpener(
  doc: Document.Parsed,
  error: YAMLError,
): { offset: number; what: string } | undefined {
  const opener = OPENERS.find((o) => o.test.test(error.message));
  if (!opener) return undefined;
  const at = error.pos[0];
  let found: number | undefined;
  try {
    visit(doc, (_key, node) => {
      const range = (node as { range?: [number, number, number] }).range;
      if (!range || !opener.is(node)) return;
      // The innermost (latest-starting) opener of that kind that runs up to the fault.
      if (range[0] <= at && range[1] >= at && (found === undefined || range[0] >= found)) found = range[0];
    });
  } catch {
    return undefined;
  }
  return found === undefined ? undefined : { offset: found, what: opener.what };
}

/** The position of an offset, kept on a line of the text (never the empty "line" after a final newline). */
function clampLine(lines: LineCounter, offset: number, length: number): { line: number; col: number } {
  return lines.linePos(Math.max(0, Math.min(offset, length - 1)));
}

/** js-yaml's first fault in `text.slice(start, end)`, in the coordinates of the whole text. */
function jsYamlFault(text: string, start: number, end: number, lines: LineCounter): SyntaxFault | undefined {
  const slice = text.slice(start, end);
  try {
    loadAll(slice, { maxDepth: JS_YAML_MAX_DEPTH });
    return undefined;
  } catch (e) {
    if (!(e instanceof YAMLException) || !e.mark) return undefined;
    const offset = start + Math.min(Math.max(0, e.mark.position), slice.length);
    const pos = clampLine(lines, offset, text.length);
    const reason = (e as YAMLException & { reason?: string }).reason ?? e.message.split("\n")[0] ?? "";
    return { line: pos.line, column: pos.col, message: reason.replace(/ \(\d+:\d+\)$/, "") };
  }
}

/** The parsers' words for nesting too deep (a stack overflow, a depth limit), in ours. */
function deepNesting(message: string): string {
  return /maxDepth|call stack|too much recursion/i.test(message)
    ? `nested too deeply (more than ${JS_YAML_MAX_DEPTH} levels, or more than the parser's stack holds)`
    : message;
}

/**
 * The first fault of one document `yaml` rejected (doc.errors non-empty), or whose aliases could
 * not be resolved (`problem` then says why).
 */
export function firstSyntaxFault(
  text: string,
  doc: Document.Parsed,
  lines: LineCounter,
  problem?: string,
): SyntaxFault {
  const start = doc.range?.[0] ?? 0;
  const end = doc.range?.[2] ?? text.length;
  const first = doc.errors[0];
  const yamlOffset = first ? first.pos[0] : start;
  const yamlPos = clampLine(lines, yamlOffset, text.length);
  const yamlMessage = first ? first.message.split("\n")[0] : (problem ?? "invalid YAML");
  if (first) {
    const opener = unclosedOpener(doc, first);
    if (opener) {
      const pos = clampLine(lines, opener.offset, text.length);
      return {
        line: pos.line,
        column: pos.col,
        message: `${opener.what} opened here is never closed (the parser gave up at line ${yamlPos.line})`,
      };
    }
  }
  const js = jsYamlFault(text, start, end, lines);
  if (js) return { ...js, message: deepNesting(js.message) };
  return { line: yamlPos.line, column: yamlPos.col, message: deepNesting(yamlMessage ?? "invalid YAML") };
}
