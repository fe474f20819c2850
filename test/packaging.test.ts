/**
 * The package as npm ships it (issue 17 point 3): `npm pack` of a copy of this checkout (prepack
 * builds dist/ there, never in the checkout, whose bin would otherwise prefer it), then an install of
 * the tarball with production dependencies only, from npm's cache (no network: `npm ci` of a lockfile
 * derived from the checkout's), under
 * --engine-strict (this machine's Node satisfies `engines`). The installed `virtwarden` must then do
 * the main job: validate and run the shipped examples on the simulator until every VM runs. A
 * runtime import of a build-only package (tsx, typescript) or of one left in devDependencies fails
 * here, since none of them is installed.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { builtinModules } from "node:module";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, "..");
const ROOT_PKG = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
  version: string;
  files: string[];
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};

let work: string;
let tarball: string;
let packed: string[];
let app: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "vw-pack-"));
  const stage = join(work, "stage");
  mkdirSync(stage);
  // What prepack's build reads, and what `files` ships. node_modules is a link: the build runs the
  // checkout's own compiler.
  for (const f of [
    "package.json",
    "package-lock.json",
    "tsconfig.json",
    "tsconfig.build.json",
    "README.md",
    "LICENSE",
    "src",
    "bin",
    "crds",
    "manifests",
    "examples",
  ])
    cpSync(join(ROOT, f), join(stage, f), { recursive: true });
  symlinkSync(join(ROOT, "node_modules"), join(stage, "node_modules"));
  const out = join(work, "out");
  mkdirSync(out);
  const { stdout } = await run("npm", ["pack", "--json", "--pack-destination", out], {
    cwd: stage,
    maxBuffer: 64 << 20,
  });
  // prepack's output precedes the JSON on stdout.
  const info = JSON.parse(stdout.slice(stdout.indexOf("[\n"))) as {
    filename: string;
    files: { path: string }[];
  }[];
  tarball = join(out, info[0]?.filename ?? "");
  packed = (info[0]?.files ?? []).map((f) => f.path);
  app = join(work, "app");
  mkdirSync(app);
  writeAppWithLock(app, tarball);
  // `npm ci` from a lockfile: every tarball is named with its integrity, so npm's cache (filled by
  // the checkout's own `npm ci`) serves them with no network. A bare `npm install --offline` of the
  // tarball would need the registry's metadata of every dependency, which a fresh machine's cache
  // does not hold.
  await run("npm", ["ci", "--omit=dev", "--offline", "--engine-strict", "--no-audit", "--no-fund"], {
    cwd: app,
    maxBuffer: 64 << 20,
  });
}, 300_000);

/**
 * An app that depends on the packed tarball, with a lockfile for it: the tarball's production
 * dependency tree is the checkout's own (its package-lock.json, dev-only entries left out), rooted
 * under the app. What a user gets from the registry resolves the same ranges.
 */
function writeAppWithLock(dir: string, tgz: string): void {
  const lock = JSON.parse(readFileSync(join(ROOT, "package-lock.json"), "utf8")) as {
    packages: Record<string, Record<string, unknown>>;
  };
  const self = lock.packages[""] ?? {};
  const spec = `file:${tgz}`;
  const packages: Record<string, unknown> = {
    "": { name: "vw-pack-app", dependencies: { virtwarden: spec } },
    "node_modules/virtwarden": {
      version: ROOT_PKG.version,
      resolved: spec,
      dependencies: ROOT_PKG.dependencies,
      ...(self.engines ? { engines: self.engines } : {}),
      ...(self.bin ? { bin: self.bin } : {}),
      ...(self.license ? { license: self.license } : {}),
    },
  };
  for (const [path, entry] of Object.entries(lock.packages))
    if (path.startsWith("node_modules/") && !entry.dev) packages[path] = entry;
  writeFileSync(
    join(dir, "package.json"),
    JSON.stringify({ name: "vw-pack-app", private: true, dependencies: { virtwarden: spec } }),
  );
  writeFileSync(
    join(dir, "package-lock.json"),
    JSON.stringify({ name: "vw-pack-app", lockfileVersion: 3, requires: true, packages }, null, 2),
  );
}

afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("the npm package", () => {
  it("ships the compiled CLI, the CRDs, manifests and examples, and no sources, tests or benchmarks", () => {
    expect(packed).toContain("bin/virtwarden.js");
    expect(packed).toContain("dist/cli/main.js");
    expect(packed).toContain("LICENSE");
    expect(packed).toContain("README.md");
    for (const crd of readdirSync(join(ROOT, "crds"))) expect(packed).toContain(`crds/${crd}`);
    const stray = packed.filter((p) => /^(src|test|bench|scripts|docs|\.ci)\//.test(p) || /\.ts$/.test(p));
    expect(stray).toEqual([]);
    // Every compiled module of src/ is in it.
    const want = listTs(join(ROOT, "src"))
      .filter((f) => !f.endsWith(".d.ts"))
      .map((f) => `dist/${relative(join(ROOT, "src"), f).replace(/\.ts$/, ".js")}`);
    expect(want.filter((f) => !packed.includes(f))).toEqual([]);
  });

  it("imports at run time only its own dependencies and Node's built-ins", () => {
    const installed = join(app, "node_modules", "virtwarden");
    const deps = new Set(Object.keys(ROOT_PKG.dependencies));
    const builtins = new Set(builtinModules);
    const used = new Map<string, string>();
    for (const f of listFiles(join(installed, "dist")).filter((f) => f.endsWith(".js"))) {
      const src = readFileSync(f, "utf8");
      // Statements only (a line opening with import/export, or closing a multi-line import with
      // `} from`), and dynamic imports: a comment quoting `from "2"` is no import.
      const specs = [
        ...src.matchAll(/^(?:import|export|\})[^\n]*?\bfrom\s*["']([^"']+)["']/gm),
        ...src.matchAll(/^import\s*["']([^"']+)["']/gm),
        ...src.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g),
      ];
      for (const m of specs) {
        const spec = m[1] ?? "";
        if (spec.startsWith(".") || spec.startsWith("node:") || builtins.has(spec)) continue;
        const pkg = spec.startsWith("@")
          ? spec.split("/").slice(0, 2).join("/")
          : (spec.split("/")[0] ?? spec);
        used.set(pkg, relative(installed, f));
      }
      // A pino transport names its module in a string, not an import.
      for (const m of src.matchAll(/\btarget:\s*["']([^"']+)["']/g))
        used.set(m[1] ?? "", relative(installed, f));
    }
    // The scan does see imports (not vacuous): these are imported by the compiled CLI.
    for (const pkg of ["@kubernetes/client-node", "ajv", "pino", "prom-client", "pino-pretty"])
      expect(used.has(pkg), pkg).toBe(true);
    const missing = [...used].filter(([pkg]) => !deps.has(pkg)).map(([pkg, f]) => `${pkg} (${f})`);
    expect(missing).toEqual([]);
    for (const build of ["tsx", "typescript", "vitest", "@biomejs/biome", "esbuild"]) {
      expect(deps.has(build)).toBe(false);
      expect(existsSync(join(app, "node_modules", build))).toBe(false);
    }
    for (const pkg of used.keys()) expect(existsSync(join(app, "node_modules", pkg)), pkg).toBe(true);
  });

  it("installs under --engine-strict and its bin runs the compiled CLI", async () => {
    const bin = join(app, "node_modules", ".bin", "virtwarden");
    const { stdout } = await run(bin, ["--version"], { cwd: app });
    expect(stdout).toContain(ROOT_PKG.version);
    const examples = join(app, "node_modules", "virtwarden", "examples");
    const v = await run(bin, ["validate", examples], { cwd: app });
    expect(v.stdout + v.stderr).not.toMatch(/error/i);
  });

  it("runs the shipped examples on the simulator until every VM runs, with pretty logs, uncoloured off a terminal", async () => {
    const bin = join(app, "node_modules", ".bin", "virtwarden");
    const examples = join(app, "node_modules", "virtwarden", "examples");
    const state = join(work, "state");
    const p = spawn(
      bin,
      [
        "run",
        examples,
        "--simulate",
        "--state-dir",
        state,
        "--metrics-addr",
        "127.0.0.1:0",
        "--log-format",
        "pretty",
      ],
      { cwd: app, stdio: ["ignore", "pipe", "pipe"] },
    );
    children.push(p);
    let log = "";
    p.stdout?.on("data", (b: Buffer) => {
      log += b.toString();
    });
    p.stderr?.on("data", (b: Buffer) => {
      log += b.toString();
    });
    const expected = countVms(examples);
    expect(expected).toBeGreaterThan(0);
    let table = "";
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline && p.exitCode === null) {
      try {
        table = (await run(bin, ["get", "vm", "--state-dir", state], { cwd: app })).stdout;
      } catch {
        // no view written yet
      }
      if (table.split("\n").filter((l) => /\bRunning\b/.test(l)).length === expected) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(p.exitCode, log).toBeNull();
    expect(table.split("\n").filter((l) => /\bRunning\b/.test(l)).length, `${table}\n${log}`).toBe(expected);
    // pino-pretty's lines, not JSON: the transport module was found in the installed tree.
    expect(log).toMatch(/^\[[\d:.]+\] INFO \(\d+\): virtwarden starting$/m);
    expect(log).not.toMatch(/^\{"level"/m);
    const exited = new Promise<number | null>((r) => p.once("exit", (code) => r(code)));
    p.kill("SIGTERM");
    expect(await exited).toBe(0);
  }, 90_000);
});

function countVms(dir: string): number {
  let n = 0;
  for (const f of listFiles(dir).filter((f) => /\.ya?ml$/.test(f)))
    n += readFileSync(f, "utf8").match(/^kind:\s*VirtualMachine\s*$/gm)?.length ?? 0;
  return n;
}

function listFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name));
}

function listTs(dir: string): string[] {
  return listFiles(dir).filter((f) => f.endsWith(".ts"));
}
