/**
 * How the desktop app runs the ML sidecar (copy into the app's front end).
 *
 * The sidecar is the bundled uv project `geolibre-ml` (a resource), run by the
 * bundled `uv` (an externalBin) with `uv run --frozen --no-dev --project …`;
 * uv builds its environment under the app's data folder, so nothing is ever
 * written into the install folder. The ready line gives the URL and a fresh
 * token; the client restarts the sidecar if it dies and stops it on close.
 *
 * Needs, in src-tauri: tauri-plugin-shell registered, the capability file
 * capabilities/geolibre-ml-sidecar.json, and a command that returns the app's
 * pid (the sidecar exits when that process does, even if it is killed):
 *
 *   #[tauri::command]
 *   fn app_pid() -> u32 { std::process::id() }
 */

import { invoke } from "@tauri-apps/api/core";
import { appDataDir, join, resolveResource } from "@tauri-apps/api/path";
import { getCurrentWindow } from "@tauri-apps/api/window";
import { MlClient, Sidecar, tauriLauncher, uvSidecarCommand } from "@geolibre/ml-client/tauri";

/** The app's ML settings, passed to the sidecar as GEOLIBRE_ML_* variables. */
export interface MlSettings {
  /** An external samgeo-api (proxy only), e.g. "http://gpu-box:8000". */
  samgeoUrl?: string;
  defaultModel?: string;
}

/** What the app does with the sidecar's output (a GUI build has no terminal to show it). */
export interface MlSidecarHooks {
  /** Every stderr line, from the first (uv building the environment) on; default: console.debug. */
  onOutput?: (line: string) => void;
}

function environment(settings: MlSettings): Record<string, string> {
  const env: Record<string, string> = {};
  if (settings.samgeoUrl) env["GEOLIBRE_ML_SAMGEO_URL"] = settings.samgeoUrl;
  if (settings.defaultModel) env["GEOLIBRE_ML_DEFAULT_MODEL"] = settings.defaultModel;
  return env;
}

/** Start the sidecar; resolves to a client for the /ml routes once it is ready. */
export async function startMlSidecar(
  settings: MlSettings = {},
  hooks: MlSidecarHooks = {},
): Promise<{ sidecar: Sidecar; client: MlClient }> {
  const projectDir = await resolveResource("geolibre-ml");
  const environmentDir = await join(await appDataDir(), "ml-sidecar-env");
  const parentPid = await invoke<number>("app_pid");
  const sidecar = new Sidecar({
    launcher: tauriLauncher(),
    // Called before every (re)start: settings changed since are picked up.
    command: () => uvSidecarCommand({ projectDir, environmentDir, parentPid, env: environment(settings) }),
    // The first launch after an install or update lets uv sync the environment.
    readyTimeoutMs: 180_000,
  });
  // The app's own environment (GEOLIBRE_ML_*, proxies, UV_*) is inherited by the
  // spawn; `environment(settings)` only adds to it.
  sidecar.on("stderr", hooks.onOutput ?? ((line) => console.debug("[ml-sidecar]", line)));
  await sidecar.start();

  // Stop it when the window closes: the sidecar stops samgeo-api with it. The
  // window is hidden first: with a segmentation running, stopping takes seconds
  // (measured about 11 s), and a window that does not close looks hung. Needs
  // core:window:allow-hide and core:window:allow-destroy in the app's capability.
  const window = getCurrentWindow();
  const unlisten = await window.onCloseRequested(async () => {
    unlisten();
    await window.hide();
    await sidecar.stop();
  });
  return { sidecar, client: new MlClient(sidecar) };
}
