/** Start real sidecars for a test and make sure none outlives it. */

import type { TestContext } from "node:test";

import { nodeSidecar } from "@geolibre/ml-client/node";
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
