/**
 * A test driving the page (GEOLIBRE_APP_E2E_REPORT names a file): the page
 * clicks its own buttons as a person would and reports what it then shows, one
 * JSON line per step, through the app's `e2e_report` command. The flow is
 * GEOLIBRE_APP_E2E_FLOW:
 *
 * - "full": status, install (over SSE; it stops a running backend to switch),
 *   Start server, a segmentation; the window stays open with the backend running.
 * - "full-then-close": the same, then the page closes its window (a normal quit).
 * - "close-while-segmenting": Start server, a segmentation the stand-in holds
 *   for minutes ("standin:sleep=…"), and the window closed while it runs.
 * - "idle": the sidecar, the first status, and a spawn the capability must refuse.
 */

import { invoke } from "@tauri-apps/api/core";
import { getCurrentWindow } from "@tauri-apps/api/window";
import { Command } from "@tauri-apps/plugin-shell";

import { element } from "../../client/demo/page";

export interface InstallSeen {
  events: number;
  progress: number;
  phases: Set<string>;
  fractions: number[];
}

export interface PageHooks {
  installEvents: InstallSeen;
  flushLog: () => Promise<void>;
}

const HELD_SEGMENTATION_S = 600;

export function report(step: string, fields: Record<string, unknown> = {}): Promise<void> {
  return invoke("e2e_report", { line: JSON.stringify({ step, ...fields }) });
}

async function waitFor(what: string, condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s: ${what}`);
    await new Promise((done) => setTimeout(done, 100));
  }
}

const text = (id: string): string => element(id).textContent ?? "";
const state = (id: string): string => element(id).dataset["state"] ?? "";

async function install(seen: InstallSeen): Promise<void> {
  element("install").click();
  await waitFor("the install's end", () => !["none", ""].includes(state("install-result")), 240_000);
  await report("installed", {
    result: state("install-result"),
    text: text("install-result"),
    events: seen.events,
    progress: seen.progress,
    phases: [...seen.phases],
    fractions: seen.fractions,
    bar: element<HTMLProgressElement>("install-progress").value,
  });
}

async function startServer(): Promise<void> {
  const button = element<HTMLButtonElement>("start-backend");
  await waitFor("Start server offered", () => state("status-state") === "stopped" && !button.disabled, 30_000);
  button.click();
  await waitFor("the server ready", () => state("status-state") === "ready", 90_000);
  await report("started", { badge: text("status-state"), message: text("status-message") });
}

async function segment(): Promise<void> {
  element("segment").click();
  await waitFor("a segmentation", () => ["done", "error"].includes(state("segment-status")), 90_000);
  await report("segmented", {
    state: state("segment-status"),
    text: text("segment-status"),
    polygons: element("result").querySelectorAll("polygon").length,
  });
}

/** The capability allows one command line: bundled uv with other arguments is refused. */
async function outsideTheCapability(): Promise<Record<string, unknown>> {
  try {
    const child = await Command.sidecar("binaries/uv", ["--version"], { env: {} }).spawn();
    await child.kill();
    return { refused: false };
  } catch (error) {
    return { refused: true, message: error instanceof Error ? error.message : String(error) };
  }
}

/** Run the flow named `flow`, reporting each step. */
export async function drive(flow: string, hooks: PageHooks): Promise<void> {
  await waitFor("a status", () => !["unknown", ""].includes(state("status-state")), 30_000);
  await report("status", {
    badge: text("status-state"),
    message: text("status-message"),
    startEnabled: !element<HTMLButtonElement>("start-backend").disabled,
  });
  if (flow === "idle") {
    await report("scope", await outsideTheCapability());
    return;
  }
  if (flow === "close-while-segmenting") {
    await startServer();
    element<HTMLInputElement>("prompt").value = `standin:sleep=${HELD_SEGMENTATION_S}`;
    element("segment").click();
    // The status poll shows "busy" once samgeo-api holds the request.
    await waitFor("the backend busy", () => state("status-state") === "busy", 30_000);
    await report("segmenting", { badge: text("status-state"), segment: state("segment-status") });
    await getCurrentWindow().close();
    return;
  }
  await install(hooks.installEvents);
  await startServer();
  await segment();
  await hooks.flushLog();
  await report("done");
  if (flow === "full-then-close") await getCurrentWindow().close();
}
