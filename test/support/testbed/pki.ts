/**
 * Certificates for TLS tests, made with openssl: a CA, server certificates carrying the host's IP
 * as subjectAltName, and a client certificate — laid out the way libvirt expects under a
 * pkipath (cacert.pem, clientcert.pem, clientkey.pem).
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

function openssl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

export interface Pki {
  dir: string;
  caCert: string;
  /** A pkipath for clients: cacert.pem, clientcert.pem, clientkey.pem. */
  clientDir: string;
  serverCert(ip: string): { cert: string; key: string };
}

export function makePki(dir: string, name = "virtwarden-test-ca"): Pki {
  mkdirSync(dir, { recursive: true });
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
      "cacert.pem",
      "-days",
      "2",
      "-subj",
      `/CN=${name}`,
    ],
    dir,
  );
  const clientDir = join(dir, "client");
  mkdirSync(clientDir, { recursive: true });
  const sign = (
    prefix: string,
    subject: string,
    ext: string,
    outDir: string,
    certName: string,
    keyName: string,
  ) => {
    writeFileSync(join(dir, `${prefix}.ext`), ext);
    openssl(
      [
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        join(outDir, keyName),
        "-out",
        `${prefix}.csr`,
        "-subj",
        subject,
      ],
      dir,
    );
    openssl(
      [
        "x509",
        "-req",
        "-in",
        `${prefix}.csr`,
        "-CA",
        "cacert.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        join(outDir, certName),
        "-days",
        "2",
        "-extfile",
        `${prefix}.ext`,
      ],
      dir,
    );
  };
  sign(
    "client",
    "/O=virtwarden/CN=controller",
    "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n",
    clientDir,
    "clientcert.pem",
    "clientkey.pem",
  );
  execFileSync("cp", [join(dir, "cacert.pem"), join(clientDir, "cacert.pem")]);
  return {
    dir,
    caCert: join(dir, "cacert.pem"),
    clientDir,
    serverCert: (ip: string) => {
      const out = join(dir, `server-${ip}`);
      mkdirSync(out, { recursive: true });
      sign(
        `server-${ip}`,
        `/O=virtwarden/CN=${ip}`,
        `subjectAltName=IP:${ip}\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n`,
        out,
        "servercert.pem",
        "serverkey.pem",
      );
      return { cert: join(out, "servercert.pem"), key: join(out, "serverkey.pem") };
    },
  };
}
