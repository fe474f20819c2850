#!/usr/bin/env node
/**
 * virtwarden's command line (commander). The only place that knows concrete stores and providers.
 * Exit codes: 0 success, 1 failure (invalid input, a failed operation), 2 usage error.
 */
import { Command, CommanderError } from "commander";
import { diffCommand } from "./diff.js";
import { describeCommand, eventsCommand, getCommand } from "./inspect.js";
import { restartCommand } from "./restart.js";
import { runCommand } from "./run.js";
import { simCommand } from "./sim.js";
import { validateCommand } from "./validate.js";
import { VERSION } from "./version.js";
import { whatifCommand } from "./whatif.js";

export function buildProgram(): Command {
  const program = new Command()
    .name("virtwarden")
    .description("Declarative reconciler for libvirt/KVM virtual machines")
    .version(VERSION, "-v, --version")
    .showHelpAfterError()
    .exitOverride();
  program.addCommand(runCommand());
  program.addCommand(validateCommand());
  program.addCommand(getCommand());
  program.addCommand(describeCommand());
  program.addCommand(eventsCommand());
  program.addCommand(diffCommand());
  program.addCommand(whatifCommand());
  program.addCommand(simCommand());
  program.addCommand(restartCommand());
  // addCommand does not pass these settings on: usage errors of subcommands must exit 2 too.
  const settle = (cmds: readonly Command[]): void => {
    for (const c of cmds) {
      c.exitOverride().showHelpAfterError();
      settle(c.commands);
    }
  };
  settle(program.commands);
  return program;
}

async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === "commander.helpDisplayed" || e.code === "commander.version" || e.exitCode === 0)
        return 0;
      return 2;
    }
    process.stderr.write(`virtwarden: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
}

const code = await main(process.argv);
process.exitCode = code;
