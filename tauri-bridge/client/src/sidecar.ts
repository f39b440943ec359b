/**
 * The sidecar's life cycle in the app: spawn it through an injectable
 * {@link ProcessLauncher}, read its ready line with a deadline, restart it
 * with backoff when it exits on its own, and stop it when the app closes
 * (close stdin, then SIGTERM, then POST /shutdown, then kill).
 */

import { SidecarStartError } from "./errors.js";
import type { ProcessExit, StartFailure } from "./errors.js";
import { parseReadyLine } from "./handshake.js";
import type { ConnectionSource, FetchLike, SidecarConnection, SidecarEndpoint } from "./http.js";
import { describeCommand, LineTail } from "./process.js";
import type { ProcessLauncher, SidecarCommand, SidecarProcess } from "./process.js";
import { RestartPolicy } from "./restart.js";
import type { RestartPolicyOptions } from "./restart.js";
import { stopProcess } from "./stop.js";
import type { StopResult } from "./stop.js";
import { delay, within } from "./timers.js";

export type { StopMethod, StopResult } from "./stop.js";

export type SidecarState = "idle" | "starting" | "ready" | "restarting" | "stopping" | "stopped" | "failed";

export interface SidecarEvents {
  state: SidecarState;
  ready: SidecarConnection;
  /** The process ended; `expected` when stop() ended it. */
  exit: { exit: ProcessExit; expected: boolean; stderrTail: string[] };
  restarting: { attempt: number; delayMs: number; after: ProcessExit | null };
  /** Gave up: the first start failed, or restarts ran out. */
  failed: Error;
  stderr: string;
}

export interface SidecarOptions {
  launcher: ProcessLauncher;
  /** What to run; a function is called before every (re)start. */
  command: SidecarCommand | (() => SidecarCommand | Promise<SidecarCommand>);
  /** Deadline for the ready line (default 180 000 ms: a first `uv run` may sync an environment). */
  readyTimeoutMs?: number;
  /** Lines of stderr kept for error messages (default 200). */
  stderrLines?: number;
  /** Restart rules, or false to never restart. */
  restart?: RestartPolicyOptions | false;
  /** How long each stop step waits for the exit (default 8000 ms). */
  stopStepTimeoutMs?: number;
  /** The fetch used for the POST /shutdown fallback. */
  fetch?: FetchLike;
}

interface Run {
  proc: SidecarProcess | null;
  command: SidecarCommand;
  tail: LineTail;
  connection: SidecarConnection | null;
  exit: ProcessExit | null;
  exited: Promise<ProcessExit>;
  readyAt: number;
}

interface Waiter {
  resolve(connection: SidecarConnection): void;
  reject(error: unknown): void;
}

const DEFAULT_READY_TIMEOUT_MS = 180_000;
const DEFAULT_STDERR_LINES = 200;
const DEFAULT_STOP_STEP_MS = 8_000;
const KILL_WAIT_MS = 3_000;
// After a call found no sidecar, how long to wait for its exit to be reported.
const EXIT_NOTICE_MS = 2_000;
/** How the launcher starts the one line that says why it refuses to start. */
const REFUSAL_PREFIX = "geolibre-sidecar: ";

const now = (): number => performance.now();

export class Sidecar implements ConnectionSource {
  private readonly options: SidecarOptions;
  private readonly policy: RestartPolicy | null;
  private readonly listeners = new Map<keyof SidecarEvents, Set<(payload: never) => void>>();
  private waiters: Waiter[] = [];
  private run: Run | null = null;
  private starting: Promise<SidecarConnection> | null = null;
  private stopRequested = false;
  private restartAbort: AbortController | null = null;
  private lastError: Error | null = null;
  private currentState: SidecarState = "idle";

  constructor(options: SidecarOptions) {
    this.options = options;
    this.policy = options.restart === false ? null : new RestartPolicy(options.restart ?? {});
  }

  get state(): SidecarState {
    return this.currentState;
  }

  /** The running sidecar's URL, token, port, pid and version (null unless ready). */
  get connection(): SidecarConnection | null {
    return this.currentState === "ready" ? (this.run?.connection ?? null) : null;
  }

  /** The pid of the process we spawned (`uv`, or the launcher itself). */
  get pid(): number | undefined {
    return this.run?.proc?.pid;
  }

  /** The last lines of the current (or last) process's stderr. */
  stderrTail(): string[] {
    return this.run?.tail.snapshot() ?? [];
  }

  /** Subscribe to an event; returns the unsubscribe function. */
  on<K extends keyof SidecarEvents>(name: K, listener: (payload: SidecarEvents[K]) => void): () => void {
    let set = this.listeners.get(name);
    if (!set) this.listeners.set(name, (set = new Set()));
    set.add(listener as (payload: never) => void);
    return () => set.delete(listener as (payload: never) => void);
  }

  /** Start the sidecar (or join a start in progress) and resolve once it printed its ready line. */
  start(): Promise<SidecarConnection> {
    const ready = this.connection;
    if (ready) return Promise.resolve(ready);
    if (this.currentState === "restarting" || this.currentState === "stopping") return this.wait();
    if (this.starting) return this.starting;
    this.stopRequested = false;
    this.policy?.reset();
    this.starting = this.launch().then(
      (connection) => {
        this.starting = null;
        return connection;
      },
      (error: unknown) => {
        this.starting = null;
        if (!this.stopRequested) this.fail(error instanceof Error ? error : new Error(String(error)));
        throw error;
      },
    );
    return this.starting;
  }

  /** {@link ConnectionSource}: the endpoint now, waiting through a (re)start; starts an idle sidecar. */
  async endpoint(): Promise<SidecarEndpoint> {
    if (this.currentState === "idle") return await this.start();
    return await this.wait();
  }

  /** {@link ConnectionSource}: after a call got no answer from `failed`, the restarted sidecar, if any. */
  async endpointAfterFailure(failed: SidecarEndpoint): Promise<SidecarEndpoint | null> {
    const run = this.run;
    if (this.currentState === "ready" && run?.connection && run.connection.url === failed.url) {
      // Refused, yet no exit reported: give the exit a moment to arrive.
      await within(run.exited, EXIT_NOTICE_MS);
    }
    if (["ready", "starting", "restarting"].includes(this.currentState)) {
      const next = await this.wait();
      return next.url !== failed.url || next.token !== failed.token ? next : null;
    }
    return null;
  }

  /**
   * Stop the sidecar and everything it started: close its stdin (it exits on
   * EOF), then SIGTERM, then POST /shutdown, then kill; each step waits for
   * the exit. No restart follows.
   */
  async stop(): Promise<StopResult> {
    this.stopRequested = true;
    this.restartAbort?.abort(); // ends a restart delay in progress
    const run = this.run;
    if (!run || run.exit || !run.proc) {
      this.finishStop();
      return { method: "not-running", exit: run?.exit ?? null };
    }
    this.setState("stopping");
    const result = await stopProcess(
      { proc: run.proc, exited: run.exited, connection: run.connection },
      { stepTimeoutMs: this.options.stopStepTimeoutMs ?? DEFAULT_STOP_STEP_MS, fetch: this.options.fetch },
    );
    this.finishStop();
    return result;
  }

  private finishStop(): void {
    this.lastError = new SidecarStartError({
      reason: "stopped",
      message: "The ML sidecar was stopped.",
      stderrTail: [],
    });
    this.setState("stopped");
    this.rejectWaiters(this.lastError);
  }

  private wait(): Promise<SidecarConnection> {
    const ready = this.connection;
    if (ready) return Promise.resolve(ready);
    if (this.currentState === "failed" || this.currentState === "stopped") {
      return Promise.reject(this.lastError ?? new Error(`The ML sidecar is ${this.currentState}.`));
    }
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  private async resolveCommand(): Promise<SidecarCommand> {
    const { command } = this.options;
    return typeof command === "function" ? await command() : command;
  }

  /** Spawn one process and wait for its ready line (or its end, or the deadline). */
  private async launch(): Promise<SidecarConnection> {
    this.setState("starting");
    const command = await this.resolveCommand();
    const tail = new LineTail(this.options.stderrLines ?? DEFAULT_STDERR_LINES);
    let settleExit: (exit: ProcessExit) => void = () => undefined;
    const run: Run = {
      proc: null,
      command,
      tail,
      connection: null,
      exit: null,
      exited: new Promise((resolve) => (settleExit = resolve)),
      readyAt: 0,
    };
    this.run = run;
    const described = describeCommand(command);
    const failure = (reason: StartFailure, message: string): SidecarStartError =>
      new SidecarStartError({
        reason,
        message,
        stderrTail: tail.snapshot(),
        exit: run.exit,
        command: described,
      });

    let onReady: (connection: SidecarConnection) => void = () => undefined;
    let onFailure: (error: SidecarStartError) => void = () => undefined;
    const ready = new Promise<SidecarConnection>((resolve, reject) => {
      onReady = resolve;
      onFailure = reject;
    });
    ready.catch(() => undefined); // rejected with nobody awaiting it when stop() cuts in
    try {
      run.proc = await this.options.launcher.spawn(command, {
        stdout: (line) => {
          if (run.connection) return; // contract: nothing follows the ready line
          const parsed = parseReadyLine(line);
          if (parsed.kind === "ready") onReady(parsed.connection);
          else if (parsed.kind === "invalid")
            onFailure(failure("bad-handshake", `The ML sidecar's handshake is broken: ${parsed.problem}.`));
          else tail.add(`(stdout) ${line}`);
        },
        stderr: (line) => {
          tail.add(line);
          this.emit("stderr", line);
        },
        exit: (exit) => {
          run.exit = exit;
          settleExit(exit);
          const how = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
          const exited = `The ML sidecar ${how} before it was ready (${described}).`;
          // Its own refusal (a data folder in use, a bad setting) is the sentence a user
          // can act on: it leads, the exit follows.
          const said = refusal(tail.snapshot());
          onFailure(failure("exited", said ? `${said} (${exited})` : exited));
          this.onExit(run, exit);
        },
      });
    } catch (error) {
      const why = error instanceof Error ? error.message : String(error);
      throw failure("spawn-failed", `The ML sidecar could not be started (${described}): ${why}`);
    }
    if (this.stopRequested) {
      // stop() came while the process was being created: it found nothing to stop.
      await run.proc.kill().catch(() => undefined);
      await within(run.exited, KILL_WAIT_MS);
      throw failure("stopped", "The ML sidecar was stopped while it started.");
    }
    const timeoutMs = this.options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
    const timer = setTimeout(
      () =>
        onFailure(
          failure(
            "timeout",
            `The ML sidecar printed no ready line within ${timeoutMs / 1000} s (${described}).`,
          ),
        ),
      timeoutMs,
    );
    try {
      run.connection = await ready;
    } catch (error) {
      if (!run.exit && run.proc) {
        await run.proc.kill().catch(() => undefined);
        await within(run.exited, KILL_WAIT_MS);
      }
      throw error;
    } finally {
      clearTimeout(timer);
    }
    if (this.stopRequested) throw failure("stopped", "The ML sidecar was stopped while it started.");
    run.readyAt = now();
    this.lastError = null;
    this.setState("ready");
    this.emit("ready", run.connection);
    for (const waiter of this.waiters.splice(0)) waiter.resolve(run.connection);
    return run.connection;
  }

  private onExit(run: Run, exit: ProcessExit): void {
    const expected = this.stopRequested || run !== this.run;
    this.emit("exit", { exit, expected, stderrTail: run.tail.snapshot() });
    // Restart only a sidecar that was up; a failing start is handled by whoever launched it.
    if (expected || !run.connection || this.currentState !== "ready") return;
    if (!this.policy) {
      this.fail(
        new SidecarStartError({
          reason: "exited",
          message: "The ML sidecar exited and restarts are off.",
          stderrTail: run.tail.snapshot(),
          exit,
        }),
      );
      return;
    }
    this.setState("restarting"); // before any await: calls now wait for the new sidecar
    void this.restartLoop(now() - run.readyAt, exit);
  }

  private async restartLoop(ranMs: number, after: ProcessExit | null): Promise<void> {
    const policy = this.policy as RestartPolicy;
    let ran = ranMs;
    let lastError: unknown = null;
    const abort = new AbortController();
    this.restartAbort = abort;
    for (;;) {
      const decision = policy.decide(ran, now());
      if (!decision.restart) {
        const why = lastError instanceof Error ? ` Last attempt: ${lastError.message}` : "";
        this.fail(
          new SidecarStartError({
            reason: "exited",
            message: `The ML sidecar was not restarted: ${decision.reason}.${why}`,
            stderrTail: this.stderrTail(),
            exit: after,
          }),
        );
        return;
      }
      this.setState("restarting");
      this.emit("restarting", { attempt: decision.attempt, delayMs: decision.delayMs, after });
      try {
        await delay(decision.delayMs, abort.signal);
        await this.launch();
        return;
      } catch (error) {
        if (this.stopRequested) return;
        lastError = error;
        ran = 0;
      }
    }
  }

  private fail(error: Error): void {
    this.lastError = error;
    this.setState("failed");
    this.emit("failed", error);
    this.rejectWaiters(error);
  }

  private rejectWaiters(error: unknown): void {
    for (const waiter of this.waiters.splice(0)) waiter.reject(error);
  }

  private setState(state: SidecarState): void {
    if (state === this.currentState) return;
    this.currentState = state;
    this.emit("state", state);
  }

  private emit<K extends keyof SidecarEvents>(name: K, payload: SidecarEvents[K]): void {
    for (const listener of this.listeners.get(name) ?? []) {
      try {
        (listener as (payload: SidecarEvents[K]) => void)(payload);
      } catch {
        // a listener's bug must not break the life cycle
      }
    }
  }
}

/** The sentence the launcher prints when it refuses to start (`geolibre-sidecar: …`), if any. */
function refusal(stderr: readonly string[]): string | null {
  for (let i = stderr.length - 1; i >= 0; i--) {
    const line = stderr[i] ?? "";
    if (line.startsWith(REFUSAL_PREFIX)) return line.slice(REFUSAL_PREFIX.length).trim() || null;
  }
  return null;
}
