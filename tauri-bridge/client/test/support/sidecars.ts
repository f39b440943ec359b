/** Start real sidecars for a test and make sure none outlives it. */

import assert from "node:assert/strict";
import { after, before } from "node:test";
import type { TestContext } from "node:test";

import { MlClient, nodeSidecar, SidecarError } from "@geolibre/ml-client/node";
import type { NodeSidecarOptions, Sidecar } from "@geolibre/ml-client/node";

import { sidecarEnv, sidecarProgram, tempDir } from "./env.js";

export const READY_TIMEOUT_MS = 30_000;

export interface TestSidecarOptions extends Partial<NodeSidecarOptions> {
  /** Extra environment on top of a fresh home and the stand-in backend. */
  extraEnv?: Record<string, string>;
}

/** A managed sidecar for this test (stopped after it); `start()` is up to the test. */
export function testSidecar(t: TestContext | null, options: TestSidecarOptions = {}): Sidecar {
  const { extraEnv, ...rest } = options;
  const sidecar = nodeSidecar({
    program: sidecarProgram(),
    env: sidecarEnv(tempDir("home"), extraEnv),
    readyTimeoutMs: READY_TIMEOUT_MS,
    restart: { initialDelayMs: 50 },
    stopStepTimeoutMs: 15_000,
    ...rest,
  });
  t?.after(async () => {
    await sidecar.stop();
  });
  return sidecar;
}

/** One sidecar and its client for every test of a file: started before the first, stopped after the last. */
export function sidecarForFile(): { readonly sidecar: Sidecar; readonly client: MlClient } {
  const sidecar = nodeSidecar({
    program: sidecarProgram(),
    env: sidecarEnv(tempDir("home")),
    readyTimeoutMs: READY_TIMEOUT_MS,
  });
  before(async () => {
    await sidecar.start();
  });
  after(async () => {
    await sidecar.stop();
  });
  return { sidecar, client: new MlClient(sidecar) };
}

/** The SidecarError `promise` rejects with (fails the test if it resolves or throws anything else). */
export async function failure(promise: Promise<unknown>): Promise<SidecarError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  assert.ok(error instanceof SidecarError, `expected a SidecarError, got ${String(error)}`);
  return error;
}
