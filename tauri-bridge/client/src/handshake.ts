/**
 * The launcher's one JSON ready line (DESIGN contract 1):
 * `{"event":"ready","url":"http://127.0.0.1:PORT","port":PORT,"token":"…","pid":PID,"version":"…"}`.
 */

import type { SidecarConnection } from "./http.js";

export type HandshakeLine =
  { kind: "ready"; connection: SidecarConnection } | { kind: "invalid"; problem: string } | { kind: "other" };

/** Classify one stdout line: the ready line, a broken ready line, or something else. */
export function parseReadyLine(line: string): HandshakeLine {
  const text = line.trim();
  if (!text.startsWith("{")) return { kind: "other" };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { kind: "other" };
  }
  if (typeof parsed !== "object" || parsed === null) return { kind: "other" };
  const record = parsed as Record<string, unknown>;
  if (record["event"] !== "ready") return { kind: "other" };
  const { url, port, token, pid, version } = record;
  if (typeof url !== "string" || !/^https?:\/\//.test(url)) {
    return { kind: "invalid", problem: "its ready line has no http URL" };
  }
  if (typeof port !== "number" || !Number.isInteger(port) || port <= 0 || port > 65535) {
    return { kind: "invalid", problem: "its ready line has no valid port" };
  }
  if (typeof token !== "string" || token.length === 0) {
    return { kind: "invalid", problem: "its ready line has no token" };
  }
  if (typeof pid !== "number" || !Number.isInteger(pid)) {
    return { kind: "invalid", problem: "its ready line has no pid" };
  }
  return {
    kind: "ready",
    connection: {
      url: url.replace(/\/+$/, ""),
      port,
      token,
      pid,
      version: typeof version === "string" ? version : "",
    },
  };
}
