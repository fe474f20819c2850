/**
 * bench:failover's picture: one run as an SVG timeline, seconds after the power loss.
 *
 * A row per VM of the product: detect (power loss -> the host judged dead), fence (-> confirmed
 * off), queued (-> placed on a survivor: its Scheduled event), start (-> its recovery finished,
 * the start call returned), then running. Below, how many VMs the poller saw running over time,
 * for the product and, when measured in the same run, for the peer (with its fence confirmation).
 * Plain SVG, no library: a handful of rects, lines and text.
 */

export interface TimelineRow {
  name: string;
  /** Seconds after the power loss: placed on its new host, and started there. */
  placed: number;
  started: number;
}

export interface ProductTimeline {
  detect: number;
  fenced: number;
  rows: TimelineRow[];
  /** [seconds after the power loss, VMs running] as the poller saw them change. */
  running: [number, number][];
}

export interface PeerTimeline {
  label: string;
  fenceConfirmed: number;
  running: [number, number][];
}

const COLORS = {
  detect: "#d62728",
  fence: "#ff7f0e",
  queued: "#bcbd22",
  start: "#1f77b4",
  running: "#2ca02c",
};

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

export function renderTimeline(title: string, p: ProductTimeline, peer?: PeerTimeline): string {
  const rowH = 12;
  const left = 90;
  const width = 860;
  const plotW = width - left - 20;
  const vms = p.rows.length;
  const ends = [
    ...p.rows.map((r) => r.started),
    ...p.running.map(([t]) => t),
    ...(peer ? peer.running.map(([t]) => t) : []),
  ].filter(Number.isFinite);
  const tMax = Math.ceil(Math.max(1, ...ends) + 1);
  const x = (t: number) => left + (Math.max(0, Math.min(t, tMax)) / tMax) * plotW;
  const top = 40;
  const rowsH = vms * rowH;
  const curveTop = top + rowsH + 40;
  const curveH = 120;
  const height = curveTop + curveH + 60;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="10">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${left}" y="16" font-size="13" font-weight="bold">${esc(title)}</text>`,
  );
  // Legend.
  let lx = left;
  for (const [k, c] of Object.entries(COLORS)) {
    out.push(
      `<rect x="${lx}" y="24" width="10" height="8" fill="${c}"/><text x="${lx + 13}" y="32">${k}</text>`,
    );
    lx += 70;
  }
  // Seconds axis with a grid.
  for (let t = 0; t <= tMax; t++) {
    out.push(
      `<line x1="${x(t)}" y1="${top - 2}" x2="${x(t)}" y2="${curveTop + curveH}" stroke="#eee"/>`,
      `<text x="${x(t)}" y="${curveTop + curveH + 14}" text-anchor="middle">${t}</text>`,
    );
  }
  out.push(
    `<text x="${left + plotW / 2}" y="${curveTop + curveH + 30}" text-anchor="middle">seconds after the power loss</text>`,
  );
  const allRunning = p.running.find(([, n]) => n >= vms)?.[0] ?? tMax;
  p.rows.forEach((r, i) => {
    const y = top + i * rowH;
    const seg = (a: number, b: number, c: string) => {
      if (!(Number.isFinite(a) && Number.isFinite(b)) || b <= a) return;
      out.push(`<rect x="${x(a)}" y="${y}" width="${x(b) - x(a)}" height="${rowH - 2}" fill="${c}"/>`);
    };
    seg(0, p.detect, COLORS.detect);
    seg(p.detect, p.fenced, COLORS.fence);
    seg(p.fenced, r.placed, COLORS.queued);
    seg(Math.max(p.fenced, r.placed), r.started, COLORS.start);
    seg(r.started, Math.max(allRunning, r.started + 0.05), COLORS.running);
    out.push(`<text x="${left - 4}" y="${y + rowH - 3}" text-anchor="end">${esc(r.name)}</text>`);
  });
  // Running counts over time.
  const y = (n: number) => curveTop + curveH - (n / Math.max(1, vms)) * curveH;
  const step = (pts: [number, number][]) => {
    let d = `M ${x(0)} ${y(0)}`;
    let last = 0;
    for (const [t, n] of pts) {
      d += ` L ${x(t)} ${y(last)} L ${x(t)} ${y(n)}`;
      last = n;
    }
    return `${d} L ${x(tMax)} ${y(last)}`;
  };
  out.push(
    `<line x1="${left}" y1="${curveTop}" x2="${left}" y2="${curveTop + curveH}" stroke="#999"/>`,
    `<text x="${left - 4}" y="${curveTop + 4}" text-anchor="end">${vms} running</text>`,
    `<text x="${left - 4}" y="${curveTop + curveH}" text-anchor="end">0</text>`,
    `<path d="${step(p.running)}" fill="none" stroke="${COLORS.running}" stroke-width="2"/>`,
    `<text x="${x(allRunning) + 4}" y="${curveTop + 10}" fill="${COLORS.running}">virtwarden: all at ${allRunning.toFixed(2)} s</text>`,
  );
  if (peer) {
    const peerAll = peer.running.find(([, n]) => n >= vms)?.[0];
    out.push(
      `<path d="${step(peer.running)}" fill="none" stroke="#7f7f7f" stroke-width="2" stroke-dasharray="5,3"/>`,
      `<line x1="${x(peer.fenceConfirmed)}" y1="${curveTop}" x2="${x(peer.fenceConfirmed)}" y2="${curveTop + curveH}" stroke="#7f7f7f" stroke-dasharray="2,2"/>`,
      `<text x="${x(peer.fenceConfirmed) + 3}" y="${curveTop + curveH - 4}" fill="#7f7f7f">${esc(peer.label)} fenced</text>`,
      ...(peerAll !== undefined
        ? [
            `<text x="${x(peerAll) + 4}" y="${curveTop + 24}" fill="#7f7f7f">${esc(peer.label)}: all at ${peerAll.toFixed(2)} s</text>`,
          ]
        : []),
    );
  }
  out.push("</svg>");
  return `${out.join("\n")}\n`;
}
