import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it, vi } from "vitest";
import { validateCommand } from "../../src/cli/validate.js";
import { CORPUS, mutate, mutation } from "../api/mutations.js";

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
    expect(r.stdout).toMatch(/22 valid resources in 7 files: all valid/);
  });

  it("skips what .virtwardenignore names, unless given explicitly", () => {
    const r = cli(["validate", "examples/", "examples/on-demand/"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/23 valid resources in 8 files: all valid/);
  });

  it("points at the file, line and field of an invalid manifest, exit 1", () => {
    const r = cli(["validate", "examples/", "test/fixtures/invalid/vm-memory-bad-quantity.yaml"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(
      "test/fixtures/invalid/vm-memory-bad-quantity.yaml:9:5: document 1 VirtualMachine/bad: spec.resources.memory:",
    );
    expect(r.stdout).toMatch(/22 valid resources in 8 files; 1 error in 1 document/);
  });

  it("names file, document, line and field of a malformed VirtualMachineClass", () => {
    const r = cli(["validate", "examples/classes.yaml", "test/fixtures/invalid/vmclass-bad-memory.yaml"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(
      'test/fixtures/invalid/vmclass-bad-memory.yaml:7:3: document 1 VirtualMachineClass/big: spec.memory: Invalid value: "lots"',
    );
    expect(r.stdout).toMatch(/6 valid resources in 2 files; 1 error in 1 document/);
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

describe("virtwarden validate: the stricter front door", () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  const tempDir = (files: Record<string, string>) => {
    const d = mkdtempSync(join(tmpdir(), "vw-validate-"));
    dirs.push(d);
    for (const [f, text] of Object.entries(files)) writeFileSync(join(d, f), text);
    return d;
  };
  const head = "apiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachine\nmetadata:\n  name: a\n";

  it("a YAML fault: the line of the over-indented key, exit 1", () => {
    const d = tempDir({ "vm.yaml": `${head}spec:\n  runStrategy: Always\n    memory: 4Gi\n` });
    const r = cli(["validate", d]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`${join(d, "vm.yaml")}:7:`);
    expect(r.stderr).toContain("YAML syntax: bad indentation");
  });

  it("a conflict only the directory shows (a MAC on two networks): both files named, exit 1", () => {
    const nic = (net: string) =>
      `spec:\n  instanceType: small\n  networks:\n    - network: ${net}\n      mac: "52:54:00:aa:00:01"\n`;
    const d = tempDir({
      "a.yaml": head + nic("back"),
      "b.yaml": head.replace("name: a", "name: b") + nic("front"),
    });
    const r = cli(["validate", d]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(
      `${join(d, "b.yaml")}:9:7: document 1 VirtualMachine/b: spec.networks[0].mac:`,
    );
    expect(r.stderr).toContain(`${join(d, "a.yaml")}:9`);
    expect(r.stdout).toMatch(/1 valid resource in 2 files; 1 error in 1 document/);
  });

  it("a rule in words, not its regex", () => {
    const r = cli(["validate", "test/fixtures/invalid/vm-bad-mac.yaml"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("not a MAC address such as 52:54:00:12:34:56");
    expect(r.stderr).not.toContain("should match");
  });

  /** What the command printed and returned, run in this process (fast enough to fuzz). */
  async function validateInProcess(args: string[]) {
    const out: string[] = [];
    const err: string[] = [];
    const so = vi.spyOn(process.stdout, "write").mockImplementation((s) => out.push(String(s)) > 0);
    const se = vi.spyOn(process.stderr, "write").mockImplementation((s) => err.push(String(s)) > 0);
    const before = process.exitCode;
    process.exitCode = undefined;
    try {
      await validateCommand().exitOverride().parseAsync(args, { from: "user" });
      return { status: process.exitCode ?? 0, stdout: out.join(""), stderr: err.join("") };
    } finally {
      so.mockRestore();
      se.mockRestore();
      process.exitCode = before;
    }
  }

  /** Exit 0 exactly when nothing is wrong, and what is printed agrees with the exit code. */
  function consistent(r: { status: number | null; stdout: string; stderr: string }) {
    expect([0, 1]).toContain(r.status);
    const errorLines = r.stderr.split("\n").filter(Boolean);
    if (r.status === 0) {
      expect(errorLines).toEqual([]);
      expect(r.stdout).toMatch(/all valid/);
    } else {
      const m = /; (\d+) errors? in \d+ documents?/.exec(r.stdout);
      expect(m, r.stdout).not.toBeNull();
      expect(errorLines.length).toBe(Number(m?.[1]));
      expect(Number(m?.[1])).toBeGreaterThan(0);
      // Every error line starts with a file of the directory and a line number.
      for (const l of errorLines) expect(l).toMatch(/^.+\.yaml:\d+:\d+: document \d+/);
    }
  }

  const mutatedDir = fc.array(
    fc.tuple(fc.nat({ max: CORPUS.length - 1 }), fc.array(mutation, { maxLength: 3 })),
    { minLength: 1, maxLength: 4 },
  );
  const writeMutated = (files: [number, Parameters<typeof mutate>[1][]][]) =>
    tempDir(
      Object.fromEntries(
        files.map(([w, ms], i) => [`m${i}.yaml`, ms.reduce((t, m) => mutate(t, m), CORPUS[w] ?? "")]),
      ),
    );

  it("fuzzed directories: exit 0 only when no error is printed (in process)", async () => {
    await fc.assert(
      fc.asyncProperty(mutatedDir, async (files) => {
        const d = writeMutated(files);
        consistent(await validateInProcess([d]));
        const json = await validateInProcess(["--output", "json", d]);
        const report = JSON.parse(json.stdout) as {
          valid: boolean;
          errors: { file: string; line: number }[];
        };
        expect(report.valid).toBe(report.errors.length === 0);
        expect(json.status).toBe(report.valid ? 0 : 1);
        for (const e of report.errors) {
          expect(e.file.startsWith(d)).toBe(true);
          expect(e.line).toBeGreaterThanOrEqual(1);
        }
        rmSync(d, { recursive: true, force: true });
      }),
      { numRuns: 150, seed: 13_9 },
    );
  }, 300_000);

  it("fuzzed directories: the real command's exit code (a few spawned runs)", () => {
    fc.assert(
      fc.property(mutatedDir, (files) => {
        const d = writeMutated(files);
        const r = cli(["validate", d]);
        expect(r.stderr).not.toMatch(/^\s+at /m); // no stack trace: a crash is not an answer
        consistent(r);
      }),
      { numRuns: 4, seed: 13_10 },
    );
  }, 300_000);
});

describe("virtwarden validate on a repository that holds other things too", () => {
  const dir = mkdtempSync(join(tmpdir(), "vw-validate-foreign-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("skips documents of other API groups and counts them in the summary, exit 0", () => {
    writeFileSync(
      join(dir, "apps.yaml"),
      "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 1}\n---\napiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: fleet}\n",
    );
    writeFileSync(
      join(dir, "vm.yaml"),
      "apiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachine\nmetadata: {name: db}\nspec: {resources: {cpu: 1, memory: 1Gi}}\n",
    );
    const r = cli(["validate", dir]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(
      "1 valid resource in 2 files, 2 documents of other API groups skipped (1 apps/v1 Deployment, 1 argoproj.io/v1alpha1 Application): all valid\n",
    );
    const json = JSON.parse(cli(["validate", "-o", "json", dir]).stdout) as {
      valid: boolean;
      skipped: { kind: string; file: string; line: number }[];
    };
    expect(json.valid).toBe(true);
    expect(json.skipped.map((s) => `${s.kind}@${s.line}`)).toEqual(["Deployment@1", "Application@6"]);
  });

  it("an unknown kind inside virtwarden.io is still an error, exit 1", () => {
    writeFileSync(
      join(dir, "typo.yaml"),
      "apiVersion: virtwarden.io/v1alpha1\nkind: VirtualDisk\nmetadata: {name: x}\n",
    );
    const r = cli(["validate", dir]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/typo\.yaml:2:1: document 1 VirtualDisk\/x: kind: unknown kind VirtualDisk/);
    expect(r.stdout).toMatch(
      /1 valid resource in 3 files, 2 documents of other API groups skipped .*; 1 error in 1 document/,
    );
  });
});
