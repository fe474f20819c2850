import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = join(import.meta.dirname, "..", "..");
const cli = (args: string[], input?: string) =>
  spawnSync(process.execPath, ["--import", "tsx", join(ROOT, "src/cli/main.ts"), ...args], {
    cwd: ROOT,
    encoding: "utf8",
    input,
  });

describe("virtwarden validate", () => {
  it("accepts the examples with a summary, exit 0", () => {
    const r = cli(["validate", "examples/"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/16 valid resources in 6 files: all valid/);
  });

  it("skips what .virtwardenignore names, unless given explicitly", () => {
    const r = cli(["validate", "examples/", "examples/on-demand/"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/17 valid resources in 7 files: all valid/);
  });

  it("points at the file, line and field of an invalid manifest, exit 1", () => {
    const r = cli(["validate", "examples/", "test/fixtures/invalid/vm-memory-bad-quantity.yaml"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(
      "test/fixtures/invalid/vm-memory-bad-quantity.yaml:9:5: document 1 VirtualMachine/bad: spec.resources.memory:",
    );
    expect(r.stdout).toMatch(/16 valid resources in 7 files; 1 error in 1 document/);
  });

  it("prints JSON for tools", () => {
    const r = cli(["validate", "--output", "json", "test/fixtures/invalid/host-bad-uri.yaml"]);
    expect(r.status).toBe(1);
    const report = JSON.parse(r.stdout) as { valid: boolean; errors: { line: number; path: string }[] };
    expect(report.valid).toBe(false);
    expect(report.errors[0]).toMatchObject({ line: 6, path: "spec.uri" });
  });

  it("reads stdin", () => {
    const r = cli(
      ["validate", "-"],
      "apiVersion: virtwarden.io/v1alpha1\nkind: Host\nmetadata: {name: h}\nspec: {uri: 'sim://h'}\n",
    );
    expect(r.status).toBe(0);
  });

  it("exits 2 on a usage error", () => {
    expect(cli(["validate"]).status).toBe(2);
    expect(cli(["validate", "--output", "xml", "examples/"]).status).toBe(2);
  });
});
