/**
 * Every /ml route through the typed client, on a real sidecar whose backend
 * is the samgeo-api stand-in: answers, field names, errors, and cancellation.
 */

import assert from "node:assert/strict";
import { test } from "node:test";

import { isAbortError, MlClient, nodeSidecar } from "@geolibre/ml-client/node";
import type { FeatureCollection, JsonObject, TextSegmentParams } from "@geolibre/ml-client/node";

import { sidecarEnv, sidecarProgram, tempDir } from "./support/env.js";
import { makePng } from "../demo/sample-image.js";
import { failure, READY_TIMEOUT_MS, sidecarForFile } from "./support/sidecars.js";
import { isGone, waitFor } from "./support/wait.js";

const { sidecar, client } = sidecarForFile();
const image = new Blob([new Uint8Array(makePng(64, 48))], { type: "image/png" });

/** What the stand-in says it received (its answers carry a "standin" member). */
interface StandinEcho {
  endpoint: string;
  received: { filename: string; content_type: string; file_bytes: number; fields: Record<string, string> };
  image: { kind: string; width: number; height: number };
}

function echo(answer: FeatureCollection | JsonObject): StandinEcho {
  return answer["standin"] as unknown as StandinEcho;
}

test("status has GeoLibre's keys and the sidecar's, typed", async () => {
  const status = await client.status();
  assert.equal(status.available, false);
  assert.equal(status.default_model, "sam3");
  assert.match(status.message, /not running/);
  assert.equal(status.url, undefined, "GeoLibre's optional keys are absent, not null");
  assert.equal(status.models, undefined);
  assert.equal(status.state, "stopped");
  assert.equal(status.installed, true, "GEOLIBRE_ML_SAMGEO_CMD counts as installed");
  assert.equal(status.backend.mode, "managed");
  assert.equal(status.backend.in_flight, 0);
  assert.equal(status.install, null);
  assert.ok(status.hints.some((hint) => hint.includes("Start server")));
  assert.equal(status.sidecar.pid, sidecar.connection?.pid);
  assert.deepEqual(Object.keys(status).slice(0, 3), ["available", "default_model", "message"]);
});

test("models without a backend is a 503 that says what to do", async () => {
  const error = await failure(client.models());
  assert.equal(error.status, 503);
  assert.equal(error.kind, "unavailable");
  assert.match(error.detail, /Press Start server/);
  assert.equal(error.route, "GET /ml/models");
});

test("start server, then models and status show the backend", async () => {
  const started = await client.startBackend();
  assert.equal(started.available, true);
  assert.equal(started.state, "ready");
  assert.match(started.url ?? "", /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.equal(started.version, "1.4.2");
  assert.ok(started.models?.["sam3"]?.includes("facebook/sam3"), "models as GeoLibre's sidecar fills it");
  assert.deepEqual(Object.keys(started).slice(0, 6), [
    "available",
    "default_model",
    "message",
    "url",
    "version",
    "models",
  ]);
  const models = await client.models();
  assert.ok(models.models["sam3"]?.includes("facebook/sam3"));
});

test("text segmentation sends samgeo-api's field names and returns GeoJSON", async () => {
  const answer = await client.segmentText({
    file: image,
    filename: "tile 1.png",
    prompt: "trees",
    backend: "transformers",
    confidence_threshold: 0.4,
    min_size: 2,
  });
  assert.equal(answer.type, "FeatureCollection");
  assert.ok(answer.features.length >= 1);
  for (const feature of answer.features) assert.equal(feature.geometry?.type, "Polygon");
  const seen = echo(answer);
  assert.equal(seen.endpoint, "/segment/text");
  assert.equal(seen.received.filename, "tile 1.png");
  assert.equal(seen.received.content_type, "image/png");
  assert.equal(seen.received.file_bytes, image.size);
  assert.deepEqual(seen.received.fields, {
    prompt: "trees",
    backend: "transformers",
    confidence_threshold: "0.4",
    min_size: "2",
  });
  assert.deepEqual(seen.image, { kind: "png", width: 64, height: 48 });
});

test("automatic and predict segmentation send their own fields", async () => {
  const automatic = await client.segmentAutomatic({
    file: image,
    model_version: "sam3",
    foreground: false,
    points_per_side: 16,
    stability_score_thresh: 0.9,
  });
  assert.deepEqual(echo(automatic).received.fields, {
    model_version: "sam3",
    foreground: "false",
    points_per_side: "16",
    stability_score_thresh: "0.9",
  });
  const predict = await client.segmentPredict({
    file: image,
    point_coords: [
      [10, 12],
      [30, 20],
    ],
    point_labels: [1, 0],
    boxes: [[1, 2, 30, 40]],
    multimask_output: true,
  });
  assert.equal(echo(predict).endpoint, "/segment/predict");
  assert.deepEqual(echo(predict).received.fields, {
    point_coords: "[[10,12],[30,20]]",
    point_labels: "[1,0]",
    boxes: "[[1,2,30,40]]",
    multimask_output: "true",
  });
});

test("a raster output format comes back as a Blob", async () => {
  const mask = await client.segmentText({ file: image, prompt: "roofs", output_format: "png" });
  assert.ok(mask instanceof Blob);
  assert.equal(mask.type, "image/png");
  const head = new Uint8Array(await mask.slice(0, 4).arrayBuffer());
  assert.deepEqual([...head], [0x89, 0x50, 0x4e, 0x47]);
  const detections = await client.segmentText({ file: image, prompt: "roofs", output_format: "detections" });
  assert.ok(!(detections instanceof Blob) && typeof detections === "object");
});

test("errors carry the status and the server's detail, hint and cause", async () => {
  const none = await failure(client.segmentText({ file: image, prompt: "standin:404" }));
  assert.equal(none.status, 404);
  assert.equal(none.kind, "not-found");
  assert.match(none.detail, /No objects found/);

  const invalid = await failure(
    client.segmentText({ file: image, prompt: "x", confidence_threshold: Number.NaN }),
  );
  assert.equal(invalid.status, 422);
  assert.match(invalid.detail, /confidence_threshold/);

  const missing = await failure(client.segment("text", { file: image } as unknown as TextSegmentParams));
  assert.equal(missing.status, 422);
  assert.match(missing.detail, /prompt/);

  const oom = await failure(client.segmentText({ file: image, prompt: "standin:500" }));
  assert.equal(oom.status, 500);
  // samgeo-api's raw "CUDA out of memory. Tried to allocate ..." reaches us as a sentence.
  assert.equal(oom.detail, "samgeo-api could not segment: the GPU ran out of memory.");
  assert.equal(oom.cause, "cuda_out_of_memory");
  assert.ok(oom.hint && oom.hint.length > 10, "a hint says what to do");
  assert.ok((await client.status()).hints.some((h) => h.startsWith("The last segmentation failed")));
});

test("aborting a segmentation rejects at once; its slot stays held until the backend has finished", async (t) => {
  // samgeo-api cannot cancel an inference: the sidecar keeps the slot (and says so as
  // backend.abandoned) until the backend has really finished, then frees it.
  const controller = new AbortController();
  const pending = client.segmentText(
    { file: image, prompt: "standin:sleep=2" },
    { signal: controller.signal },
  );
  await waitFor(async () => (await client.status()).backend.in_flight === 1, {
    timeoutMs: 10_000,
    what: "the request to reach the backend",
  });
  const abortedAt = performance.now();
  controller.abort();
  const error = await pending.then(
    () => null,
    (e: unknown) => e,
  );
  assert.ok(isAbortError(error), `expected an AbortError, got ${String(error)}`);
  assert.equal((error as Error).name, "AbortError");
  assert.ok(performance.now() - abortedAt < 500, "the promise rejects at once");
  await waitFor(async () => (await client.status()).backend.abandoned === 1, {
    timeoutMs: 1500,
    what: "the abandoned request to be shown while the backend still computes",
  });
  assert.equal((await client.status()).backend.in_flight, 1, "the slot is still held");
  await waitFor(async () => (await client.status()).backend.in_flight === 0, {
    timeoutMs: 10_000,
    what: "in_flight to drop back to 0 once the backend has finished",
  });
  const freedMs = performance.now() - abortedAt;
  t.diagnostic(`slot freed ${Math.round(freedMs)} ms after abort()`);
  assert.equal((await client.status()).backend.abandoned, 0);
  // The backend is usable afterwards.
  const again = await client.segmentText({ file: image, prompt: "trees" });
  assert.equal(again.type, "FeatureCollection");
});

test("a signal aborted before the call rejects without sending anything", async () => {
  const before = (await client.status()).backend;
  const error = await client
    .segmentText({ file: image, prompt: "trees" }, { signal: AbortSignal.abort() })
    .then(
      () => null,
      (e: unknown) => e,
    );
  assert.ok(isAbortError(error));
  assert.equal((await client.status()).backend.in_flight, before.in_flight);
});

test("diagnostics returns the environment report", async () => {
  const report = await client.diagnostics();
  assert.equal(typeof report.verdict, "string");
  assert.ok(report.checks && report.checks.length > 0);
  assert.ok(report.checks.some((check) => check.id === "sidecar"));
  const bundle = await client.diagnosticsBundle();
  assert.equal(bundle.type, "application/zip");
  assert.deepEqual([...new Uint8Array(await bundle.slice(0, 2).arrayBuffer())], [0x50, 0x4b]);
});

test("stop server stops the backend", async () => {
  const before = await client.status();
  const guard = before.backend.pid as number;
  const stopped = await client.stopBackend();
  assert.equal(stopped.available, false);
  assert.equal(stopped.state, "stopped");
  await waitFor(() => isGone(guard), { timeoutMs: 10_000, what: "the backend to exit" });
});

test("POST /shutdown stops a sidecar (fixed endpoint, no restart)", async () => {
  const own = nodeSidecar({
    program: sidecarProgram(),
    env: sidecarEnv(tempDir("home")),
    readyTimeoutMs: READY_TIMEOUT_MS,
    restart: false,
  });
  const connection = await own.start();
  const exited = new Promise((resolve) => own.on("exit", resolve));
  await new MlClient({ url: connection.url, token: connection.token }).shutdown();
  assert.deepEqual(await exited, {
    exit: { code: 0, signal: null },
    expected: false,
    stderrTail: own.stderrTail(),
  });
  assert.ok(isGone(connection.pid));
  await own.stop();
});
