/**
 * The one-click install's progress: the events of
 * `GET /ml/backend/install/events`, followed across dropped connections with
 * `Last-Event-ID`, and an overall fraction for a single progress bar.
 */

import type { FollowOptions } from "./follow.js";
import { followEvents, parseKnown } from "./follow.js";
import type { Transport } from "./http.js";
import type { InstallJobState, JsonObject } from "./types.js";

interface EventBase {
  /** Position in the job's event list, from 1 (0 for "no install ran"). */
  id: number;
}

/** A step forward; `done`/`total` in `unit`, `fraction` of this phase when known. */
export interface InstallProgressEvent extends EventBase {
  event: "progress";
  phase: string;
  message: string;
  done: number | null;
  total: number | null;
  unit: "bytes" | "packages" | "steps" | null;
  level: "info" | "warning" | "error";
  at: number;
  extra: JsonObject;
  fraction: number | null;
}

/** The install failed; `detail` says why, `hint` what to do. */
export interface InstallErrorEvent extends EventBase {
  event: "error";
  detail: string;
  hint: string | null;
  type?: string;
}

/** What was installed (environment, plan, verify report, weights). */
export interface InstallResultEvent extends EventBase {
  event: "result";
  outcome: string;
  env: string;
  complete: boolean;
  [key: string]: unknown;
}

/** The last event of a stream: the job's final state ("none": no install ran). */
export interface InstallEndEvent extends EventBase {
  event: "end";
  state: InstallJobState | "none";
  error?: { detail: string | null; hint?: string | null } | null;
}

export type InstallEvent = InstallProgressEvent | InstallErrorEvent | InstallResultEvent | InstallEndEvent;

const KNOWN_EVENTS = new Set(["progress", "error", "result", "end"]);

/** The installer's phases in order, with a rough share of the time each takes. */
export const INSTALL_PHASES: ReadonlyArray<readonly [string, number]> = [
  ["lock", 1],
  ["bundle", 2],
  ["plan", 3],
  ["venv", 3],
  ["torch", 40],
  ["packages", 20],
  ["verify", 5],
  ["switch", 1],
  ["weights", 26],
  ["done", 1],
];
const TOTAL_WEIGHT = INSTALL_PHASES.reduce((sum, [, weight]) => sum + weight, 0);

/**
 * A 0..1 estimate of the whole install for one progress bar: the phases
 * before this one, plus this phase's own fraction. Keep the maximum seen:
 * a phase without a fraction counts as just started.
 */
export function overallFraction(event: InstallEvent): number | null {
  if (event.event === "end") return event.state === "succeeded" ? 1 : null;
  if (event.event !== "progress") return null;
  let before = 0;
  for (const [phase, weight] of INSTALL_PHASES) {
    if (phase === event.phase) {
      return Math.min(1, (before + weight * (event.fraction ?? 0)) / TOTAL_WEIGHT);
    }
    before += weight;
  }
  return null;
}

export type { FollowOptions } from "./follow.js";

function parseEvent(kind: string, data: string): InstallEvent | null {
  return parseKnown<InstallEvent>(KNOWN_EVENTS, kind, data);
}

/**
 * Yield the install's events until its `end` event. A dropped connection is
 * resumed with `Last-Event-ID`, so no event is lost or repeated.
 */
export function followInstallEvents(
  transport: Transport,
  options: FollowOptions = {},
): AsyncGenerator<InstallEvent, void, undefined> {
  return followEvents(transport, "/ml/backend/install/events", parseEvent, "install", options);
}
