import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 300_000,
    // Integration suites start real daemons (libvirtd, kube-apiserver, prometheus) on a 2-core
    // machine: run files in a few forks rather than one per core to keep their timing sane.
    pool: "forks",
    maxWorkers: 2,
  },
});
