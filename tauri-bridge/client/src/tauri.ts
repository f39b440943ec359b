/**
 * The Tauri adapter: the sidecar spawned through `@tauri-apps/plugin-shell`
 * (`Command.sidecar` for a bundled binary such as uv, `Command.create` for a
 * program named in the capability's scope). Everything from the main entry
 * is re-exported.
 *
 * The shell plugin cannot close a child's stdin or send SIGTERM, so stop()
 * goes straight to POST /shutdown, then `Child.kill()`; killing the child also
 * drops its stdin pipe, and the sidecar exits on that EOF (and on --parent-pid).
 */

import { Command } from "@tauri-apps/plugin-shell";
import type { SpawnOptions, TerminatedPayload } from "@tauri-apps/plugin-shell";

import type { ProcessExit } from "./errors.js";
import type { ProcessHandlers, ProcessLauncher, SidecarCommand, SidecarProcess } from "./process.js";

export * from "./index.js";

const SIGNAL_NAMES: Readonly<Record<number, string>> = {
  1: "SIGHUP",
  2: "SIGINT",
  6: "SIGABRT",
  9: "SIGKILL",
  11: "SIGSEGV",
  15: "SIGTERM",
};

export function exitFromTauri(payload: TerminatedPayload): ProcessExit {
  const { code, signal } = payload;
  return { code, signal: signal === null ? null : (SIGNAL_NAMES[signal] ?? `SIG${signal}`) };
}

/** The shell plugin sends one line per event (with or without its line ending). */
function eachLine(data: string, emit: (line: string) => void): void {
  const lines = data.split(/\r\n|\n|\r/);
  if (lines.length > 1 && lines[lines.length - 1] === "") lines.pop();
  for (const line of lines) emit(line);
}

export interface TauriLauncherOptions {
  /**
   * true (default): `command.program` is an `externalBin` name ("binaries/uv")
   * run with `Command.sidecar`; false: a scope name run with `Command.create`.
   */
  sidecar?: boolean;
}

/** Start processes with Tauri's shell plugin (allowed by the app's capability file). */
export function tauriLauncher(options: TauriLauncherOptions = {}): ProcessLauncher {
  return {
    async spawn(command: SidecarCommand, handlers: ProcessHandlers): Promise<SidecarProcess> {
      const spawnOptions: SpawnOptions = { env: { ...command.env } };
      if (command.cwd !== undefined) spawnOptions.cwd = command.cwd;
      const args = [...command.args];
      const shell =
        options.sidecar === false
          ? Command.create(command.program, args, spawnOptions)
          : Command.sidecar(command.program, args, spawnOptions);
      shell.stdout.on("data", (data: string) => eachLine(data, handlers.stdout));
      shell.stderr.on("data", (data: string) => eachLine(data, handlers.stderr));
      shell.on("error", (message: string) => handlers.stderr(`(shell plugin) ${message}`));
      shell.on("close", (payload: TerminatedPayload) => handlers.exit(exitFromTauri(payload)));
      const child = await shell.spawn();
      return {
        pid: child.pid,
        kill: () => child.kill(),
      };
    },
  };
}
