#!/usr/bin/env node
/**
 * The power switch of a network-namespace test host, for the exec fence and power agents:
 *   power-switch.mjs HOST_DIR off     SIGKILL the host's libvirtd and every QEMU it started, and
 *                                     take its link down: a host switched off answers nothing
 *   power-switch.mjs HOST_DIR on      its link up again (unless its cable is cut: power.json
 *                                     "cut"), and its libvirtd started as the test bed first did
 *                                     (its guests stay off: they were killed)
 *   power-switch.mjs HOST_DIR status  prints "on" or "off"
 * By pid only (HOST_DIR/power.json and the QEMU pid files under HOST_DIR/run/qemu), never by name.
 * What "on" starts lives in the host's network namespace; the test bed's teardown ends it there.
 * Exit 0 on success; 2 on a usage error; 1 when the host could not be switched.
 */
import { execFileSync, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const [dir, action] = process.argv.slice(2);
if (!dir || !["off", "on", "status"].includes(action ?? "")) {
  console.error("usage: power-switch.mjs HOST_DIR off|on|status");
  process.exit(2);
}

/** Alive and not a zombie (a killed child its parent has not reaped yet is off already). */
function alive(pid) {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

function readPower() {
  return JSON.parse(readFileSync(join(dir, "power.json"), "utf8"));
}

/** Records the power state and sets the veth from it: up only when on and the cable is whole. */
function setOff(off) {
  const power = readPower();
  writeFileSync(join(dir, "power.json"), JSON.stringify({ ...power, off }));
  if (!power.veth) return;
  try {
    execFileSync("ip", ["link", "set", power.veth, off || power.cut ? "down" : "up"], { stdio: "ignore" });
  } catch (e) {
    console.error(`ip link set ${power.veth}: ${e.message}`);
    process.exit(1);
  }
}

function pids() {
  const { daemonPid, reaperPid } = JSON.parse(readFileSync(join(dir, "power.json"), "utf8"));
  const out = [daemonPid];
  const qdir = join(dir, "run", "qemu");
  if (existsSync(qdir)) {
    for (const f of readdirSync(qdir)) {
      if (!f.endsWith(".pid") || f === "driver.pid") continue;
      const p = Number(readFileSync(join(qdir, f), "utf8").trim());
      if (p > 0) out.push(p);
    }
  }
  // The reaper (tini) last: killed before its children it would orphan them to PID 1.
  out.push(reaperPid);
  return out.filter((p) => p > 0 && alive(p));
}

if (action === "status") {
  console.log(pids().length === 0 ? "off" : "on");
  process.exit(0);
}
if (action === "on") {
  setOff(false);
  if (pids().length > 0) {
    console.log("on");
    process.exit(0);
  }
  const power = readPower();
  // What the killed daemon left: a pid file and a socket the new one must not be taken for.
  rmSync(power.pidFile, { force: true });
  rmSync(power.socket, { force: true });
  const child = spawn(power.start[0], power.start.slice(1), { stdio: "ignore", detached: true });
  child.unref();
  let daemonPid = 0;
  for (let i = 0; i < 400 && !(daemonPid > 0 && existsSync(power.socket)); i++) {
    await new Promise((r) => setTimeout(r, 50));
    try {
      daemonPid = Number(readFileSync(power.pidFile, "utf8").trim());
    } catch {}
  }
  if (!(daemonPid > 0 && existsSync(power.socket))) {
    console.error("libvirtd did not come up within 20 s");
    process.exit(1);
  }
  writeFileSync(join(dir, "power.json"), JSON.stringify({ ...power, daemonPid, reaperPid: child.pid }));
  try {
    execFileSync("virsh", ["-q", "-c", power.unixUri, "pool-start", "default"], { stdio: "ignore" });
  } catch {
    // already active
  }
  console.log("on");
  process.exit(0);
}
for (const p of pids()) {
  try {
    process.kill(p, "SIGKILL");
  } catch {
    // already gone
  }
}
for (let i = 0; i < 50 && pids().length > 0; i++) await new Promise((r) => setTimeout(r, 20));
const left = pids();
if (left.length > 0) {
  console.error(`still running: ${left.join(" ")}`);
  process.exit(1);
}
setOff(true);
console.log("off");
