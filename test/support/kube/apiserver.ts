/**
 * A real Kubernetes API server for tests, envtest style: etcd (Debian's etcd-server) and a
 * kube-apiserver built from the k8s.io/kubernetes Go module by build-kube-apiserver.sh (cached
 * in ~/.cache/virtwarden by version), both on loopback with free ports, serving certificates made
 * with openssl, a static admin token, a service-account key pair and RBAC. A kubeconfig is
 * written for kubectl and @kubernetes/client-node. Both processes are stopped by pid.
 *
 * For chaos tests either process can be killed and started again on the same ports and data
 * (`restartApiServer`, `restartEtcd`): clients keep their kubeconfig, etcd keeps its data.
 *
 * Under CI=true anything missing is an error, never a skip.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

const ROOT = join(import.meta.dirname, "..", "..", "..");

export interface KubeApiServer {
  url: string;
  token: string;
  kubeconfig: string;
  dir: string;
  /**
   * The API server's audit log (JSON lines, level Metadata: who, verb, URI, user agent; no
   * bodies), e.g. to check what a client identifies itself as.
   */
  auditLog: string;
  kubectl(
    args: string[],
    opts?: { input?: string; allowFail?: boolean },
  ): { status: number; stdout: string; stderr: string };
  stop(): Promise<void>;
  /** The current pids (they change across restarts). */
  pids(): { apiServer: number; etcd: number };
  /**
   * SIGKILL the kube-apiserver, wait `downMs` (default 0), start it again on the same port and
   * etcd, and resolve once it is ready again.
   */
  restartApiServer(opts?: { downMs?: number }): Promise<void>;
  /**
   * SIGKILL etcd, wait `downMs` (default 0), start it again on the same data directory and ports,
   * and resolve once the API server answers ready again (it reconnects by itself).
   */
  restartEtcd(opts?: { downMs?: number }): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const addr = s.address();
      s.close(() => resolve(typeof addr === "object" && addr ? addr.port : 0));
    });
  });
}

function ensureEtcd(): string {
  try {
    return execFileSync("sh", ["-c", "command -v etcd"], { encoding: "utf8" }).trim();
  } catch {
    execFileSync("bash", [join(ROOT, "scripts/install-test-deps.sh")], { stdio: "inherit" });
    return "/usr/bin/etcd";
  }
}

function apiServerBinary(): string {
  return execFileSync("bash", [join(ROOT, "test/support/kube/build-kube-apiserver.sh")], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
    timeout: 30 * 60_000,
  }).trim();
}

function openssl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

async function waitReady(
  url: string,
  token: string,
  proc: ChildProcess,
  log: () => string,
  timeoutMs = 90_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null)
      throw new ApiServerExited(`kube-apiserver exited with ${proc.exitCode}:\n${log()}`);
    try {
      const out = execFileSync(
        "curl",
        ["-sk", "-m", "2", "-H", `Authorization: Bearer ${token}`, `${url}/readyz`],
        { encoding: "utf8" },
      );
      if (out.trim() === "ok") return;
    } catch {}
    await sleep(250);
  }
  throw new Error(`kube-apiserver not ready within ${timeoutMs} ms:\n${log().slice(-3000)}`);
}

class ApiServerExited extends Error {}

/**
 * Free ports are picked by binding port 0 and closing it: another test file may take one before
 * etcd or the API server binds it. An API server that exits while starting is started again,
 * on new ports, up to three times.
 */
export async function startKubeApiServer(): Promise<KubeApiServer> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce();
    } catch (e) {
      if (!(e instanceof ApiServerExited) || attempt >= 3) throw e;
      const why = (e.message.split("--- etcd")[0] ?? "")
        .split("\n")
        .filter((l) => /error|fail|^E\d{4}/i.test(l))
        .slice(-3)
        .join("\n");
      console.warn(`kube-apiserver did not start (attempt ${attempt}), again on new ports:\n${why}`);
    }
  }
}

async function startOnce(): Promise<KubeApiServer> {
  const etcdBin = ensureEtcd();
  const apiBin = apiServerBinary();
  const dir = mkdtempSync(join(tmpdir(), "vw-kube-"));
  const token = `vw-${Math.random().toString(36).slice(2)}${Date.now().toString(36)}`;
  openssl(
    [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      "ca.key",
      "-out",
      "ca.crt",
      "-days",
      "2",
      "-subj",
      "/CN=vw-test-ca",
    ],
    dir,
  );
  writeFileSync(
    join(dir, "serving.ext"),
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
  );
  openssl(
    [
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      "serving.key",
      "-out",
      "serving.csr",
      "-subj",
      "/CN=127.0.0.1",
    ],
    dir,
  );
  openssl(
    [
      "x509",
      "-req",
      "-in",
      "serving.csr",
      "-CA",
      "ca.crt",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      "serving.crt",
      "-days",
      "2",
      "-extfile",
      "serving.ext",
    ],
    dir,
  );
  openssl(["genrsa", "-out", "sa.key", "2048"], dir);
  openssl(["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"], dir);
  writeFileSync(join(dir, "tokens.csv"), `${token},admin,admin,system:masters\n`);

  const [etcdClient, etcdPeer, apiPort] = [await freePort(), await freePort(), await freePort()];
  let etcdLog = "";
  const etcdArgs = [
    "--data-dir",
    join(dir, "etcd"),
    "--listen-client-urls",
    `http://127.0.0.1:${etcdClient}`,
    "--advertise-client-urls",
    `http://127.0.0.1:${etcdClient}`,
    "--listen-peer-urls",
    `http://127.0.0.1:${etcdPeer}`,
    "--initial-advertise-peer-urls",
    `http://127.0.0.1:${etcdPeer}`,
    "--initial-cluster",
    `default=http://127.0.0.1:${etcdPeer}`,
    "--unsafe-no-fsync",
  ];
  const spawnEtcd = (): ChildProcess => {
    const p = spawn(etcdBin, etcdArgs, { stdio: ["ignore", "ignore", "pipe"] });
    p.stderr?.on("data", (b: Buffer) => {
      etcdLog = (etcdLog + b.toString()).slice(-20_000);
    });
    return p;
  };
  let etcd = spawnEtcd();
  let apiLog = "";
  const apiArgs = [
    `--etcd-servers=http://127.0.0.1:${etcdClient}`,
    "--bind-address=127.0.0.1",
    `--secure-port=${apiPort}`,
    `--tls-cert-file=${join(dir, "serving.crt")}`,
    `--tls-private-key-file=${join(dir, "serving.key")}`,
    `--client-ca-file=${join(dir, "ca.crt")}`,
    `--token-auth-file=${join(dir, "tokens.csv")}`,
    `--service-account-key-file=${join(dir, "sa.pub")}`,
    `--service-account-signing-key-file=${join(dir, "sa.key")}`,
    "--service-account-issuer=https://kubernetes.default.svc",
    "--authorization-mode=RBAC",
    "--service-cluster-ip-range=10.96.0.0/24",
    "--disable-admission-plugins=ServiceAccount",
    "--allow-privileged=true",
    `--cert-dir=${join(dir, "certs")}`,
    `--audit-policy-file=${join(dir, "audit-policy.yaml")}`,
    `--audit-log-path=${join(dir, "audit.log")}`,
  ];
  writeFileSync(
    join(dir, "audit-policy.yaml"),
    "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n",
  );
  const spawnApi = (): ChildProcess => {
    const p = spawn(apiBin, apiArgs, { stdio: ["ignore", "ignore", "pipe"] });
    p.stderr?.on("data", (b: Buffer) => {
      apiLog = (apiLog + b.toString()).slice(-50_000);
    });
    return p;
  };
  let api = spawnApi();
  const url = `https://127.0.0.1:${apiPort}`;
  const signal = (p: ChildProcess, sig: NodeJS.Signals) => {
    try {
      if (p.exitCode === null && p.pid) process.kill(p.pid, sig);
    } catch {
      // already gone
    }
  };
  const stop = async () => {
    for (const p of [api, etcd]) signal(p, "SIGTERM");
    for (let i = 0; i < 40 && (api.exitCode === null || etcd.exitCode === null); i++) await sleep(50);
    for (const p of [api, etcd]) signal(p, "SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  };
  const onExit = () => {
    for (const p of [api, etcd]) signal(p, "SIGKILL");
  };
  const killAndWait = async (p: ChildProcess) => {
    if (p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise<void>((r) => p.once("exit", () => r()));
    signal(p, "SIGKILL");
    await gone;
  };
  const apiLogTail = () => `${apiLog.slice(-2500)}\n--- etcd (its last lines) ---\n${etcdLog.slice(-500)}`;
  process.once("exit", onExit);
  try {
    await waitReady(url, token, api, apiLogTail);
  } catch (e) {
    await stop();
    throw e;
  }
  const kubeconfig = join(dir, "kubeconfig");
  writeFileSync(
    kubeconfig,
    `apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: ${url}
    certificate-authority: ${join(dir, "ca.crt")}
users:
- name: admin
  user:
    token: ${token}
contexts:
- name: test
  context: {cluster: test, user: admin, namespace: default}
current-context: test
`,
  );
  const kubectl: KubeApiServer["kubectl"] = (args, opts = {}) => {
    try {
      const stdout = execFileSync("kubectl", ["--kubeconfig", kubeconfig, ...args], {
        encoding: "utf8",
        input: opts.input,
        stdio: ["pipe", "pipe", "pipe"],
        // The API server's /metrics alone is several MB.
        maxBuffer: 256 << 20,
      });
      return { status: 0, stdout, stderr: "" };
    } catch (e) {
      const err = e as { status?: number; stdout?: string; stderr?: string };
      if (!opts.allowFail) throw new Error(`kubectl ${args.join(" ")}: ${err.stderr || String(e)}`);
      return { status: err.status ?? 1, stdout: err.stdout ?? "", stderr: err.stderr ?? "" };
    }
  };
  return {
    url,
    token,
    kubeconfig,
    dir,
    auditLog: join(dir, "audit.log"),
    kubectl,
    stop: async () => {
      process.removeListener("exit", onExit);
      await stop();
    },
    pids: () => ({ apiServer: api.pid ?? 0, etcd: etcd.pid ?? 0 }),
    restartApiServer: async ({ downMs = 0 } = {}) => {
      await killAndWait(api);
      if (downMs > 0) await sleep(downMs);
      api = spawnApi();
      await waitReady(url, token, api, apiLogTail);
    },
    restartEtcd: async ({ downMs = 0 } = {}) => {
      await killAndWait(etcd);
      if (downMs > 0) await sleep(downMs);
      etcd = spawnEtcd();
      // The API server reconnects to etcd by itself; ready again means it did.
      await waitReady(url, token, api, apiLogTail, 120_000);
    },
  };
}
