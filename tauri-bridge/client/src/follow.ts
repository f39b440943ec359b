/**
 * Follow a sidecar event stream (the install's, a job's) to its `end` event, across
 * dropped connections: each reconnect sends `Last-Event-ID`, so no event is lost or
 * repeated. The one loop both streams share.
 */

import { abortReason, isAbortError, SidecarError } from "./errors.js";
import type { Transport } from "./http.js";
import { readEventStream, SseParser } from "./sse.js";
import { delay } from "./timers.js";

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

/** Parse one event's JSON `data` if its kind is known (newer servers may add kinds). */
export function parseKnown<E extends { event: string }>(
  known: ReadonlySet<string>,
  kind: string,
  data: string,
): E | null {
  if (!known.has(kind)) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(data);
  } catch {
    return null;
  }
  if (typeof parsed !== "object" || parsed === null) return null;
  const event = parsed as E;
  return event.event === kind ? event : ({ ...event, event: kind } as E);
}

/** Yield the events of `path` until its `end` event; `what` names it in errors. */
export async function* followEvents<E extends { event: string; id: number }>(
  transport: Transport,
  path: string,
  parse: (kind: string, data: string) => E | null,
  what: string,
  options: FollowOptions = {},
): AsyncGenerator<E, void, undefined> {
  let lastId = options.lastEventId ?? 0;
  let reconnects = 0;
  const maxReconnects = options.maxReconnects ?? DEFAULT_RECONNECTS;
  for (;;) {
    const parser = new SseParser();
    let progressed = false;
    try {
      const response = await transport.send({
        method: "GET",
        path,
        headers: { "Last-Event-ID": String(lastId), Accept: "text/event-stream" },
        signal: options.signal,
        idempotent: true,
      });
      if (!response.body) throw new Error("the event stream has no body");
      for await (const sse of readEventStream(response.body, parser)) {
        const event = parse(sse.event, sse.data);
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
        route: `GET ${path}`,
        detail: `The ${what}'s event stream kept ending before the ${what} did.`,
      });
    }
    await delay(parser.retryMs ?? options.reconnectDelayMs ?? DEFAULT_RECONNECT_DELAY_MS, options.signal);
  }
}
