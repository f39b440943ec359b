/**
 * The demo page: status, the one-click install with its progress bar,
 * diagnostics, and a segmentation whose polygons are drawn over the image.
 * It gets the sidecar's URL and token from the demo server's /config.json
 * and reads it again when the sidecar was restarted (a ConnectionSource).
 */

import { isAbortError, MlClient, overallFraction, SidecarError } from "@geolibre/ml-client";
import type {
  ConnectionSource,
  FeatureCollection,
  InstallEvent,
  JobEvent,
  JobSnapshot,
  MlStatus,
  Position,
  SidecarEndpoint,
} from "@geolibre/ml-client";

interface DemoConfig extends SidecarEndpoint {
  backend: "standin" | "real";
}

const STATUS_POLL_MS = 1000;
const LOG_LINES = 8;
const SVG_NS = "http://www.w3.org/2000/svg";

function element<T extends HTMLElement | SVGElement = HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`the page has no #${id}`);
  return found as T;
}

async function loadConfig(): Promise<DemoConfig> {
  const response = await fetch("/config.json", { cache: "no-store" });
  const body = (await response.json()) as DemoConfig | { detail: string };
  if (!response.ok || !("url" in body)) throw new Error("detail" in body ? body.detail : "no config");
  return body;
}

/** The sidecar as the demo server reports it; asks again after a call got no answer. */
class DemoConnection implements ConnectionSource {
  private current: Promise<DemoConfig> = loadConfig();

  endpoint(): Promise<DemoConfig> {
    return this.current;
  }

  async endpointAfterFailure(failed: SidecarEndpoint): Promise<SidecarEndpoint | null> {
    this.current = loadConfig();
    const next = await this.current;
    return next.url !== failed.url || next.token !== failed.token ? next : null;
  }
}

const connection = new DemoConnection();
const client = new MlClient(connection);

function message(error: unknown): string {
  if (error instanceof SidecarError) return error.hint ? `${error.detail} ${error.hint}` : error.detail;
  return error instanceof Error ? error.message : String(error);
}

// --- status ---------------------------------------------------------------------

function showStatus(status: MlStatus): void {
  const badge = element("status-state");
  badge.textContent = status.state;
  badge.dataset["state"] = status.state;
  element("status-message").textContent = status.message;
  element("status-hints").replaceChildren(
    ...status.hints.map((hint) => Object.assign(document.createElement("li"), { textContent: hint })),
  );
  element("status-accelerator").textContent = status.accelerator?.summary ?? "";
  element<HTMLButtonElement>("start-backend").disabled = status.available || status.state === "starting";
  element<HTMLButtonElement>("stop-backend").disabled = !status.available;
  if (status.install?.running && !following) void followInstall();
}

async function refreshStatus(): Promise<void> {
  try {
    showStatus(await client.status());
  } catch (error) {
    const badge = element("status-state");
    badge.textContent = "unreachable";
    badge.dataset["state"] = "unreachable";
    element("status-message").textContent = message(error);
  }
}

async function backendButton(action: () => Promise<MlStatus>): Promise<void> {
  element("status-message").textContent = "working…";
  try {
    showStatus(await action());
  } catch (error) {
    element("status-message").textContent = message(error);
  }
}

// --- install --------------------------------------------------------------------

let following = false;
let shownFraction = 0;

function showInstallEvent(event: InstallEvent): void {
  const fraction = overallFraction(event);
  if (fraction !== null) shownFraction = Math.max(shownFraction, fraction);
  element<HTMLProgressElement>("install-progress").value = shownFraction;
  const log = element("install-log");
  const line = document.createElement("li");
  if (event.event === "progress") {
    element("install-phase").textContent = event.phase;
    element("install-message").textContent = event.message;
    line.textContent = `${event.phase}: ${event.message}`;
  } else if (event.event === "error") {
    line.textContent = `error: ${event.detail}`;
  } else if (event.event === "end") {
    const result = element("install-result");
    result.dataset["state"] = event.state;
    const why = event.error?.detail ? `: ${event.error.detail} ${event.error.hint ?? ""}` : "";
    result.textContent = `Install ${event.state}${why}`;
    line.textContent = `end: ${event.state}`;
  } else {
    line.textContent = `${event.event}: ${event.outcome} (${event.env})`;
  }
  log.append(line);
  while (log.children.length > LOG_LINES) log.firstElementChild?.remove();
}

async function followInstall(): Promise<void> {
  following = true;
  element<HTMLButtonElement>("install").disabled = true;
  element<HTMLButtonElement>("cancel-install").disabled = false;
  try {
    await client.followInstall(showInstallEvent);
  } catch (error) {
    element("install-result").textContent = message(error);
  } finally {
    following = false;
    element<HTMLButtonElement>("install").disabled = false;
    element<HTMLButtonElement>("cancel-install").disabled = true;
    void refreshStatus();
  }
}

async function startInstall(): Promise<void> {
  const token = element<HTMLInputElement>("install-token").value.trim();
  const skipWeights = element<HTMLInputElement>("install-skip-weights").checked;
  shownFraction = 0;
  element("install-log").replaceChildren();
  element("install-result").textContent = "";
  try {
    await client.install({ weights: !skipWeights, ...(token ? { token } : {}), force: true });
  } catch (error) {
    element("install-result").textContent = message(error);
    return;
  }
  await followInstall();
}

// --- segmentation ---------------------------------------------------------------

let running: AbortController | null = null;
let sample: File | null = null;

interface ShownImage {
  url: string;
  width: number;
  height: number;
}

/** The upload as a browser image, when the browser can show it (not a GeoTIFF). */
function imageOf(file: Blob): Promise<ShownImage | null> {
  const url = URL.createObjectURL(file);
  return new Promise((resolve) => {
    const img = new Image();
    img.onload = () => resolve({ url, width: img.naturalWidth, height: img.naturalHeight });
    img.onerror = () => resolve(null);
    img.src = url;
  });
}

function rings(result: FeatureCollection): Position[][] {
  return result.features.flatMap((feature) => {
    const geometry = feature.geometry;
    if (!geometry) return [];
    return geometry.type === "Polygon" ? geometry.coordinates : geometry.coordinates.flat();
  });
}

/** Polygons over the image: pixel coordinates when the answer has no CRS, else map units (north up). */
function draw(result: FeatureCollection, image: ShownImage | null): number {
  const svg = element<SVGSVGElement>("result");
  const all = rings(result);
  const pixels = !result.crs && image !== null;
  const flip = pixels ? 1 : -1;
  let box = [0, 0, image?.width ?? 1, image?.height ?? 1];
  if (!pixels) {
    const xs = all.flat().map((p) => p[0]);
    const ys = all.flat().map((p) => p[1] * flip);
    box = [
      Math.min(...xs),
      Math.min(...ys),
      Math.max(...xs) - Math.min(...xs),
      Math.max(...ys) - Math.min(...ys),
    ];
  }
  svg.setAttribute("viewBox", box.map((n) => (Number.isFinite(n) ? n : 0)).join(" "));
  const children: SVGElement[] = [];
  if (pixels && image) {
    const picture = document.createElementNS(SVG_NS, "image");
    picture.setAttribute("href", image.url);
    picture.setAttribute("width", String(image.width));
    picture.setAttribute("height", String(image.height));
    children.push(picture);
  }
  for (const ring of all) {
    const polygon = document.createElementNS(SVG_NS, "polygon");
    polygon.setAttribute("points", ring.map((p) => `${p[0]},${p[1] * flip}`).join(" "));
    children.push(polygon);
  }
  svg.replaceChildren(...children);
  return all.length;
}

async function chosenFile(): Promise<File | null> {
  const picked = element<HTMLInputElement>("file").files?.[0];
  return picked ?? sample;
}

async function segment(): Promise<void> {
  const file = await chosenFile();
  const status = element("segment-status");
  if (!file) {
    status.textContent = "Choose an image first.";
    return;
  }
  running?.abort();
  const controller = new AbortController();
  running = controller;
  element<HTMLButtonElement>("cancel-segment").disabled = false;
  status.dataset["state"] = "running";
  status.textContent = "Segmenting… (the backend starts on the first request)";
  const started = performance.now();
  const mode = element<HTMLSelectElement>("mode").value;
  const backend =
    element<HTMLSelectElement>("seg-backend").value === "transformers" ? "transformers" : "meta";
  try {
    const options = { signal: controller.signal };
    const result =
      mode === "automatic"
        ? await client.segmentAutomatic({ file }, options)
        : await client.segmentText(
            { file, prompt: element<HTMLInputElement>("prompt").value, backend },
            options,
          );
    const count = draw(result, await imageOf(file));
    status.dataset["state"] = "done";
    status.textContent = `Found ${result.features.length} object(s) in ${((performance.now() - started) / 1000).toFixed(1)} s.`;
    element("result-count").textContent = `${count} polygon(s) drawn`;
  } catch (error) {
    status.dataset["state"] = isAbortError(error) ? "cancelled" : "error";
    status.textContent = isAbortError(error) ? "Cancelled." : message(error);
  } finally {
    if (running === controller) running = null;
    element<HTMLButtonElement>("cancel-segment").disabled = true;
    void refreshStatus();
  }
}

async function useSample(): Promise<void> {
  const blob = await (await fetch("/sample.png")).blob();
  sample = new File([blob], "sample.png", { type: "image/png" });
  element<HTMLInputElement>("file").value = "";
  element("segment-status").textContent = "Sample image selected.";
}

// --- tiled job ------------------------------------------------------------------

let jobId: string | null = null;

function showJob(snapshot: JobSnapshot, event?: JobEvent): void {
  const total = snapshot.tiles_total ?? 0;
  element<HTMLProgressElement>("job-progress").value = total ? snapshot.tiles_done / total : 0;
  const left = snapshot.estimated_left_s === null ? "" : `, about ${Math.ceil(snapshot.estimated_left_s)} s left`;
  const failed = snapshot.failures.length ? `, ${snapshot.failures.length} failed` : "";
  const status = element("job-status");
  status.dataset["state"] = snapshot.state;
  status.textContent = snapshot.error
    ? `${snapshot.state}: ${snapshot.error.detail}`
    : `${snapshot.state}: ${snapshot.tiles_done}/${total || "?"} tiles${failed}${left}` +
      (event?.event === "tile_retry" ? ` (retrying tile ${event.tile}: ${event.detail})` : "");
}

async function runJob(): Promise<void> {
  const file = await chosenFile();
  const status = element("job-status");
  if (!file) {
    status.textContent = "Choose an image first.";
    return;
  }
  const mode = element<HTMLSelectElement>("mode").value === "automatic" ? "automatic" : "text";
  element<HTMLButtonElement>("cancel-job").disabled = false;
  try {
    const params =
      mode === "automatic"
        ? ({ mode, file } as const)
        : ({ mode, file, prompt: element<HTMLInputElement>("prompt").value } as const);
    const created = await client.createJob(params);
    jobId = created.id;
    showJob(created);
    const end = await client.followJob(created.id, (event) => {
      if (event.event !== "end") void client.job(created.id).then((snapshot) => showJob(snapshot, event));
    });
    showJob(await client.job(created.id));
    if (end.state === "succeeded") {
      const result = await client.jobResult(created.id);
      element("result-count").textContent = `${draw(result, await imageOf(file))} polygon(s) drawn`;
    }
  } catch (error) {
    status.dataset["state"] = "error";
    status.textContent = message(error);
  } finally {
    element<HTMLButtonElement>("cancel-job").disabled = true;
  }
}

// --- diagnostics ----------------------------------------------------------------

async function diagnostics(): Promise<void> {
  const verdict = element("diagnostics-verdict");
  verdict.textContent = "running…";
  try {
    const report = await client.diagnostics();
    verdict.textContent = report.verdict ?? "?";
    verdict.dataset["state"] = report.verdict ?? "unknown";
    element("diagnostics-summary").textContent = report.summary ?? "";
    element("diagnostics-checks").replaceChildren(
      ...(report.checks ?? []).map((check) => {
        const item = document.createElement("li");
        item.dataset["status"] = check.status;
        item.textContent = `${check.title}: ${check.detail}${check.fix ? ` (${check.fix})` : ""}`;
        return item;
      }),
    );
  } catch (error) {
    verdict.textContent = "failed";
    element("diagnostics-summary").textContent = message(error);
  }
}

// --- wiring ---------------------------------------------------------------------

element("start-backend").addEventListener("click", () => void backendButton(() => client.startBackend({ onStatus: showStatus })));
element("stop-backend").addEventListener("click", () => void backendButton(() => client.stopBackend()));
element("install").addEventListener("click", () => void startInstall());
element("cancel-install").addEventListener("click", () => void client.cancelInstall().catch(() => undefined));
element("use-sample").addEventListener("click", () => void useSample());
element("cancel-segment").addEventListener("click", () => running?.abort());
element("diagnostics-refresh").addEventListener("click", () => void diagnostics());
element("run-job").addEventListener("click", () => void runJob());
element("cancel-job").addEventListener("click", () => {
  if (jobId) void client.deleteJob(jobId).catch(() => undefined);
});
element<HTMLFormElement>("segment-form").addEventListener("submit", (event) => {
  event.preventDefault();
  void segment();
});

try {
  const config = await connection.endpoint();
  element("connection").textContent = `sidecar at ${config.url} (backend: ${config.backend})`;
} catch (error) {
  element("connection").textContent = `no sidecar: ${message(error)}`;
}
await refreshStatus();
void diagnostics();
setInterval(() => void refreshStatus(), STATUS_POLL_MS);
document.body.dataset["loaded"] = "true";
