/**
 * The one-click install's progress: the events of
 * `GET /ml/backend/install/events`, followed across dropped connections with
 * `Last-Event-ID`, and an overall fraction for a single progress bar.
 */

import { abortReason, isAbortError, SidecarError } from "./errors.js";
import type { Transport } from "./http.js";
import { readEventStream, SseParser } from "./sse.js";
import { delay } from "./timers.js";
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

export interface FollowOptions {
  /** Resume after this event id (what the last event you saw carried). */
  lastEventId?: number;
  signal?: AbortSignal;
  /** Reconnect when the stream drops before its `end` event (default 5 attempts). */
  maxReconnects?: number;
  /** Wait between reconnects, unless the server sent `retry:` (default 1000 ms). */
  reconnectDelayMs?: number;
}

const DEFAULT_RECONNECTS = 5;
const DEFAULT_RECONNECT_DELAY_MS = 1000;

function parseEvent(kind: string, data: string): InstallEvent | null {
  if (!KNOWN_EVENTS.has(kind)) return null; // newer servers may add kinds: skip them
  let parsed: unknown;
  try {
    parsed = JSON.parse(data);
  } catch {
    return null;
  }
  if (typeof parsed !== "object" || parsed === null) return null;
  const event = parsed as InstallEvent;
  return event.event === kind ? event : ({ ...event, event: kind } as InstallEvent);
}

/**
 * Yield the install's events until its `end` event. A dropped connection is
 * resumed with `Last-Event-ID`, so no event is lost or repeated.
 */
export async function* followInstallEvents(
  transport: Transport,
  options: FollowOptions = {},
): AsyncGenerator<InstallEvent, void, undefined> {
  let lastId = options.lastEventId ?? 0;
  let reconnects = 0;
  const maxReconnects = options.maxReconnects ?? DEFAULT_RECONNECTS;
  for (;;) {
    const parser = new SseParser();
    let progressed = false;
    try {
      const response = await transport.send({
        method: "GET",
        path: "/ml/backend/install/events",
        headers: { "Last-Event-ID": String(lastId), Accept: "text/event-stream" },
        signal: options.signal,
        idempotent: true,
      });
      if (!response.body) throw new Error("the event stream has no body");
      for await (const sse of readEventStream(response.body, parser)) {
        const event = parseEvent(sse.event, sse.data);
        if (!event) continue;
        if (event.event !== "end" && event.id <= lastId) continue; // already seen
        if (event.id > lastId) lastId = event.id;
        progressed = true;
        yield event;
        if (event.event === "end") return;
      }
    } catch (error) {
      if (isAbortError(error) || options.signal?.aborted) throw error;
      // An HTTP error answer (401, 404) will not heal by retrying.
      if (error instanceof SidecarError && error.status !== 0) throw error;
      if (reconnects >= maxReconnects) throw error;
    }
    if (options.signal?.aborted) throw abortReason(options.signal);
    reconnects = progressed ? 0 : reconnects + 1;
    if (reconnects > maxReconnects) {
      throw new SidecarError({
        status: 0,
        route: "GET /ml/backend/install/events",
        detail: "The install's event stream kept ending before the install did.",
      });
    }
    await delay(parser.retryMs ?? options.reconnectDelayMs ?? DEFAULT_RECONNECT_DELAY_MS, options.signal);
  }
}
