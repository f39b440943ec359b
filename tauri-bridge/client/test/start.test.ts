/**
 * "Start server": the route answers at once with `starting`, and the client
 * follows /ml/status until the backend is ready (or says why it failed).
 */

import assert from "node:assert/strict";
import { test } from "node:test";

import { MlClient, SidecarError } from "@geolibre/ml-client/node";
import type { MlStatus } from "@geolibre/ml-client/node";

import { testSidecar } from "./support/sidecars.js";

const START_DELAY_S = 3;

test("startBackend answers at once with starting and follows the status to ready", async (t) => {
  const sidecar = testSidecar(t, { extraEnv: { STANDIN_START_DELAY_S: String(START_DELAY_S), STANDIN_START_PROGRESS: "output" } });
  await sidecar.start();
  const client = new MlClient(sidecar);
  const seen: Array<{ state: string; atMs: number }> = [];
  const began = performance.now();
  const status = await client.startBackend({
    pollMs: 100,
    onStatus: (s: MlStatus) => seen.push({ state: s.state, atMs: performance.now() - began }),
  });
  assert.equal(status.state, "ready");
  assert.equal(status.available, true);
  const first = seen[0];
  assert.ok(first, "onStatus saw the start's answer");
  assert.equal(first.state, "starting");
  assert.ok(first.atMs < 1000, `the start route answered after ${first.atMs.toFixed(0)} ms`);
  assert.ok(seen.length > 2, `polled while it started: ${JSON.stringify(seen)}`);
  assert.equal(seen.at(-1)?.state, "ready");
});

test("a start that fails rejects with the reason the status gives", async (t) => {
  const sidecar = testSidecar(t, { extraEnv: { STANDIN_FAIL_START: "RuntimeError: the stand-in refuses to start" } });
  await sidecar.start();
  const client = new MlClient(sidecar);
  const error = await client.startBackend({ pollMs: 100 }).then(
    () => null,
    (e: unknown) => e,
  );
  assert.ok(error instanceof SidecarError, `expected a SidecarError, got ${String(error)}`);
  assert.equal(error.status, 503);
  assert.equal(error.route, "POST /ml/backend/start");
  const status = await client.status();
  assert.equal(status.state, "failed");
  assert.equal(error.detail, status.message);
});
