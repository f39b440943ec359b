/**
 * The demo page in headless Chromium against the stand-in: the whole flow a
 * new user sees. Install (real uv, offline, from a stand-in wheelhouse) with
 * its progress bar, diagnostics, then a segmentation of an uploaded image
 * whose polygons are drawn, and the status turning "ready". A screenshot is
 * kept in GEOLIBRE_TEST_ARTIFACTS (default <repo>/test-artifacts).
 */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { MlClient } from "@geolibre/ml-client";
import type { SidecarEndpoint } from "@geolibre/ml-client";
import { chromium } from "playwright-core";

import { makePng } from "../../demo/sample-image.js";
import { CLIENT_DIR, REPO_ROOT, sidecarProgram } from "../support/env.js";
import { isGone, waitFor } from "../support/wait.js";

const CHROMIUM = process.env["GEOLIBRE_TEST_CHROMIUM"] ?? "/usr/bin/chromium";
const ARTIFACTS = process.env["GEOLIBRE_TEST_ARTIFACTS"] ?? join(REPO_ROOT, "test-artifacts");
const FLOW_TIMEOUT_MS = 60_000;
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

interface DemoReady {
  url: string;
  sidecar: string;
  sidecarPid: number;
}

test(
  "the demo page installs, segments and draws the polygons",
  { skip: !existsSync(CHROMIUM) && `no browser at ${CHROMIUM}` },
  async (t) => {
    const server = spawn(
      process.execPath,
      [join(CLIENT_DIR, "build", "demo", "server.js"), "--port", "0", "--quiet"],
      {
        env: { ...process.env, GEOLIBRE_DEMO_SIDECAR: sidecarProgram() },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let serverLog = "";
    server.stderr.setEncoding("utf8").on("data", (chunk: string) => (serverLog += chunk));
    const serverExited = new Promise<number | null>((resolve) => server.once("exit", resolve));
    t.after(async () => {
      if (server.exitCode === null) server.kill("SIGTERM");
      await serverExited;
    });
    const ready = await new Promise<DemoReady>((resolve, reject) => {
      let text = "";
      server.stdout.setEncoding("utf8").on("data", (chunk: string) => {
        text += chunk;
        if (text.includes("\n")) resolve(JSON.parse(text.split("\n")[0] as string) as DemoReady);
      });
      void serverExited.then((code) => reject(new Error(`the demo server exited (${code}):\n${serverLog}`)));
    });

    const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    t.after(() => browser.close());
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const pageErrors: string[] = [];
    page.on("pageerror", (error) => pageErrors.push(error.message));
    page.on("console", (msg) => {
      if (msg.type() === "error") pageErrors.push(msg.text());
    });
    const text = (selector: string): Promise<string> => page.locator(selector).innerText();

    await page.goto(ready.url);
    await page.waitForSelector('body[data-loaded="true"]', { timeout: FLOW_TIMEOUT_MS });
    assert.equal(await text("#status-state"), "stopped");
    assert.match(await text("#status-message"), /not installed/);

    // Install: the progress bar fills, the end says succeeded.
    await page.click("#install");
    await page.waitForSelector('#install-result[data-state="succeeded"]', { timeout: FLOW_TIMEOUT_MS });
    assert.equal(
      await page.locator("#install-progress").evaluate((bar) => (bar as HTMLProgressElement).value),
      1,
    );
    const log = await text("#install-log");
    assert.match(log, /verify: /);
    assert.match(log, /end: succeeded/);

    // Diagnostics render their checks.
    await page.click("#diagnostics-refresh");
    await waitFor(async () => (await page.locator("#diagnostics-checks li").count()) > 2, {
      timeoutMs: FLOW_TIMEOUT_MS,
      what: "the diagnostics checks",
    });

    // Segment an uploaded image; the backend starts on demand.
    const upload = makePng(256, 192, 2); // seed 2: the stand-in finds three objects
    await page.setInputFiles("#file", { name: "tile.png", mimeType: "image/png", buffer: upload });
    await page.fill("#prompt", "buildings");
    // This machine has no NVIDIA GPU: SAM 3's meta implementation would be refused (501).
    await page.selectOption("#seg-backend", "transformers");
    await page.click("#segment");
    await page.waitForSelector('#segment-status[data-state="done"]', { timeout: FLOW_TIMEOUT_MS });
    await page.waitForFunction(() => document.getElementById("status-state")?.textContent === "ready", null, {
      timeout: FLOW_TIMEOUT_MS,
    });

    // The drawn polygons are the answer's, over the image.
    const drawn = await page
      .locator("#result polygon")
      .evaluateAll((polygons) => polygons.map((polygon) => polygon.getAttribute("points")));
    const config = (await (await fetch(new URL("/config.json", ready.url))).json()) as SidecarEndpoint;
    const expected = await new MlClient(config).segmentText({
      file: new Blob([new Uint8Array(upload)], { type: "image/png" }),
      prompt: "buildings",
    });
    const rings = expected.features.map((f) =>
      f.geometry?.type === "Polygon"
        ? (f.geometry.coordinates[0] ?? []).map((p) => `${p[0]},${p[1]}`).join(" ")
        : "",
    );
    assert.ok(rings.length >= 1);
    assert.deepEqual(drawn, rings);
    assert.equal(await page.locator("#result image").count(), 1, "the uploaded image under the polygons");
    assert.match(await text("#segment-status"), new RegExp(`Found ${rings.length} object`));
    assert.equal(await page.locator("#result").getAttribute("viewBox"), "0 0 256 192");

    // A tiled job of the same image: the stand-in's environment has no rasterio to cut
    // tiles with, so the job ends failed and the page shows the sentence saying so.
    await page.click("#run-job");
    await page.waitForSelector('#job-status[data-state="failed"]', { timeout: FLOW_TIMEOUT_MS });
    assert.match(await text("#job-status"), /^failed: The model environment lacks rasterio/);

    mkdirSync(ARTIFACTS, { recursive: true });
    const shot = join(ARTIFACTS, "demo-page.png");
    await page.screenshot({ path: shot, fullPage: true });
    t.diagnostic(`screenshot: ${shot}`);
    assert.deepEqual(pageErrors, []);

    // Stopping the demo server stops its sidecar.
    server.kill("SIGTERM");
    assert.equal(await serverExited, 0, serverLog);
    await waitFor(() => isGone(ready.sidecarPid), { timeoutMs: 10_000, what: "the demo's sidecar to exit" });
  },
);
