/**
 * One HTTP call to the sidecar: the token header, the error mapping to
 * {@link SidecarError}, and one retry of an idempotent call when the sidecar
 * was restarted under it (new port and token).
 */

import { SidecarError, isAbortError } from "./errors.js";

export const TOKEN_HEADER = "X-GeoLibre-Token";

/** Where a running sidecar listens, and its token (null: development, no check). */
export interface SidecarEndpoint {
  url: string;
  token: string | null;
}

/** The ready line's facts about one running sidecar. */
export interface SidecarConnection extends SidecarEndpoint {
  token: string;
  port: number;
  pid: number;
  version: string;
}

/**
 * Something that knows where the sidecar is now: a {@link Sidecar} (which waits
 * through a restart) or a fixed endpoint (a page handed the URL and token).
 */
export interface ConnectionSource {
  /** The endpoint to use now; waits while the sidecar (re)starts. */
  endpoint(): Promise<SidecarEndpoint>;
  /**
   * `failed` gave no HTTP answer: resolve to a different endpoint if the
   * sidecar was restarted (waiting a little for that to be noticed), or null.
   */
  endpointAfterFailure?(failed: SidecarEndpoint): Promise<SidecarEndpoint | null>;
}

export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

export interface CallOptions {
  signal?: AbortSignal | undefined;
}

export interface RequestSpec extends CallOptions {
  method: "GET" | "POST" | "DELETE";
  path: string;
  body?: BodyInit | undefined;
  json?: unknown;
  headers?: Record<string, string> | undefined;
  /** Safe to send again to a restarted sidecar (GET, and calls that change nothing twice). */
  idempotent?: boolean;
  /** Send the token (everything but /health). */
  auth?: boolean;
}

function sourceOf(target: ConnectionSource | SidecarEndpoint): ConnectionSource {
  if ("endpoint" in target && typeof target.endpoint === "function") return target;
  const fixed = target as SidecarEndpoint;
  return { endpoint: async () => fixed };
}

/** Sends requests to wherever the sidecar is now. */
export class Transport {
  readonly source: ConnectionSource;
  private readonly fetchImpl: FetchLike;

  constructor(target: ConnectionSource | SidecarEndpoint, fetchImpl?: FetchLike) {
    this.source = sourceOf(target);
    // Bound: a bare `fetch` called as a method of another object throws in browsers.
    this.fetchImpl = fetchImpl ?? ((input, init) => globalThis.fetch(input, init));
  }

  /** Send `spec`; resolve to the response if it is 2xx, else throw a SidecarError. */
  async send(spec: RequestSpec): Promise<Response> {
    const route = `${spec.method} ${spec.path}`;
    let endpoint = await this.source.endpoint();
    try {
      return await this.once(endpoint, spec, route);
    } catch (error) {
      if (!(error instanceof SidecarError) || error.status !== 0 || !spec.idempotent) throw error;
      const next = await this.source.endpointAfterFailure?.(endpoint);
      if (!next || spec.signal?.aborted) throw error;
      endpoint = next;
      return await this.once(endpoint, spec, route);
    }
  }

  /** Send `spec` and parse the JSON answer. */
  async json<T>(spec: RequestSpec): Promise<T> {
    const response = await this.send(spec);
    return (await response.json()) as T;
  }

  private async once(endpoint: SidecarEndpoint, spec: RequestSpec, route: string): Promise<Response> {
    const headers: Record<string, string> = { Accept: "application/json", ...spec.headers };
    if (spec.auth !== false && endpoint.token) headers[TOKEN_HEADER] = endpoint.token;
    let body = spec.body;
    if (spec.json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(spec.json);
    }
    let response: Response;
    try {
      response = await this.fetchImpl(`${endpoint.url}${spec.path}`, {
        method: spec.method,
        headers,
        body: body ?? null,
        signal: spec.signal ?? null,
      });
    } catch (error) {
      if (isAbortError(error)) throw error;
      throw new SidecarError({
        status: 0,
        route,
        detail: `The ML sidecar at ${endpoint.url} could not be reached (${describe(error)}).`,
        networkError: error,
      });
    }
    if (!response.ok) throw await errorFrom(response, route);
    return response;
  }
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const cause = (error as Error & { cause?: unknown }).cause;
    if (cause instanceof Error && cause.message) return cause.message;
    return error.message;
  }
  return String(error);
}

/** A SidecarError from an error response: its `detail`, `hint` and `cause` when present. */
export async function errorFrom(response: Response, route: string): Promise<SidecarError> {
  const text = await response.text().catch(() => "");
  let body: unknown = text;
  let detail = text.trim() || response.statusText || `HTTP ${response.status}`;
  let hint: string | undefined;
  let cause: string | undefined;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: keep the text as the detail
  }
  if (typeof body === "object" && body !== null) {
    const record = body as Record<string, unknown>;
    if (record["detail"] !== undefined) detail = detailText(record["detail"]);
    if (typeof record["hint"] === "string") hint = record["hint"];
    if (typeof record["cause"] === "string") cause = record["cause"];
  }
  const retry = Number(response.headers.get("retry-after") ?? "");
  return new SidecarError({
    status: response.status,
    route,
    detail,
    hint,
    cause,
    body,
    retryAfterS: Number.isFinite(retry) && retry > 0 ? retry : undefined,
  });
}

/** `detail` is a sentence, or (a 422 from FastAPI) a list of {loc, msg}. */
function detailText(detail: unknown): string {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail
      .map((item) => {
        if (typeof item !== "object" || item === null) return String(item);
        const { loc, msg } = item as { loc?: unknown; msg?: unknown };
        const where = Array.isArray(loc) ? loc.join(".") : "";
        return where ? `${where}: ${String(msg)}` : String(msg);
      })
      .join("; ");
  }
  return JSON.stringify(detail);
}
