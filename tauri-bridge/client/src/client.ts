/**
 * Typed calls for every route of the sidecar (DESIGN contract 2).
 *
 * `new MlClient(sidecar)` follows a managed {@link Sidecar} through restarts;
 * `new MlClient({ url, token })` talks to a fixed one (a page that was handed
 * the URL and token). Errors are {@link SidecarError}s; an aborted call rejects
 * with the platform's AbortError.
 */

import type { CallOptions, ConnectionSource, FetchLike, SidecarEndpoint } from "./http.js";
import { SidecarError } from "./errors.js";
import { Transport } from "./http.js";
import type { FollowOptions, InstallEndEvent, InstallEvent } from "./install.js";
import { followInstallEvents } from "./install.js";
import type { JobEndEvent, JobEvent, JobList, JobParams, JobSnapshot } from "./jobs.js";
import { followJobEvents, jobForm } from "./jobs.js";
import type {
  AutomaticSegmentParams,
  FeatureCollection,
  OutputFormat,
  PredictSegmentParams,
  SegmentMode,
  SegmentOutput,
  SegmentParams,
  TextSegmentParams,
} from "./segment.js";
import { isBinaryFormat, segmentForm } from "./segment.js";
import { delay } from "./timers.js";
import type {
  DiagnosticsReport,
  Health,
  InstallOptions,
  InstallSnapshot,
  InstallState,
  MlStatus,
  ModelsResponse,
} from "./types.js";

function jobPath(jobId: string): string {
  return `/ml/jobs/${encodeURIComponent(jobId)}`;
}

/** How often {@link MlClient.startBackend} asks for the status while the backend starts. */
export const START_POLL_MS = 500;
const STILL_STARTING: ReadonlySet<string> = new Set(["starting", "restarting"]);

export interface StartBackendOptions extends CallOptions {
  /** Called with the start's answer and with every status polled after it. */
  onStatus?: (status: MlStatus) => void;
  pollMs?: number;
}

export interface MlClientOptions {
  /** A fetch to use instead of the global one (tests, a Tauri HTTP plugin). */
  fetch?: FetchLike;
}

export class MlClient {
  readonly transport: Transport;

  constructor(target: ConnectionSource | SidecarEndpoint, options: MlClientOptions = {}) {
    this.transport = new Transport(target, options.fetch);
  }

  /** `GET /health`: the sidecar is up (no token needed). */
  health(options: CallOptions = {}): Promise<Health> {
    return this.transport.json({ method: "GET", path: "/health", auth: false, idempotent: true, ...options });
  }

  /** `GET /ml/status`: whether segmentation is available, and if not, why and what to do. */
  status(options: CallOptions = {}): Promise<MlStatus> {
    return this.transport.json({ method: "GET", path: "/ml/status", idempotent: true, ...options });
  }

  /** `GET /ml/models`: samgeo-api's models (503 when the backend is not running). */
  models(options: CallOptions = {}): Promise<ModelsResponse> {
    return this.transport.json({ method: "GET", path: "/ml/models", idempotent: true, ...options });
  }

  /** `POST /ml/segment/text`: find what `prompt` describes. */
  segmentText<F extends OutputFormat = "geojson">(
    params: TextSegmentParams<F>,
    options: CallOptions = {},
  ): Promise<SegmentOutput<F>> {
    return this.segment("text", params, options) as Promise<SegmentOutput<F>>;
  }

  /** `POST /ml/segment/automatic`: every object in the image. */
  segmentAutomatic<F extends OutputFormat = "geojson">(
    params: AutomaticSegmentParams<F>,
    options: CallOptions = {},
  ): Promise<SegmentOutput<F>> {
    return this.segment("automatic", params, options) as Promise<SegmentOutput<F>>;
  }

  /** `POST /ml/segment/predict`: objects at points and/or in boxes. */
  segmentPredict<F extends OutputFormat = "geojson">(
    params: PredictSegmentParams<F>,
    options: CallOptions = {},
  ): Promise<SegmentOutput<F>> {
    return this.segment("predict", params, options) as Promise<SegmentOutput<F>>;
  }

  /**
   * Any mode. Aborting `options.signal` closes the connection; the sidecar then
   * cancels the request to samgeo-api and frees its slot.
   */
  async segment(
    mode: SegmentMode,
    params: SegmentParams,
    options: CallOptions = {},
  ): Promise<SegmentOutput<OutputFormat>> {
    const response = await this.transport.send({
      method: "POST",
      path: `/ml/segment/${mode}`,
      body: segmentForm(params),
      signal: options.signal,
    });
    if (isBinaryFormat(params.output_format)) return await response.blob();
    return (await response.json()) as SegmentOutput<OutputFormat>;
  }

  /**
   * The "Start server" button: `POST /ml/backend/start` (which answers at once,
   * `state: "starting"`), then `GET /ml/status` every `pollMs` until the backend is
   * ready or failed; `onStatus` sees every status on the way. Resolves to the ready
   * status; a start that fails rejects with a 503 {@link SidecarError} saying why.
   */
  async startBackend(options: StartBackendOptions = {}): Promise<MlStatus> {
    const { signal, onStatus, pollMs = START_POLL_MS } = options;
    const route = "POST /ml/backend/start";
    let status: MlStatus = await this.transport.json({ method: "POST", path: "/ml/backend/start", idempotent: true, signal });
    onStatus?.(status);
    while (STILL_STARTING.has(status.state)) {
      await delay(pollMs, signal);
      status = await this.status({ signal });
      onStatus?.(status);
    }
    if (status.state === "failed" || status.state === "stopped") {
      const lastExit = status.backend.last_exit;
      throw new SidecarError({
        status: 503,
        route,
        detail: status.message,
        hint: status.hints[0],
        cause: lastExit?.cause,
        body: status,
      });
    }
    return status;
  }

  /** `POST /ml/backend/stop`. */
  stopBackend(options: CallOptions = {}): Promise<MlStatus> {
    return this.transport.json({ method: "POST", path: "/ml/backend/stop", idempotent: true, ...options });
  }

  /** `POST /ml/backend/install`: start the one-click install (409 if one is running). */
  install(body: InstallOptions = {}, options: CallOptions = {}): Promise<InstallSnapshot> {
    return this.transport.json({ method: "POST", path: "/ml/backend/install", json: body, ...options });
  }

  /** `GET /ml/backend/install`: the running or last install. */
  installState(options: CallOptions = {}): Promise<InstallState> {
    return this.transport.json({ method: "GET", path: "/ml/backend/install", idempotent: true, ...options });
  }

  /** `DELETE /ml/backend/install`: cancel the running install; resolves when it stopped. */
  cancelInstall(options: CallOptions = {}): Promise<InstallSnapshot> {
    return this.transport.json({ method: "DELETE", path: "/ml/backend/install", ...options });
  }

  /** The install's events (`GET /ml/backend/install/events`) up to and including `end`. */
  installEvents(options: FollowOptions = {}): AsyncGenerator<InstallEvent, void, undefined> {
    return followInstallEvents(this.transport, options);
  }

  /** Follow the install to its end, calling `onEvent` for each event; resolves to the end event. */
  async followInstall(
    onEvent: (event: InstallEvent) => void,
    options: FollowOptions = {},
  ): Promise<InstallEndEvent> {
    for await (const event of this.installEvents(options)) {
      onEvent(event);
      if (event.event === "end") return event;
    }
    throw new Error("the install's event stream ended without an end event");
  }

  /** `POST /ml/jobs`: start a tiled job over a big raster; resolves at once (202) to its state. */
  createJob(params: JobParams, options: CallOptions = {}): Promise<JobSnapshot> {
    return this.transport.json({ method: "POST", path: "/ml/jobs", body: jobForm(params), ...options });
  }

  /** `GET /ml/jobs`: every job, and the backends tiles go to. */
  jobs(options: CallOptions = {}): Promise<JobList> {
    return this.transport.json({ method: "GET", path: "/ml/jobs", idempotent: true, ...options });
  }

  /** `GET /ml/jobs/{id}`: state, tiles done of total, failures, elapsed and estimated time left. */
  job(jobId: string, options: CallOptions = {}): Promise<JobSnapshot> {
    return this.transport.json({ method: "GET", path: jobPath(jobId), idempotent: true, ...options });
  }

  /** A job's events (`GET /ml/jobs/{id}/events`) up to and including `end`. */
  jobEvents(jobId: string, options: FollowOptions = {}): AsyncGenerator<JobEvent, void, undefined> {
    return followJobEvents(this.transport, jobId, options);
  }

  /** Follow a job to its end, calling `onEvent` for each event; resolves to the end event. */
  async followJob(
    jobId: string,
    onEvent: (event: JobEvent) => void,
    options: FollowOptions = {},
  ): Promise<JobEndEvent> {
    for await (const event of this.jobEvents(jobId, options)) {
      onEvent(event);
      if (event.event === "end") return event;
    }
    throw new Error("the job's event stream ended without an end event");
  }

  /** `GET /ml/jobs/{id}/result`: the merged GeoJSON in the raster's CRS (409 until it succeeded). */
  jobResult(jobId: string, options: CallOptions = {}): Promise<FeatureCollection> {
    return this.transport.json({ method: "GET", path: `${jobPath(jobId)}/result`, idempotent: true, ...options });
  }

  /** `DELETE /ml/jobs/{id}`: cancel a running job (resolves to its cancelled state), or delete an ended one. */
  deleteJob(jobId: string, options: CallOptions = {}): Promise<JobSnapshot | { id: string; deleted: true }> {
    return this.transport.json({ method: "DELETE", path: jobPath(jobId), ...options });
  }

  /** `GET /ml/diagnostics`: the environment report, secrets redacted. */
  diagnostics(options: CallOptions = {}): Promise<DiagnosticsReport> {
    return this.transport.json({ method: "GET", path: "/ml/diagnostics", idempotent: true, ...options });
  }

  /** `GET /ml/diagnostics/bundle`: the report and logs as a zip, for a bug report. */
  async diagnosticsBundle(options: CallOptions = {}): Promise<Blob> {
    const response = await this.transport.send({
      method: "GET",
      path: "/ml/diagnostics/bundle",
      headers: { Accept: "application/zip" },
      idempotent: true,
      ...options,
    });
    return await response.blob();
  }

  /** `POST /shutdown`: stop the sidecar and its children (it answers 202, then exits). */
  async shutdown(options: CallOptions = {}): Promise<void> {
    await this.transport.send({ method: "POST", path: "/shutdown", ...options });
  }
}
