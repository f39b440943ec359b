/**
 * The three segmentation modes: their parameters (field names exactly as
 * samgeo-api 1.4.2's multipart forms), the multipart body, and the answer types.
 */

import type { JsonObject } from "./types.js";

export type SegmentMode = "text" | "automatic" | "predict";

/** samgeo-api's `output_format`: GeoJSON by default; rasters come back as a Blob. */
export type OutputFormat = "geojson" | "geotiff" | "png" | "detections" | "json";

export type Position = [number, number] | [number, number, number];

export interface Polygon {
  type: "Polygon";
  coordinates: Position[][];
}

export interface MultiPolygon {
  type: "MultiPolygon";
  coordinates: Position[][][];
}

export interface Feature {
  type: "Feature";
  geometry: Polygon | MultiPolygon | null;
  properties: { [key: string]: unknown } | null;
  id?: string | number;
}

/**
 * samgeo-api's GeoJSON answer. Coordinates are in the image's CRS (named in
 * `crs` for a GeoTIFF); for a plain PNG/JPEG they are pixel columns and rows.
 */
export interface FeatureCollection {
  type: "FeatureCollection";
  name?: string;
  crs?: { type: "name"; properties: { name: string } };
  features: Feature[];
  [key: string]: unknown;
}

/** What a segmentation resolves to for a given `output_format`. */
export type SegmentOutput<F extends OutputFormat> = F extends "geotiff" | "png"
  ? Blob
  : F extends "detections" | "json"
    ? JsonObject
    : FeatureCollection;

interface CommonFields<F extends OutputFormat> {
  /** The image (a File in a browser; `fs.openAsBlob()` in Node). */
  file: Blob;
  /** The upload's file name; a File's own name is used when omitted. */
  filename?: string;
  model_id?: string;
  output_format?: F;
  min_size?: number;
  max_size?: number;
}

/** POST /ml/segment/text: SAM 3 finds what `prompt` describes. */
export interface TextSegmentParams<F extends OutputFormat = "geojson"> extends CommonFields<F> {
  prompt: string;
  backend?: "meta" | "transformers";
  confidence_threshold?: number;
}

/** POST /ml/segment/automatic: every object in the image. */
export interface AutomaticSegmentParams<F extends OutputFormat = "geojson"> extends CommonFields<F> {
  model_version?: "sam" | "sam2" | "sam3";
  foreground?: boolean;
  unique?: boolean;
  points_per_side?: number;
  pred_iou_thresh?: number;
  stability_score_thresh?: number;
}

/** POST /ml/segment/predict: objects at points and/or in boxes. */
export interface PredictSegmentParams<F extends OutputFormat = "geojson"> extends CommonFields<F> {
  model_version?: "sam" | "sam2" | "sam3";
  /** [[x, y], ...] in pixels, or in `point_crs`. */
  point_coords?: ReadonlyArray<readonly [number, number]>;
  /** 1 (foreground) or 0 (background), one per point. */
  point_labels?: readonly number[];
  /** [[xmin, ymin, xmax, ymax], ...]. */
  boxes?: ReadonlyArray<readonly [number, number, number, number]>;
  /** e.g. "EPSG:4326" when the points are not in pixels. */
  point_crs?: string;
  multimask_output?: boolean;
}

export type SegmentParams =
  TextSegmentParams<OutputFormat> | AutomaticSegmentParams<OutputFormat> | PredictSegmentParams<OutputFormat>;

// Fields sent as JSON text (samgeo-api parses them with json.loads).
const JSON_FIELDS = new Set(["point_coords", "point_labels", "boxes"]);
const NOT_FIELDS = new Set(["file", "filename"]);

function fileName(params: SegmentParams): string {
  if (params.filename) return params.filename;
  const named = params.file as Blob & { name?: unknown };
  return typeof named.name === "string" && named.name ? named.name : "image";
}

/** The multipart body: `file` first, then every given field as samgeo-api names it. */
export function segmentForm(params: SegmentParams): FormData {
  const form = new FormData();
  form.append("file", params.file, fileName(params));
  for (const [name, value] of Object.entries(params)) {
    if (NOT_FIELDS.has(name) || value === undefined || value === null) continue;
    if (JSON_FIELDS.has(name)) {
      form.append(name, JSON.stringify(value));
    } else if (typeof value === "string" || typeof value === "number" || typeof value === "boolean") {
      form.append(name, String(value));
    } else {
      throw new TypeError(`segmentation field ${name} must be a string, number or boolean`);
    }
  }
  return form;
}

/** Whether the answer to `format` is binary (read as a Blob) rather than JSON. */
export function isBinaryFormat(format: OutputFormat | undefined): boolean {
  return format === "geotiff" || format === "png";
}
