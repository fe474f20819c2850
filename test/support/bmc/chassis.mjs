#!/usr/bin/env node
/**
 * ipmi_sim's chassis control program (lan.conf `chassis_control`), wired to a test host's power
 * switch: ipmi_sim runs
 *   chassis.mjs SWITCH_JSON DEVICE get power|boot …      prints "power:1" / "power:0", "boot:default"
 *   chassis.mjs SWITCH_JSON DEVICE set power 0|1 …       switches the host off / on
 *   chassis.mjs SWITCH_JSON DEVICE set shutdown 1        a soft-off (ACPI) request: the host's OS
 *                                                        shuts down (switch off), or, with
 *                                                        "softOff": "ignore", it never does
 * SWITCH_JSON names a file holding the switch's argv, "{action}" standing for on | off | status
 * (the test bed's power-switch.mjs, or a state-file script). Every call is appended to the log
 * file next to it (SWITCH_JSON + ".log"), so a test can see what the BMC was asked.
 *
 * Power off is switched before the answer (IPMI's "chassis control: power down" is immediate);
 * power on is started and answered at once, as a BMC does — the host's status says on when it
 * is up. Exit 0 on success, 1 with a message on stdout otherwise (ipmi_sim's convention).
 */
import { execFileSync, spawn } from "node:child_process";
import { appendFileSync, readFileSync } from "node:fs";

const [config, device, op, ...args] = process.argv.slice(2);
const { argv, softOff = "off" } = JSON.parse(readFileSync(config, "utf8"));
const withAction = (a) => argv.map((x) => x.replaceAll("{action}", a));
appendFileSync(`${config}.log`, `${device} ${op} ${args.join(" ")}\n`);

function fail(msg) {
  console.log(msg);
  process.exit(1);
}

if (op === "get") {
  const out = [];
  for (const p of args) {
    if (p === "power") {
      const st = execFileSync(withAction("status")[0], withAction("status").slice(1)).toString().trim();
      if (st !== "on" && st !== "off") fail(`power switch status said "${st}"`);
      out.push(`power:${st === "on" ? 1 : 0}`);
    } else if (p === "boot") out.push("boot:default");
    else fail(`Invalid parameter: ${p}`);
  }
  console.log(out.join("\n"));
  process.exit(0);
}
if (op === "set") {
  for (let i = 0; i < args.length; i += 2) {
    const [p, v] = [args[i], args[i + 1]];
    if ((p === "power" && v === "0") || (p === "shutdown" && v === "1" && softOff === "off")) {
      const off = withAction("off");
      try {
        execFileSync(off[0], off.slice(1), { stdio: "ignore" });
      } catch (e) {
        fail(`power switch off: ${e.message}`);
      }
    } else if (p === "power" && v === "1") {
      const on = withAction("on");
      spawn(on[0], on.slice(1), { stdio: "ignore", detached: true }).unref();
    } else if (p === "shutdown") {
      // an OS that ignores the ACPI request: still on
    } else if (p === "boot") {
      // boot device: nothing to do for a test host
    } else fail(`Invalid parameter: ${p} ${v}`);
  }
  process.exit(0);
}
fail(`Unknown operation: ${op}`);
