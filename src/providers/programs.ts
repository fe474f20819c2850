/**
 * Every external program virtwarden itself spawns, and the Debian package that installs it.
 * Each caller takes argv[0] from this table (so the table cannot drift from the code), and the
 * image's Dockerfile must apt-get install every package listed (test/providers/programs.test.ts).
 * Exec agents run an operator-supplied argv: those programs are the operator's to install.
 */
export const PROGRAMS = {
  /** ipmi fence agent and ipmi power agent: `ipmitool -I lanplus chassis power …`. */
  ipmitool: { program: "ipmitool", debianPackage: "ipmitool", usedBy: ["fence ipmi", "power ipmi"] },
  /** libvirt qemu+ssh:// transport: an ssh tunnel to the remote daemon's socket. */
  ssh: {
    program: "ssh",
    debianPackage: "openssh-client",
    usedBy: ["libvirt qemu+ssh://", "run --git ssh:// (through git)"],
  },
  /** `run --git`: clone, fetch and check out the repository of manifests (src/gitops/git.ts). */
  git: { program: "git", debianPackage: "git", usedBy: ["run --git"] },
} as const;
