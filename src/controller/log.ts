/**
 * Structured logging (pino): JSON lines by default, human-readable with `pretty`. Every
 * controller logs through a child carrying `controller` (and `key` where it applies).
 */
import { pino } from "pino";

export type Logger = pino.Logger;

export interface LoggerOptions {
  level?: string;
  pretty?: boolean;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const level = opts.level ?? "info";
  if (opts.pretty) {
    return pino({
      level,
      // Colours only on a terminal (the transport's worker cannot tell), and never under NO_COLOR.
      transport: {
        target: "pino-pretty",
        options: {
          colorize: process.stdout.isTTY === true && !process.env.NO_COLOR,
          translateTime: "HH:MM:ss.l",
        },
      },
    });
  }
  return pino({ level });
}

export const silentLogger: Logger = pino({ level: "silent" });
