/**
 * Stopping a sidecar process, gentlest first: close its stdin (it exits on
 * EOF), SIGTERM, POST /shutdown, then kill. Each step the platform supports is
 * tried in turn and waits, with a deadline, for the exit.
 */

import type { ProcessExit } from "./errors.js";
import { TOKEN_HEADER } from "./http.js";
import type { FetchLike, SidecarConnection } from "./http.js";
import type { SidecarProcess } from "./process.js";
import { within } from "./timers.js";

export type StopMethod = "stdin" | "sigterm" | "http" | "kill" | "not-running";

export interface StopResult {
  /** The step after which it exited ("kill" with a null exit: it did not, even then). */
  method: StopMethod;
  exit: ProcessExit | null;
}

export interface StopTarget {
  proc: SidecarProcess;
  /** Settles when the process has ended. */
  exited: Promise<ProcessExit>;
  /** Known once the ready line was read: enables the HTTP step. */
  connection: SidecarConnection | null;
}

export interface StopOptions {
  /** How long each step waits for the exit. */
  stepTimeoutMs: number;
  fetch?: FetchLike | undefined;
}

const KILL_WAIT_MS = 3_000;
const SHUTDOWN_REQUEST_MS = 3_000;

async function postShutdown(connection: SidecarConnection, fetchImpl: FetchLike): Promise<void> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), SHUTDOWN_REQUEST_MS);
  try {
    await fetchImpl(`${connection.url}/shutdown`, {
      method: "POST",
      headers: { [TOKEN_HEADER]: connection.token },
      signal: abort.signal,
    });
  } finally {
    clearTimeout(timer);
  }
}

export async function stopProcess(target: StopTarget, options: StopOptions): Promise<StopResult> {
  const { proc, connection } = target;
  const fetchImpl: FetchLike = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const closeStdin = proc.closeStdin?.bind(proc);
  const terminate = proc.terminate?.bind(proc);
  const steps: Array<[StopMethod, (() => Promise<void>) | undefined]> = [
    ["stdin", closeStdin],
    ["sigterm", terminate],
    ["http", connection ? () => postShutdown(connection, fetchImpl) : undefined],
    ["kill", () => proc.kill()],
  ];
  for (const [method, step] of steps) {
    if (!step) continue;
    try {
      await step();
    } catch {
      // the step failed (pipe gone, no such process, refused): the wait below tells
    }
    const exit = await within(target.exited, method === "kill" ? KILL_WAIT_MS : options.stepTimeoutMs);
    if (exit) return { method, exit };
  }
  return { method: "kill", exit: null };
}
