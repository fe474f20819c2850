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
      transport: { target: "pino-pretty", options: { colorize: true, translateTime: "HH:MM:ss.l" } },
    });
  }
  return pino({ level });
}

export const silentLogger: Logger = pino({ level: "silent" });
