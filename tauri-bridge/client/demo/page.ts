/**
 * What the demo page (app.ts) and the Tauri app's page (tauri-bridge/app/src/main.ts,
 * bundled from here) show alike: the status badge, message and hints, the install's
 * progress bar and log, the polygons, and an error as one sentence. Each page adds
 * its own controls around these; both pages' HTML carry the ids these fill (#status-state,
 * #status-message, #status-hints, #start-backend, #install-progress, #install-phase,
 * #install-message, #install-result, #install-log, #result).
 */

import { overallFraction, SidecarError } from "@geolibre/ml-client";
import type { FeatureCollection, InstallEvent, MlStatus, Position } from "@geolibre/ml-client";

const INSTALL_LOG_LINES = 8;
const SVG_NS = "http://www.w3.org/2000/svg";

export function element<T extends HTMLElement | SVGElement = HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`the page has no #${id}`);
  return found as T;
}

/** An error as the sentence the page shows (the sidecar's detail and hint). */
export function message(error: unknown): string {
  if (error instanceof SidecarError) return error.hint ? `${error.detail} ${error.hint}` : error.detail;
  return error instanceof Error ? error.message : String(error);
}

// --- status ---------------------------------------------------------------------

/** The badge, message and hints; "Start server" only while the backend can be started. */
export function showStatus(status: MlStatus): void {
  const badge = element("status-state");
  badge.textContent = status.state;
  badge.dataset["state"] = status.state;
  element("status-message").textContent = status.message;
  element("status-hints").replaceChildren(
    ...status.hints.map((hint) => Object.assign(document.createElement("li"), { textContent: hint })),
  );
  element<HTMLButtonElement>("start-backend").disabled = status.available || status.state === "starting";
}

/** The sidecar did not answer /ml/status. */
export function showUnreachable(error: unknown): void {
  const badge = element("status-state");
  badge.textContent = "unreachable";
  badge.dataset["state"] = "unreachable";
  element("status-message").textContent = message(error);
}

// --- install --------------------------------------------------------------------

/**
 * One install event: the bar (it never moves back during an install), the phase
 * and message, the outcome when it ends, and a line in the log (the last few kept).
 */
export function showInstallEvent(event: InstallEvent): void {
  const fraction = overallFraction(event);
  const bar = element<HTMLProgressElement>("install-progress");
  if (fraction !== null) bar.value = Math.max(bar.value, fraction);
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
  const log = element("install-log");
  log.append(line);
  while (log.children.length > INSTALL_LOG_LINES) log.firstElementChild?.remove();
}

// --- segmentation ---------------------------------------------------------------

/** An image the page can show under the polygons. */
export interface ShownImage {
  url: string;
  width: number;
  height: number;
}

function rings(result: FeatureCollection): Position[][] {
  return result.features.flatMap((feature) => {
    const geometry = feature.geometry;
    if (!geometry) return [];
    return geometry.type === "Polygon" ? geometry.coordinates : geometry.coordinates.flat();
  });
}

/**
 * The polygons in #result: over the image in pixel coordinates when the answer has
 * no CRS and there is an image, else in their own coordinates (north up) fitted to
 * the box. Returns how many were drawn.
 */
export function draw(result: FeatureCollection, image: ShownImage | null = null): number {
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
