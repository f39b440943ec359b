/**
 * The Node adapter: the sidecar as a `child_process` (tests, the demo server,
 * plain Node tools). Everything from the main entry is re-exported.
 */

import { spawn } from "node:child_process";
import type { ChildProcessWithoutNullStreams } from "node:child_process";

import { launcherCommand } from "./commands.js";
import type { LauncherCommandOptions } from "./commands.js";
import type { ProcessExit } from "./errors.js";
import { LineSplitter } from "./process.js";
import type { ProcessHandlers, ProcessLauncher, SidecarCommand, SidecarProcess } from "./process.js";
import { Sidecar } from "./sidecar.js";
import type { SidecarOptions } from "./sidecar.js";

export * from "./index.js";

// After the process exited, how long its pipes may stay open (held by a child
// it left behind) before the exit is reported anyway.
const CLOSE_GRACE_MS = 500;

function waitSpawned(child: ChildProcessWithoutNullStreams): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error): void => {
      child.off("spawn", onSpawn);
      reject(error);
    };
    const onSpawn = (): void => {
      child.off("error", onError);
      resolve();
    };
    child.once("error", onError);
    child.once("spawn", onSpawn);
  });
}

/** Start processes with `child_process.spawn`: stdin, stdout and stderr are pipes. */
export function nodeLauncher(): ProcessLauncher {
  return {
    async spawn(command: SidecarCommand, handlers: ProcessHandlers): Promise<SidecarProcess> {
      const child = spawn(command.program, [...command.args], {
        cwd: command.cwd,
        env: { ...process.env, ...command.env },
        stdio: ["pipe", "pipe", "pipe"],
        windowsHide: true,
      });
      await waitSpawned(child);
      const out = new LineSplitter(handlers.stdout);
      const err = new LineSplitter(handlers.stderr);
      child.stdout.setEncoding("utf8").on("data", (chunk: string) => out.push(chunk));
      child.stderr.setEncoding("utf8").on("data", (chunk: string) => err.push(chunk));
      child.stdin.on("error", () => undefined); // EPIPE once it exited: the exit says more
      child.on("error", () => undefined); // a failed kill(): the stop sequence moves on

      let reported = false;
      const report = (exit: ProcessExit): void => {
        if (reported) return;
        reported = true;
        out.flush();
        err.flush();
        handlers.exit(exit);
      };
      child.once("exit", (code, signal) => {
        const exit = { code, signal };
        child.once("close", () => report(exit));
        setTimeout(() => report(exit), CLOSE_GRACE_MS).unref();
      });

      const signal = (name: NodeJS.Signals) => async (): Promise<void> => {
        if (child.exitCode === null && child.signalCode === null) child.kill(name);
      };
      const proc: SidecarProcess = {
        pid: child.pid,
        closeStdin: async () => {
          child.stdin.end();
        },
        kill: signal("SIGKILL"),
      };
      // Windows has no SIGTERM: Node would kill outright; skip to POST /shutdown instead.
      if (process.platform !== "win32") proc.terminate = signal("SIGTERM");
      return proc;
    },
  };
}

export interface NodeSidecarOptions
  extends Omit<LauncherCommandOptions, "parentPid">, Omit<SidecarOptions, "launcher" | "command"> {
  /** Pass this process's pid as --parent-pid (default true). */
  watchParent?: boolean;
}

/** A {@link Sidecar} that runs the `geolibre-sidecar` launcher as a child of this process. */
export function nodeSidecar(options: NodeSidecarOptions): Sidecar {
  const { program, env, port, dev, extraArgs, watchParent, ...rest } = options;
  const command = launcherCommand({
    program,
    env: env ?? {},
    port: port ?? 0,
    dev: dev ?? false,
    extraArgs: extraArgs ?? [],
    ...(watchParent === false ? {} : { parentPid: process.pid }),
  });
  return new Sidecar({ ...rest, launcher: nodeLauncher(), command });
}
