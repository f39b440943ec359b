/**
 * What the tests run against, passed in by tests/bridge/test_ts_client.py:
 * GEOLIBRE_TEST_SIDECAR (the `geolibre-sidecar` launcher) and
 * GEOLIBRE_TEST_SAMGEO_CMD (the samgeo-api stand-in's command line). Without
 * them (a developer running `npm test` by hand) the repository's .venv is used.
 */

import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
/** tauri-bridge/client (this file is build/test/support/env.js). */
export const CLIENT_DIR = resolve(here, "..", "..", "..");
export const REPO_ROOT = resolve(CLIENT_DIR, "..", "..");

function quote(path: string): string {
  return /[\s"'\\]/.test(path) ? `'${path.replace(/'/g, `'\\''`)}'` : path;
}

export function sidecarProgram(): string {
  const given = process.env["GEOLIBRE_TEST_SIDECAR"];
  if (given) return given;
  const local = join(REPO_ROOT, ".venv", "bin", "geolibre-sidecar");
  if (!existsSync(local)) {
    throw new Error(
      "Set GEOLIBRE_TEST_SIDECAR to the geolibre-sidecar launcher (uv sync makes one in .venv).",
    );
  }
  return local;
}

export function samgeoCommand(): string {
  const given = process.env["GEOLIBRE_TEST_SAMGEO_CMD"];
  if (given) return given;
  const python = join(dirname(sidecarProgram()), "python");
  return `${quote(python)} ${quote(join(REPO_ROOT, "tests", "standin", "samgeo_standin.py"))}`;
}

const madeDirs: string[] = [];
process.once("exit", () => {
  for (const dir of madeDirs) rmSync(dir, { recursive: true, force: true });
});

/** A fresh folder with a space in its name (paths with spaces must work); removed at exit. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `${prefix} ts-`));
  madeDirs.push(dir);
  return dir;
}

/** The sidecar's environment for a test: its own home, the stand-in as the backend. */
export function sidecarEnv(home: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    GEOLIBRE_ML_HOME: home,
    GEOLIBRE_ML_SAMGEO_CMD: samgeoCommand(),
    PYTHONUNBUFFERED: "1",
    ...extra,
  };
}

/** uv settings for an install that cannot reach any index (it fails fast, offline). */
export function offlineInstallEnv(): Record<string, string> {
  return {
    UV_OFFLINE: "1",
    UV_NO_INDEX: "1",
    UV_PYTHON_DOWNLOADS: "never",
    UV_FIND_LINKS: tempDir("empty-wheelhouse"),
    UV_CACHE_DIR: tempDir("uv-cache"),
    HF_ENDPOINT: "http://127.0.0.1:9",
  };
}
