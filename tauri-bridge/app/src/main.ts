/**
 * The app's page: the demo's flow inside the real webview. The sidecar is
 * started by the packaging recipe's own `startMlSidecar()` (tauri/ml-sidecar.ts,
 * imported, not copied), which spawns bundled uv through the shell plugin and
 * reads the ready line with our TypeScript client. The page shows the status
 * ("Start server" while the backend is off), runs a text segmentation of a
 * sample image drawn on a canvas, and follows an install over SSE.
 *
 * When a test drives the app (GEOLIBRE_APP_E2E_REPORT), e2e.ts clicks the
 * page's buttons in order and reports what it shows, one JSON line per step.
 */

import { invoke } from "@tauri-apps/api/core";
import { overallFraction, SidecarError } from "@geolibre/ml-client";
import type { FeatureCollection, InstallEvent, MlClient, MlStatus, Position } from "@geolibre/ml-client";

import { startMlSidecar } from "../../tauri/ml-sidecar";

import { drive, report } from "./e2e";
import type { InstallSeen } from "./e2e";

const STATUS_POLL_MS = 1000;
const LOG_LINES = 14;
const LOG_FLUSH_MS = 200;

function element<T extends HTMLElement | SVGElement = HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`the page has no #${id}`);
  return found as T;
}

function message(error: unknown): string {
  if (error instanceof SidecarError) return error.hint ? `${error.detail} ${error.hint}` : error.detail;
  return error instanceof Error ? error.message : String(error);
}

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

function showStatus(status: MlStatus): void {
  const badge = element("status-state");
  badge.textContent = status.state;
  badge.dataset["state"] = status.state;
  element("status-message").textContent = status.message;
  element("status-hints").replaceChildren(
    ...status.hints.map((hint) => Object.assign(document.createElement("li"), { textContent: hint })),
  );
  element<HTMLButtonElement>("start-backend").disabled = status.available || status.state === "starting";
}

async function refreshStatus(): Promise<void> {
  if (!client) return;
  try {
    showStatus(await client.status());
  } catch (error) {
    element("status-state").dataset["state"] = "unreachable";
    element("status-state").textContent = "unreachable";
    element("status-message").textContent = message(error);
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

function rings(result: FeatureCollection): Position[][] {
  return result.features.flatMap((feature) => {
    const geometry = feature.geometry;
    if (!geometry) return [];
    return geometry.type === "Polygon" ? geometry.coordinates : geometry.coordinates.flat();
  });
}

/** The polygons in their own coordinates (north up), fitted to the box. */
function draw(result: FeatureCollection): number {
  const svg = element<SVGSVGElement>("result");
  const all = rings(result);
  const xs = all.flat().map((p) => p[0]);
  const ys = all.flat().map((p) => -p[1]);
  const box = [Math.min(...xs), Math.min(...ys), Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys)];
  svg.setAttribute("viewBox", box.map((n) => (Number.isFinite(n) ? n : 0)).join(" "));
  svg.replaceChildren(
    ...all.map((ring) => {
      const polygon = document.createElementNS("http://www.w3.org/2000/svg", "polygon");
      polygon.setAttribute("points", ring.map((p) => `${p[0]},${-p[1]}`).join(" "));
      polygon.setAttribute("vector-effect", "non-scaling-stroke");
      return polygon;
    }),
  );
  return all.length;
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

function showInstallEvent(event: InstallEvent): void {
  seen.events += 1;
  const fraction = overallFraction(event);
  if (fraction !== null) {
    const shown = Math.max(element<HTMLProgressElement>("install-progress").value, fraction);
    element<HTMLProgressElement>("install-progress").value = shown;
    seen.fractions.push(shown);
  }
  const line = document.createElement("li");
  if (event.event === "progress") {
    seen.progress += 1;
    seen.phases.add(event.phase);
    element("install-phase").textContent = event.phase;
    element("install-message").textContent = event.message;
    line.textContent = `${event.phase}: ${event.message}`;
  } else if (event.event === "end") {
    const result = element("install-result");
    result.dataset["state"] = event.state;
    const why = event.error?.detail ? `: ${event.error.detail} ${event.error.hint ?? ""}` : "";
    result.textContent = `Install ${event.state}${why}`;
    line.textContent = `end: ${event.state}`;
  } else {
    line.textContent = event.event;
  }
  const log = element("install-log");
  log.append(line);
  while (log.children.length > 8) log.firstElementChild?.remove();
}

async function install(): Promise<void> {
  if (!client) return;
  element<HTMLButtonElement>("install").disabled = true;
  try {
    await client.install({ weights: false, force: true });
    await client.followInstall(showInstallEvent);
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
