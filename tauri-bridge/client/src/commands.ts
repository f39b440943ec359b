/**
 * The command lines that start the sidecar: the launcher itself (development,
 * tests, Node), or `uv run` over the bundled uv project (the desktop app).
 * Pure functions: they only build a {@link SidecarCommand}.
 */

import type { SidecarCommand } from "./process.js";

export interface LauncherCommandOptions {
  /** The `geolibre-sidecar` executable (e.g. `<venv>/bin/geolibre-sidecar`). */
  program: string;
  /** Variables added to the inherited environment (GEOLIBRE_ML_*, GEOLIBRE_SIDECAR_TOKEN). */
  env?: Readonly<Record<string, string>>;
  /** Exit when this process exits (default: none). */
  parentPid?: number;
  /** A fixed port for older app builds; default 0 (the system chooses, the ready line tells). */
  port?: number;
  /** Also print the URL and token to stderr (development only). */
  dev?: boolean;
  extraArgs?: readonly string[];
}

/** `geolibre-sidecar --port 0 [--parent-pid PID]` with the given environment. */
export function launcherCommand(options: LauncherCommandOptions): SidecarCommand {
  const args = ["--port", String(options.port ?? 0)];
  if (options.parentPid !== undefined) args.push("--parent-pid", String(options.parentPid));
  if (options.dev) args.push("--dev");
  args.push(...(options.extraArgs ?? []));
  return { program: options.program, args, env: { ...options.env } };
}

export interface UvSidecarCommandOptions {
  /** The uv program: in Tauri the `externalBin` name ("binaries/uv", the default). */
  uv?: string;
  /** The bundled uv project (pyproject.toml + uv.lock) in the app's resource folder. */
  projectDir: string;
  /**
   * Where uv builds the sidecar's environment: a folder under the app's data
   * folder, so nothing is ever written into the (read-only) install folder.
   */
  environmentDir: string;
  /** The app's pid: the sidecar exits when the app does, even if killed. */
  parentPid: number;
  env?: Readonly<Record<string, string>>;
}

/**
 * `uv run --frozen --no-dev --project <resources> geolibre-sidecar --parent-pid <pid>`
 * with `UV_PROJECT_ENVIRONMENT` under the app data folder. `--frozen`: use
 * uv.lock as shipped and never rewrite it (the install folder is read-only).
 * The argument order is what the capability file allows: keep them in step.
 */
export function uvSidecarCommand(options: UvSidecarCommandOptions): SidecarCommand {
  return {
    program: options.uv ?? "binaries/uv",
    args: [
      "run",
      "--frozen",
      "--no-dev",
      "--project",
      options.projectDir,
      "geolibre-sidecar",
      "--parent-pid",
      String(options.parentPid),
    ],
    env: { ...options.env, UV_PROJECT_ENVIRONMENT: options.environmentDir },
  };
}

/** The `GEOLIBRE_*` variables of an environment (what the app passes on to the sidecar). */
export function geolibreEnvironment(
  environ: Readonly<Record<string, string | undefined>>,
): Record<string, string> {
  const picked: Record<string, string> = {};
  for (const [key, value] of Object.entries(environ)) {
    if (key.startsWith("GEOLIBRE_") && value !== undefined) picked[key] = value;
  }
  return picked;
}
