/**
 * The tiled-job calls through the typed client on a real sidecar. This sidecar has no
 * model environment (the Python tier-2 tests run whole jobs on one), so a job is
 * refused with the sentence that says why; the other routes answer typed.
 */

import assert from "node:assert/strict";
import { test } from "node:test";

import { jobForm } from "@geolibre/ml-client/node";

import { failure, sidecarForFile } from "./support/sidecars.js";

const { client } = sidecarForFile();
const raster = new Blob([new Uint8Array([73, 73, 42, 0, 8, 0, 0, 0])], { type: "image/tiff" });

test("jobForm sends the mode's fields, mode, tile_size and overlap", () => {
  const form = jobForm({ mode: "text", file: raster, filename: "big.tif", prompt: "trees", tile_size: 512, overlap: 64 });
  assert.equal(form.get("mode"), "text");
  assert.equal(form.get("prompt"), "trees");
  assert.equal(form.get("tile_size"), "512");
  assert.equal(form.get("overlap"), "64");
  assert.equal((form.get("file") as File).name, "big.tif");
  assert.equal(form.get("filename"), null);
});

test("a job without a model environment is refused with a sentence saying why", async () => {
  const error = await failure(client.createJob({ mode: "text", file: raster, prompt: "trees" }));
  assert.equal(error.status, 409);
  assert.match(error.detail, /model environment/);
});

test("the job list names the pool's backends; an unknown job is a 404", async () => {
  const list = await client.jobs();
  assert.deepEqual(list.jobs, []);
  assert.deepEqual(
    list.backends.map((b) => [b.name, b.concurrency]),
    [["local", 1]],
  );
  // No job has run, so the tile worker has not been started; status says the same.
  assert.equal(list.worker.state, "not_started");
  assert.equal(list.worker.pid, null);
  const status = await client.status();
  assert.deepEqual(status.jobs?.worker, list.worker);
  assert.equal(status.jobs?.active, 0);
  const missing = await failure(client.job("no-such-job"));
  assert.equal(missing.status, 404);
  assert.match(missing.detail, /no job/);
});
