/**
 * Kubernetes resource quantities ("2Gi", "512Mi", "1.5G", "500m", "4") as numbers.
 * Binary suffixes (Ki Mi Gi Ti Pi Ei) are powers of 1024, decimal ones (k M G T P E) powers of
 * 1000, "m" is milli. Throws a RangeError naming the text for anything else.
 */
const SUFFIX: Record<string, number> = {
  "": 1,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 1024,
  Mi: 1024 ** 2,
  Gi: 1024 ** 3,
  Ti: 1024 ** 4,
  Pi: 1024 ** 5,
  Ei: 1024 ** 6,
};

/** The same pattern the CRDs use for quantity strings. */
export const QUANTITY_PATTERN = "^[0-9]+(\\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$";
const QUANTITY_RE = new RegExp(QUANTITY_PATTERN);

export function isQuantity(text: string): boolean {
  return QUANTITY_RE.test(text);
}

export function parseQuantity(text: string | number): number {
  if (typeof text === "number") return text;
  const m = /^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$/.exec(text.trim());
  if (!m) throw new RangeError(`"${text}" is not a quantity (expected e.g. 512Mi, 2Gi, 1.5G, 500m)`);
  return Math.round(Number(m[1]) * (SUFFIX[m[2] ?? ""] ?? 1) * 1000) / 1000;
}

/** Bytes as the largest exact binary quantity ("2Gi", "1536Mi"), or plain bytes. */
export function formatBytes(bytes: number): string {
  const units = ["Ei", "Pi", "Ti", "Gi", "Mi", "Ki"] as const;
  for (const u of units) {
    const f = SUFFIX[u] as number;
    if (bytes >= f && bytes % f === 0) return `${bytes / f}${u}`;
  }
  return String(Math.round(bytes));
}
