/**
 * The injectable process interface: how the client starts the sidecar and
 * signals it, with nothing about any one platform. Adapters: Node's
 * child_process (`@geolibre/ml-client/node`) and Tauri's shell plugin
 * (`@geolibre/ml-client/tauri`).
 */

import type { ProcessExit } from "./errors.js";

export type { ProcessExit } from "./errors.js";

/** What to run. The environment is added to the platform's inherited one. */
export interface SidecarCommand {
  /** A path (Node), or the scope name of a shell-plugin command (Tauri). */
  program: string;
  args: readonly string[];
  env?: Readonly<Record<string, string>>;
  cwd?: string;
}

/** Called by the adapter; every line without its line ending. */
export interface ProcessHandlers {
  stdout(line: string): void;
  stderr(line: string): void;
  /** Once, after the process ended (and its output was delivered). */
  exit(exit: ProcessExit): void;
}

/** A started process. Optional methods are what the platform cannot do. */
export interface SidecarProcess {
  readonly pid: number | undefined;
  /** Close our end of its stdin: the sidecar exits on EOF. */
  closeStdin?(): Promise<void>;
  /** Ask it to stop (SIGTERM on Unix). */
  terminate?(): Promise<void>;
  /** Stop it now (SIGKILL, TerminateProcess). Always available. */
  kill(): Promise<void>;
}

/** Starts processes; rejects (with the reason) when the program cannot be started at all. */
export interface ProcessLauncher {
  spawn(command: SidecarCommand, handlers: ProcessHandlers): Promise<SidecarProcess>;
}

/** The program and arguments as one line for messages; never the environment. */
export function describeCommand(command: SidecarCommand): string {
  const quote = (part: string): string => (/[\s"']/.test(part) ? JSON.stringify(part) : part);
  return [command.program, ...command.args].map(quote).join(" ");
}

/** Splits a stream of text chunks into lines (LF, CRLF or CR endings). */
export class LineSplitter {
  private rest = "";

  constructor(private readonly onLine: (line: string) => void) {}

  push(chunk: string): void {
    const parts = (this.rest + chunk).split(/\r\n|\n|\r(?!$)/);
    this.rest = parts.pop() ?? "";
    for (const line of parts) this.onLine(line);
  }

  /** The stream ended: a last line without a line ending still counts. */
  flush(): void {
    const last = this.rest.replace(/\r$/, "");
    this.rest = "";
    if (last) this.onLine(last);
  }
}

/** Keeps the last `limit` lines (the sidecar's stderr, for error messages). */
export class LineTail {
  private readonly lines: string[] = [];

  constructor(readonly limit: number) {}

  add(line: string): void {
    this.lines.push(line);
    if (this.lines.length > this.limit) this.lines.splice(0, this.lines.length - this.limit);
  }

  snapshot(): string[] {
    return [...this.lines];
  }

  clear(): void {
    this.lines.length = 0;
  }
}
