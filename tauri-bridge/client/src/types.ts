/**
 * The JSON the sidecar answers with (DESIGN contract 2), typed as the sidecar
 * builds it (see sidecar/src/geolibre_sidecar/status.py and install_api.py).
 * Fields the server may add later are allowed through the index signatures of
 * the loosely specified parts; the keys GeoLibre's front end reads are exact.
 */

/** A JSON value, for the parts of an answer the client does not interpret. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/** `GET /health` (no token needed). */
export interface Health {
  status: "ok";
  version: string;
}

/** The backend's life cycle, as the supervisor names it. */
export type BackendState = "stopped" | "starting" | "ready" | "busy" | "restarting" | "failed" | "external";

/** `state` in /ml/status: the backend's, or "installing" while an install runs. */
export type MlState = BackendState | "installing";

/** How the backend last ended, and what the user can do about it. */
export interface BackendExit {
  cause: string;
  summary: string;
  hint?: string | null;
  code?: number | null;
  signal?: number | string | null;
  at?: number;
  [key: string]: unknown;
}

/** `backend` in /ml/status: the supervised samgeo-api (or the external one). */
export interface BackendSnapshot {
  mode: "managed" | "external";
  state: BackendState;
  cause: string | null;
  pid: number | null;
  port: number | null;
  url: string | null;
  uptime_s: number | null;
  restarts: number;
  in_flight: number;
  /** Requests whose client left while samgeo-api still computes them; they keep their slots. */
  abandoned?: number;
  last_exit: BackendExit | null;
  health: {
    last_ok_at: number | null;
    last_error: string | null;
    unresponsive_since?: number | null;
  };
  since?: number;
  adopted?: boolean;
  command_source?: string | null;
  recent_crashes?: number;
  log_tail?: string[];
  model_variants?: { bound: number; loaded: string[][]; clears: number };
  [key: string]: unknown;
}

/** An install job's state; "none" when no install ran since the sidecar started. */
export type InstallJobState = "running" | "succeeded" | "incomplete" | "failed" | "cancelled";

/** `GET /ml/backend/install`, the `install` key of /ml/status, and the answers to start/cancel. */
export interface InstallSnapshot {
  state: InstallJobState;
  running: boolean;
  phase: string | null;
  message: string | null;
  fraction: number | null;
  started_at: number;
  finished_at: number | null;
  pid: number | null;
  events: number;
  result: JsonObject | null;
  error: { detail: string | null; hint?: string | null } | null;
}

/** `GET /ml/backend/install` before any install: `{"state": "none", "running": false}`. */
export type InstallState = InstallSnapshot | { state: "none"; running: false };

export interface GpuInfo {
  name?: string;
  memory_mib?: number | null;
  compute_capability?: string | null;
  [key: string]: unknown;
}

/** `accelerator` in /ml/status (null until the sidecar has looked, a moment after start). */
export interface AcceleratorFacts {
  gpus: GpuInfo[];
  driver: string | null;
  nvidia_smi_error: string | null;
  apple_silicon: boolean;
  model_env_build: string | null;
  cuda_working: boolean | null;
  summary: string;
  meta_backend_possible: boolean;
  hint: string | null;
  [key: string]: unknown;
}

/**
 * `weights` in /ml/status: those of the SAM 3 implementation that will run (the
 * install plan's choice), looked at again on every status; null until a model
 * backend is installed.
 */
export interface WeightsFacts {
  /** null when the sidecar cannot look (a backend it did not install: `checked` is false). */
  present: boolean | null;
  checked?: boolean;
  /** Why a segmentation cannot run for lack of weights, or why they were not checked. */
  reason?: string | null;
  route?: string | null;
  backend?: string | null;
  missing?: string[];
  /** Whether a Hugging Face token is stored or set (never the token); null when not checked. */
  token_configured?: boolean | null;
  /** The next step when they are missing: the exact command, and the app's route. */
  hint: string | null;
  [key: string]: unknown;
}

/** samgeo-api's `GET /models`. */
export interface ModelsResponse {
  models: Record<string, string[]>;
  loaded: JsonValue[][];
  [key: string]: unknown;
}

/** Whether a segment endpoint can work on this computer (`modes` in /ml/status). */
export interface ModeSupport {
  /** null: unknown (a backend the sidecar did not install; requests go through unchanged). */
  works: boolean | null;
  /** The SAM 3 implementation that serves it: "meta" needs CUDA, "transformers" runs anywhere. */
  implementation: "meta" | "transformers" | null;
  detail: string;
}

/**
 * `GET /ml/status`: GeoLibre's keys first, typed as the app types them (its
 * `MlStatus`, so a value of this type can be used wherever the app's is), then
 * the sidecar's own.
 */
export interface MlStatus {
  /**
   * A segmentation can succeed now: the backend answers and (for the environment the
   * sidecar installed) the weights of the implementation that will run are on disk.
   * When false, `message` says why and `hints[0]` what to do.
   */
  available: boolean;
  default_model: string;
  message: string;
  /** Present only while the backend answers (credentials removed). */
  url?: string;
  /** samgeo-api's version; present only while the backend answers. */
  version?: string;
  /** samgeo-api's model ids per version (the inner object of its /models); only while it answers. */
  models?: Record<string, string[]>;
  state: MlState;
  installed: boolean;
  backend: BackendSnapshot;
  install: InstallSnapshot | null;
  accelerator: AcceleratorFacts | null;
  weights: WeightsFacts | null;
  hints: string[];
  /** samgeo-api's `loaded` list from its last /models answer (start, cache clear); null while it does not answer. */
  loaded_models: JsonValue[][] | null;
  /** Per segment endpoint, whether it can work here; null only from an older sidecar. */
  modes: { text: ModeSupport; automatic: ModeSupport; predict: ModeSupport } | null;
  /** Tiled jobs: how many run, the backends their tiles go to, the tile worker; null only from an older sidecar. */
  jobs: JobsFacts | null;
  sidecar: { version: string; pid: number; uptime_s: number };
}

/** One check of the environment report. */
export interface DiagnosticCheck {
  id: string;
  title: string;
  /** "ok", "warning", "failure" or "skipped" (newer servers may add more). */
  status: string;
  detail: string;
  fix: string | null;
  data?: JsonValue;
  [key: string]: unknown;
}

/** `GET /ml/diagnostics`: the environment report, secrets redacted. Loosely typed on purpose. */
export interface DiagnosticsReport {
  verdict?: string;
  summary?: string;
  checks?: DiagnosticCheck[];
  [key: string]: unknown;
}

/** POST /ml/backend/install's body. */
export interface InstallOptions {
  /** SAM 3's backend: "meta" needs an NVIDIA GPU; "transformers" runs on the CPU. */
  backend?: "meta" | "transformers";
  /** A Hugging Face access token for the gated facebook/sam3 weights (never logged). */
  token?: string;
  /** Path of a local sam3.pt: the air-gapped route. */
  checkpoint?: string;
  /** Path of an offline bundle (`geolibre-ml bundle export`): installs with no network. */
  bundle?: string;
  /** false: install the environment only, no weights. */
  weights?: boolean;
  /** Rebuild even when an environment is installed and working. */
  force?: boolean;
  /** A torch build name such as "cpu" or "cu126" (normally chosen from the machine). */
  build?: string;
  /**
   * Fetch this model's weights (with the same progress events) instead of facebook/sam3's,
   * e.g. "facebook/sam3.1"; one of the models `/ml/status` lists under `weights.models`.
   * An unknown id is refused with 422 before anything runs.
   */
  model?: string;
}

export interface JobBackend {
  name: string;
  concurrency: number;
  /** The GPU a managed backend is pinned to ("GPU 1: <name> (<UUID>)"); null otherwise. */
  device: string | null;
  /** A managed backend's state ("ready", "starting", ...); null for a remote server. */
  state: string | null;
  tiles_done: number;
  failures_in_row: number;
  last_error: string | null;
}

/** The model-environment process that cuts rasters into tiles and merges the answers. */
export interface JobWorker {
  state: "not_started" | "starting" | "ready" | "restarting" | "failed" | "stopped";
  pid: number | null;
  restarts: number;
  /** How its last run ended (an exit status or signal, in words); null before any. */
  last_exit: string | null;
  /** Why it is failed, when it is. */
  detail: string | null;
  /** Its log file. */
  log: string;
}

/** `/ml/status` `jobs`: how many jobs run, the backends their tiles go to, the tile worker. */
export interface JobsFacts {
  active: number;
  backends: JobBackend[];
  worker: JobWorker;
}
