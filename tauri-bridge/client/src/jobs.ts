/**
 * Tiled jobs over big rasters (`/ml/jobs`): the request, the job's state, its
 * events (followed across dropped connections, and across a sidecar restart, with
 * `Last-Event-ID`).
 */

import type { FollowOptions } from "./follow.js";
import { followEvents, parseKnown } from "./follow.js";
import type { Transport } from "./http.js";
import type {
  AutomaticSegmentParams,
  PredictSegmentParams,
  SegmentMode,
  TextSegmentParams,
} from "./segment.js";
import { segmentForm } from "./segment.js";
import type { JobBackend, JobWorker } from "./types.js";

export type JobState = "queued" | "cutting" | "running" | "merging" | "succeeded" | "failed" | "cancelled";

interface JobFields {
  /** Tile side in pixels (default 1008, SAM 3's input size; 64 to 8192). */
  tile_size?: number;
  /** Pixels shared by neighbouring tiles (default 128; at most half the tile). */
  overlap?: number;
}

/** `POST /ml/jobs`: a mode and that mode's fields, as for `/ml/segment/<mode>`. */
export type JobParams =
  | ({ mode: "text" } & Omit<TextSegmentParams, "output_format"> & JobFields)
  | ({ mode: "automatic" } & Omit<AutomaticSegmentParams, "output_format"> & JobFields)
  | ({ mode: "predict" } & Omit<PredictSegmentParams, "output_format"> & JobFields);

export interface JobSnapshot {
  id: string;
  state: JobState;
  mode: SegmentMode;
  tile_size: number;
  overlap: number;
  tiles_done: number;
  tiles_total: number | null;
  tiles_skipped: number;
  failures: Array<{ tile: number; detail: string }>;
  created_at: number;
  finished_at: number | null;
  elapsed_s: number;
  estimated_left_s: number | null;
  features: number | null;
  error: { detail: string; hint?: string } | null;
}

export interface JobList {
  jobs: JobSnapshot[];
  backends: JobBackend[];
  worker: JobWorker;
}

interface EventBase {
  id: number;
  time: number;
}

export interface JobStateEvent extends EventBase {
  event: "state";
  state: JobState;
  tiles_total?: number;
  skipped?: number;
  resumed?: boolean;
}
export interface JobCutEvent extends EventBase {
  event: "cut";
  done: number;
  total: number;
}
export interface JobTileEvent extends EventBase {
  event: "tile";
  tile: number;
  backend: string;
  done: number;
  total: number;
}
export interface JobTileRetryEvent extends EventBase {
  event: "tile_retry" | "tile_failed";
  tile: number;
  backend?: string;
  detail: string;
}
export interface JobBackendSetAsideEvent extends EventBase {
  event: "backend_set_aside";
  backend: string;
  detail: string;
}
export interface JobEndEvent extends EventBase {
  event: "end";
  state: "succeeded" | "failed" | "cancelled";
  features?: number;
  failures?: number;
  error?: { detail: string; hint?: string };
}

export type JobEvent =
  | JobStateEvent
  | JobCutEvent
  | JobTileEvent
  | JobTileRetryEvent
  | JobBackendSetAsideEvent
  | JobEndEvent;

const KNOWN_EVENTS = new Set(["state", "cut", "tile", "tile_retry", "tile_failed", "backend_set_aside", "end"]);

/** The multipart body: the segment form of the mode, plus `mode`, `tile_size`, `overlap`. */
export function jobForm(params: JobParams): FormData {
  const { mode, tile_size, overlap, ...segment } = params;
  const form = segmentForm(segment);
  form.append("mode", mode);
  if (tile_size !== undefined) form.append("tile_size", String(tile_size));
  if (overlap !== undefined) form.append("overlap", String(overlap));
  return form;
}

/** Yield a job's events until its `end` event. */
export function followJobEvents(
  transport: Transport,
  jobId: string,
  options: FollowOptions = {},
): AsyncGenerator<JobEvent, void, undefined> {
  const parse = (kind: string, data: string) => parseKnown<JobEvent>(KNOWN_EVENTS, kind, data);
  return followEvents(transport, `/ml/jobs/${encodeURIComponent(jobId)}/events`, parse, "job", options);
}
