/**
 * Every external program virtwarden itself spawns, and the Debian package that installs it.
 * Each caller takes argv[0] from this table (so the table cannot drift from the code), and the
 * image's Dockerfile must apt-get install every package listed (test/providers/programs.test.ts).
 * Exec agents run an operator-supplied argv: those programs are the operator's to install.
 * The fence-agents agents run whichever fence_* program a Host names (bmc/fence-agent-api.ts); the
 * image installs Debian's fence-agents, which ships them all: `fence_ipmilan` stands for the set.
 */
export const PROGRAMS = {
  /** ipmi fence agent and ipmi power agent: `ipmitool -I lanplus chassis power …`. */
  ipmitool: { program: "ipmitool", debianPackage: "ipmitool", usedBy: ["fence ipmi", "power ipmi"] },
  /** fence-agents fence and power agents: any fence_* of the package, options on stdin. */
  fenceAgents: {
    program: "fence_ipmilan",
    debianPackage: "fence-agents",
    usedBy: ["fence fence-agents", "power fence-agents"],
  },
  /** libvirt qemu+ssh:// transport: an ssh tunnel to the remote daemon's socket. */
  ssh: {
    program: "ssh",
    debianPackage: "openssh-client",
    usedBy: ["libvirt qemu+ssh://", "run --git ssh:// (through git)"],
  },
  /** `run --git`: clone, fetch and check out the repository of manifests (src/gitops/git.ts). */
  git: { program: "git", debianPackage: "git", usedBy: ["run --git"] },
} as const;
