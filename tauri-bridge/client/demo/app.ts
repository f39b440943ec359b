/**
 * The demo page: status, the one-click install with its progress bar,
 * diagnostics, and a segmentation whose polygons are drawn over the image.
 * It gets the sidecar's URL and token from the demo server's /config.json
 * and reads it again when the sidecar was restarted (a ConnectionSource).
 */

import { isAbortError, MlClient } from "@geolibre/ml-client";
import type { ConnectionSource, JobEvent, JobSnapshot, MlStatus, SidecarEndpoint } from "@geolibre/ml-client";

import { draw, element, message, showInstallEvent, showStatus as showSharedStatus, showUnreachable } from "./page.js";
import type { ShownImage } from "./page.js";

interface DemoConfig extends SidecarEndpoint {
  backend: "standin" | "real";
}

const STATUS_POLL_MS = 1000;

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

// --- status ---------------------------------------------------------------------

function showStatus(status: MlStatus): void {
  showSharedStatus(status);
  element("status-accelerator").textContent = status.accelerator?.summary ?? "";
  element<HTMLButtonElement>("stop-backend").disabled = !status.available;
  if (status.install?.running && !following) void followInstall();
}

async function refreshStatus(): Promise<void> {
  try {
    showStatus(await client.status());
  } catch (error) {
    showUnreachable(error);
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
  element<HTMLProgressElement>("install-progress").value = 0;
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
