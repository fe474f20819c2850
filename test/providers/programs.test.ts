import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { PROGRAMS } from "../../src/providers/programs.js";

const root = join(import.meta.dirname, "..", "..");

function aptPackages(): Set<string> {
  const text = readFileSync(join(root, "Dockerfile"), "utf8").replace(/\\\n/g, " ");
  const line = text.split("\n").find((l) => /apt-get install/.test(l));
  if (!line) throw new Error("Dockerfile: no apt-get install line");
  const after = line.slice(line.indexOf("apt-get install") + "apt-get install".length).split(/&&|;/)[0] ?? "";
  return new Set(after.split(/\s+/).filter((w) => w && !w.startsWith("-")));
}

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith(".ts") ? [p] : [];
  });
}

describe("programs the agents spawn are in the image", () => {
  it("every PROGRAMS package is apt-get installed by the Dockerfile", () => {
    const pkgs = aptPackages();
    for (const p of Object.values(PROGRAMS)) expect(pkgs, p.program).toContain(p.debianPackage);
  });

  it("no source spawns a literal program name outside the table", () => {
    for (const f of sources(join(root, "src"))) {
      const s = readFileSync(f, "utf8");
      expect(s, f).not.toMatch(/spawn\(\s*["'`]/);
      expect(s, f).not.toMatch(/runCommand\(\s*\[\s*["'`]/);
      expect(s, f).not.toMatch(/\[\s*["']ipmitool["']/);
    }
  });

  it("the table's Debian package really ships the program (dpkg, not the table, is the oracle)", () => {
    for (const p of Object.values(PROGRAMS)) {
      const path = execFileSync("sh", ["-c", `command -v ${p.program}`])
        .toString()
        .trim();
      const owner = execFileSync("dpkg", ["-S", path]).toString().split(":")[0];
      expect(owner, p.program).toBe(p.debianPackage);
    }
  });
});
