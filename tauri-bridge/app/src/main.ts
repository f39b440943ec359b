/**
 * The app's page: the demo's flow inside the real webview. The sidecar is
 * started by the packaging recipe's own `startMlSidecar()` (tauri/ml-sidecar.ts,
 * imported, not copied), which spawns bundled uv through the shell plugin and
 * reads the ready line with our TypeScript client. The page shows the status
 * ("Start server" while the backend is off), runs a text segmentation of a
 * sample image drawn on a canvas, and follows an install over SSE. The status,
 * install and polygon views are the demo's own (../../client/demo/page.ts).
 *
 * When a test drives the app (GEOLIBRE_APP_E2E_REPORT), e2e.ts clicks the
 * page's buttons in order and reports what it shows, one JSON line per step.
 */

import { invoke } from "@tauri-apps/api/core";
import { overallFraction } from "@geolibre/ml-client";
import type { InstallEvent, MlClient } from "@geolibre/ml-client";

import { draw, element, message, showInstallEvent, showStatus, showUnreachable } from "../../client/demo/page";
import { startMlSidecar } from "../../tauri/ml-sidecar";

import { drive, report } from "./e2e";
import type { InstallSeen } from "./e2e";

const STATUS_POLL_MS = 1000;
const LOG_LINES = 14;
const LOG_FLUSH_MS = 200;

// --- the sidecar's output: on the page and in <app log dir>/ml-sidecar.log ---------

const pending: string[] = [];
let scheduled: Promise<void> | null = null;
let written: Promise<void> = Promise.resolve();

/** Lines go to the app in batches, one write after the other (the file keeps their order). */
function flushLog(): Promise<void> {
  scheduled ??= new Promise<void>((done) => setTimeout(done, LOG_FLUSH_MS)).then(() => {
    scheduled = null;
    const lines = pending.splice(0);
    if (lines.length) {
      written = written.then(() => invoke<void>("sidecar_log", { lines }).catch(() => undefined));
    }
    return written;
  });
  return scheduled;
}

function onOutput(line: string): void {
  const shown = element("sidecar-log");
  shown.textContent = [...(shown.textContent ?? "").split("\n").filter(Boolean), line]
    .slice(-LOG_LINES)
    .join("\n");
  pending.push(line);
  void flushLog();
}

// --- status ------------------------------------------------------------------------

let client: MlClient | null = null;

async function refreshStatus(): Promise<void> {
  if (!client) return;
  try {
    showStatus(await client.status());
  } catch (error) {
    showUnreachable(error);
  }
}

async function startServer(): Promise<void> {
  if (!client) return;
  element("status-message").textContent = "starting the model server…";
  try {
    showStatus(await client.startBackend({ onStatus: showStatus }));
  } catch (error) {
    element("status-message").textContent = message(error);
  }
}

// --- segmentation ------------------------------------------------------------------

/** A 320×240 PNG made by the webview's own canvas (the sample image). */
function sampleImage(): Promise<File> {
  const canvas = document.createElement("canvas");
  canvas.width = 320;
  canvas.height = 240;
  const context = canvas.getContext("2d");
  if (!context) throw new Error("no 2D canvas");
  const gradient = context.createLinearGradient(0, 0, 320, 240);
  gradient.addColorStop(0, "#2d6a4f");
  gradient.addColorStop(1, "#d8f3dc");
  context.fillStyle = gradient;
  context.fillRect(0, 0, 320, 240);
  return new Promise((resolve, reject) =>
    canvas.toBlob((blob) => {
      if (blob) resolve(new File([blob], "sample.png", { type: "image/png" }));
      else reject(new Error("the canvas made no PNG"));
    }, "image/png"),
  );
}

async function segment(): Promise<void> {
  if (!client) return;
  const status = element("segment-status");
  status.dataset["state"] = "running";
  status.textContent = "Segmenting… (the backend starts on the first request)";
  const started = performance.now();
  try {
    // As GeoLibre's mlSegment: no backend field (samgeo-api's text route has no model_version).
    const result = await client.segmentText({
      file: await sampleImage(),
      prompt: element<HTMLInputElement>("prompt").value,
      output_format: "geojson",
    });
    const count = draw(result);
    status.dataset["state"] = "done";
    status.textContent = `Found ${result.features.length} object(s), ${count} polygon(s) drawn, in ${((performance.now() - started) / 1000).toFixed(1)} s.`;
  } catch (error) {
    status.dataset["state"] = "error";
    status.textContent = message(error);
  } finally {
    void refreshStatus();
  }
}

// --- install over SSE --------------------------------------------------------------

const seen: InstallSeen = { events: 0, progress: 0, phases: new Set<string>(), fractions: [] };

/** The page's install view (shared with the demo), and what the e2e flow reports of it. */
function onInstallEvent(event: InstallEvent): void {
  showInstallEvent(event);
  seen.events += 1;
  if (event.event === "progress") {
    seen.progress += 1;
    seen.phases.add(event.phase);
  }
  if (overallFraction(event) !== null) seen.fractions.push(element<HTMLProgressElement>("install-progress").value);
}

async function install(): Promise<void> {
  if (!client) return;
  element<HTMLButtonElement>("install").disabled = true;
  try {
    await client.install({ weights: false, force: true });
    await client.followInstall(onInstallEvent);
  } catch (error) {
    element("install-result").dataset["state"] = "error";
    element("install-result").textContent = message(error);
  } finally {
    element<HTMLButtonElement>("install").disabled = false;
    void refreshStatus();
  }
}

// --- wiring ------------------------------------------------------------------------

element("start-backend").addEventListener("click", () => void startServer());
element("segment").addEventListener("click", () => void segment());
element("install").addEventListener("click", () => void install());

const flow = await invoke<string | null>("e2e_flow");
element("log-path").textContent = `also in ${await invoke<string>("sidecar_log_path")}`;
try {
  const started = await startMlSidecar({}, { onOutput });
  client = started.client;
  const connection = started.sidecar.connection;
  element("connection").textContent = `sidecar ${connection?.version ?? ""} at ${connection?.url ?? "?"} (pid ${connection?.pid ?? "?"})`;
  for (const id of ["segment", "install"]) element<HTMLButtonElement>(id).disabled = false;
  if (flow !== null) {
    await report("sidecar", { url: connection?.url, pid: connection?.pid, origin: window.location.origin });
  }
} catch (error) {
  element("connection").textContent = `the ML sidecar did not start: ${message(error)}`;
  if (flow !== null) await report("error", { where: "start", message: message(error) });
}
if (client) {
  await refreshStatus();
  setInterval(() => void refreshStatus(), STATUS_POLL_MS);
  if (flow !== null) {
    drive(flow, { installEvents: seen, flushLog }).catch(
      (error: unknown) => void report("error", { where: "flow", message: message(error) }),
    );
  }
}
