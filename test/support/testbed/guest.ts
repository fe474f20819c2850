/**
 * The test guest that runs real code: Debian's cloud kernel with a busybox initramfs
 * (scripts/build-test-guest.sh builds it once and caches it). Booted directly (VM spec.boot), it
 * asks every NIC for a DHCP lease and keeps it renewed, like a real guest's client.
 */
import { execFileSync } from "node:child_process";
import { join } from "node:path";

const ROOT = join(import.meta.dirname, "..", "..", "..");

export interface TestGuest {
  kernel: string;
  initrd: string;
  cmdline: string;
}

let built: TestGuest | undefined;

export function testGuest(): TestGuest {
  if (built) return built;
  let out: string;
  try {
    out = execFileSync("bash", [join(ROOT, "scripts/build-test-guest.sh")], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`building the test guest failed: ${err.stderr?.trim() || err.message}`);
  }
  const dir = out.trim().split("\n").pop() as string;
  built = {
    kernel: join(dir, "vmlinuz"),
    initrd: join(dir, "initrd.img"),
    cmdline: "console=ttyS0 quiet panic=-1",
  };
  return built;
}
