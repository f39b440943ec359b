/**
 * When to restart a sidecar that exited on its own: exponential backoff, a
 * limit of restarts within a window, and "stable after a while" resetting
 * the backoff. Rules only; {@link Sidecar} does the restarting.
 */

export interface RestartPolicyOptions {
  /** Most restarts within `windowMs` before giving up (default 5). */
  maxRestarts?: number;
  /** Default 300 000 ms (5 minutes). */
  windowMs?: number;
  /** First delay (default 250 ms); doubles with each failure in a row. */
  initialDelayMs?: number;
  /** Default 30 000 ms. */
  maxDelayMs?: number;
  /** A sidecar that ran this long was healthy: the next crash starts the backoff afresh (default 10 000 ms). */
  stableAfterMs?: number;
}

export type RestartDecision =
  { restart: true; delayMs: number; attempt: number } | { restart: false; reason: string };

export class RestartPolicy {
  readonly maxRestarts: number;
  readonly windowMs: number;
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
  readonly stableAfterMs: number;
  private restarts: number[] = [];
  private failuresInARow = 0;

  constructor(options: RestartPolicyOptions = {}) {
    this.maxRestarts = options.maxRestarts ?? 5;
    this.windowMs = options.windowMs ?? 300_000;
    this.initialDelayMs = options.initialDelayMs ?? 250;
    this.maxDelayMs = options.maxDelayMs ?? 30_000;
    this.stableAfterMs = options.stableAfterMs ?? 10_000;
  }

  /**
   * The sidecar ended unexpectedly after running `ranMs` (or failed to start:
   * `ranMs` 0). `now` is a monotonic clock in milliseconds.
   */
  decide(ranMs: number, now: number): RestartDecision {
    this.restarts = this.restarts.filter((at) => now - at < this.windowMs);
    if (ranMs >= this.stableAfterMs) this.failuresInARow = 0;
    if (this.restarts.length >= this.maxRestarts) {
      return {
        restart: false,
        reason: `it stopped ${this.restarts.length + 1} times within ${Math.round(this.windowMs / 1000)} s`,
      };
    }
    const delayMs = Math.min(this.maxDelayMs, this.initialDelayMs * 2 ** this.failuresInARow);
    this.failuresInARow += 1;
    this.restarts.push(now);
    return { restart: true, delayMs, attempt: this.restarts.length };
  }

  /** Forget past failures (a manual restart by the user). */
  reset(): void {
    this.restarts = [];
    this.failuresInARow = 0;
  }
}
