/**
 * The client's errors: one for an answer (or no answer) from the sidecar, one for
 * a sidecar that would not start. Aborted calls reject with the platform's own
 * `AbortError` (a `DOMException`), untouched, so `signal.aborted` code paths work.
 */

/** What kind of failure a {@link SidecarError} is, derived from its HTTP status. */
export type SidecarErrorKind =
  | "bad-request" // 400: malformed request; nothing was forwarded
  | "unauthorized" // 401: the token is missing or wrong
  | "not-found" // 404: on a segment route, samgeo-api found no objects
  | "conflict" // 409: e.g. an install is already running
  | "too-large" // 413: upload over GEOLIBRE_ML_MAX_UPLOAD_MB
  | "invalid" // 422: a field is missing or malformed
  | "too-many" // 429: too many segmentations in flight
  | "not-supported-here" // 501: this computer cannot run it (SAM 3's meta implementation needs CUDA)
  | "backend-broke" // 502: the backend failed mid-request
  | "unavailable" // 503: no backend; `detail` says why and what to do
  | "timeout" // 504: the backend took too long
  | "insufficient-storage" // 507: not enough disk for the install
  | "server" // any other 5xx
  | "client" // any other 4xx
  | "unreachable"; // no HTTP answer at all (status 0)

const KIND_BY_STATUS: Readonly<Record<number, SidecarErrorKind>> = {
  400: "bad-request",
  401: "unauthorized",
  404: "not-found",
  409: "conflict",
  413: "too-large",
  422: "invalid",
  429: "too-many",
  501: "not-supported-here",
  502: "backend-broke",
  503: "unavailable",
  504: "timeout",
  507: "insufficient-storage",
};

export function kindForStatus(status: number): SidecarErrorKind {
  const known = KIND_BY_STATUS[status];
  if (known !== undefined) return known;
  if (status === 0) return "unreachable";
  return status >= 500 ? "server" : "client";
}

export interface SidecarErrorInit {
  status: number;
  detail: string;
  route: string;
  hint?: string | undefined;
  cause?: string | undefined;
  body?: unknown;
  retryAfterS?: number | undefined;
  networkError?: unknown;
}

/** The sidecar answered with an error status, or could not be reached (status 0). */
export class SidecarError extends Error {
  override readonly name = "SidecarError";
  /** The HTTP status; 0 when no answer came (connection refused, reset). */
  readonly status: number;
  readonly kind: SidecarErrorKind;
  /** The server's `detail`: a sentence meant for the user. */
  readonly detail: string;
  /** What the user can do about it, when the server knows (`hint`). */
  readonly hint: string | undefined;
  /** The backend's exit cause when the server classified it (e.g. `cuda_oom`). */
  override readonly cause: string | undefined;
  /** e.g. `"POST /ml/segment/text"`. */
  readonly route: string;
  /** The parsed JSON body, as the server sent it. */
  readonly body: unknown;
  /** Seconds from a `Retry-After` header (429). */
  readonly retryAfterS: number | undefined;
  /** The transport error behind a status-0 failure. */
  readonly networkError: unknown;

  constructor(init: SidecarErrorInit) {
    const where = init.status ? `${init.route} -> ${init.status}` : `${init.route}: no answer`;
    super(`${init.detail} (${where})`);
    this.status = init.status;
    this.kind = kindForStatus(init.status);
    this.detail = init.detail;
    this.hint = init.hint;
    this.cause = init.cause;
    this.route = init.route;
    this.body = init.body;
    this.retryAfterS = init.retryAfterS;
    this.networkError = init.networkError;
  }
}

/** How a launch failed. */
export type StartFailure = "spawn-failed" | "exited" | "timeout" | "bad-handshake" | "stopped";

/** The process's end: an exit code, or the signal that ended it. */
export interface ProcessExit {
  code: number | null;
  signal: string | null;
}

export interface SidecarStartErrorInit {
  reason: StartFailure;
  message: string;
  stderrTail: readonly string[];
  exit?: ProcessExit | null;
  command?: string;
}

/** Lines of stderr quoted in the error message itself (all kept lines are in `stderrTail`). */
export const MESSAGE_TAIL_LINES = 12;

/** The sidecar did not print its ready line. Carries the last lines of its stderr. */
export class SidecarStartError extends Error {
  override readonly name = "SidecarStartError";
  readonly reason: StartFailure;
  /** The last lines the sidecar wrote to stderr, oldest first. */
  readonly stderrTail: readonly string[];
  readonly exit: ProcessExit | null;
  /** The program and arguments (never the environment: it may hold tokens). */
  readonly command: string | undefined;

  constructor(init: SidecarStartErrorInit) {
    const tail = init.stderrTail.slice(-MESSAGE_TAIL_LINES);
    const quoted = tail.length ? `\nLast lines of its output:\n  ${tail.join("\n  ")}` : "";
    super(`${init.message}${quoted}`);
    this.reason = init.reason;
    this.stderrTail = init.stderrTail;
    this.exit = init.exit ?? null;
    this.command = init.command;
  }
}

/** True for the error a fetch (or our own calls) rejects with when its signal aborts. */
export function isAbortError(error: unknown): boolean {
  return (
    typeof error === "object" &&
    error !== null &&
    "name" in error &&
    (error.name === "AbortError" || error.name === "TimeoutError")
  );
}

/** The error an aborted signal stands for: its reason if it is one, else an AbortError. */
export function abortReason(signal: AbortSignal): unknown {
  if (signal.reason !== undefined) return signal.reason;
  return new DOMException("This operation was aborted", "AbortError");
}
