/**
 * `npm run demo`: a tiny static server for the demo page. It starts the ML
 * sidecar through the client (as the desktop app would), lets the sidecar's
 * CORS allow-list include this page's origin, and hands the page the URL and
 * token at /config.json (loopback only, never cached).
 *
 *   npm run demo                      the stand-in: a temporary home, and an install that
 *                                     really runs uv, offline, from a wheelhouse of the
 *                                     samgeo-api stand-in built from tests/standin
 *   npm run demo -- --backend real    the real thing: your GEOLIBRE_ML_* settings and home
 *   npm run demo -- --port 0          any free port (default 5173)
 *
 * The launcher is GEOLIBRE_DEMO_SIDECAR, else GEOLIBRE_TEST_SIDECAR, else the
 * repository's .venv/bin/geolibre-sidecar. Stdout gets one JSON line once the
 * page can be opened: {"event":"demo-ready","url":…}; logs go to stderr.
 */

import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, extname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { nodeSidecar } from "@geolibre/ml-client/node";

import { makePng } from "./sample-image.js";

const here = dirname(fileURLToPath(import.meta.url)); // build/demo
const CLIENT_DIR = resolve(here, "..", "..");
const REPO_ROOT = resolve(CLIENT_DIR, "..", "..");
const PAGE_DIR = join(CLIENT_DIR, "demo");
const DIST_DIR = join(CLIENT_DIR, "dist");
const READY_TIMEOUT_MS = 180_000;
const CLOSED_HUB = "http://127.0.0.1:9"; // nothing listens: the stand-in install never goes online

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".map": "application/json",
  ".png": "image/png",
};

const { values: flags } = parseArgs({
  options: {
    port: { type: "string", default: "5173" },
    host: { type: "string", default: "127.0.0.1" },
    backend: { type: "string", default: "standin" },
    quiet: { type: "boolean", default: false },
  },
});
if (flags.backend !== "standin" && flags.backend !== "real") {
  throw new Error(`--backend must be "standin" or "real", not ${flags.backend}`);
}
if (!["127.0.0.1", "localhost"].includes(flags.host)) {
  throw new Error("the demo serves the sidecar's token: it listens on 127.0.0.1 or localhost only");
}

function log(message: string): void {
  process.stderr.write(`demo: ${message}\n`);
}

function launcherPath(): string {
  const given = process.env["GEOLIBRE_DEMO_SIDECAR"] ?? process.env["GEOLIBRE_TEST_SIDECAR"];
  const path =
    given ??
    join(
      REPO_ROOT,
      ".venv",
      "bin",
      process.platform === "win32" ? "geolibre-sidecar.exe" : "geolibre-sidecar",
    );
  if (!existsSync(path)) {
    throw new Error(
      `no sidecar launcher at ${path}: run \`uv sync\` in ${REPO_ROOT}, or set GEOLIBRE_DEMO_SIDECAR`,
    );
  }
  return path;
}

const scratch: string[] = [];
function scratchDir(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `geolibre-demo-${name}-`));
  scratch.push(dir);
  return dir;
}

/** The stand-in's environment: a throwaway home and an offline install from a local wheelhouse. */
function standinEnvironment(launcher: string): Record<string, string> {
  const wheelhouse = scratchDir("wheelhouse");
  const python = join(dirname(launcher), process.platform === "win32" ? "python.exe" : "python");
  const script =
    "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]);" +
    "from tests.standin.wheelhouse import build_wheelhouse; build_wheelhouse(Path(sys.argv[2]))";
  execFileSync(python, ["-c", script, REPO_ROOT, wheelhouse], { stdio: ["ignore", "ignore", "inherit"] });
  // Stand-in weights too: without the weights the sidecar (rightly) refuses to segment,
  // and this demo has no Hub to fetch them from.
  const home = scratchDir("home");
  const weights =
    "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]);" +
    "from tests.standin.weights import place_standin_weights; place_standin_weights(Path(sys.argv[2]))";
  execFileSync(python, ["-c", weights, REPO_ROOT, home], { stdio: ["ignore", "ignore", "inherit"] });
  return {
    GEOLIBRE_ML_HOME: home,
    GEOLIBRE_ML_SAMGEO_CMD: "", // the installed stand-in, not an outside command
    GEOLIBRE_ML_SAMGEO_URL: "",
    UV_OFFLINE: "1",
    UV_NO_INDEX: "1",
    UV_FIND_LINKS: wheelhouse,
    UV_CACHE_DIR: scratchDir("uv-cache"),
    UV_PYTHON_DOWNLOADS: "never",
    HF_ENDPOINT: CLOSED_HUB,
  };
}

const launcher = launcherPath();
const backendEnv = flags.backend === "standin" ? standinEnvironment(launcher) : {};

const http = createServer((request, response) => {
  handle(request, response).catch((error: unknown) => {
    send(response, 500, "text/plain; charset=utf-8", error instanceof Error ? error.message : String(error));
  });
});
await new Promise<void>((ready) => http.listen(Number(flags.port), flags.host, ready));
const port = (http.address() as AddressInfo).port;
const origins = [`http://127.0.0.1:${port}`, `http://localhost:${port}`];
const pageUrl = `http://${flags.host}:${port}/`;

const sidecar = nodeSidecar({
  program: launcher,
  env: {
    ...backendEnv,
    // The page's origin joins the sidecar's CORS allow-list (it keeps its defaults).
    GEOLIBRE_ML_CORS_ORIGINS: [process.env["GEOLIBRE_ML_CORS_ORIGINS"], ...origins].filter(Boolean).join(","),
  },
  readyTimeoutMs: READY_TIMEOUT_MS,
});
sidecar.on("stderr", (line) => {
  if (!flags.quiet) process.stderr.write(`[sidecar] ${line}\n`);
});
sidecar.on("restarting", ({ attempt }) => log(`the sidecar stopped; restart ${attempt}`));
const connection = await sidecar.start();
log(`sidecar ${connection.version} ready at ${connection.url} (pid ${connection.pid})`);

function send(response: ServerResponse, status: number, type: string, body: string | Uint8Array): void {
  if (response.headersSent) return void response.end();
  response.writeHead(status, {
    "Content-Type": type,
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
  });
  response.end(body);
}

function fileFor(pathname: string): string | null {
  if (pathname === "/") return join(PAGE_DIR, "index.html");
  if (pathname === "/style.css") return join(PAGE_DIR, "style.css");
  const app = /^\/((?:app|page)\.js(?:\.map)?)$/.exec(pathname);
  if (app) return join(here, app[1] as string);
  const client = /^\/client\/([\w-]+\.js(?:\.map)?)$/.exec(pathname);
  if (client) return join(DIST_DIR, client[1] as string);
  return null;
}

async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
  // A page on another name (DNS rebinding) must not read the token.
  const host = (request.headers.host ?? "").toLowerCase();
  if (host !== `127.0.0.1:${port}` && host !== `localhost:${port}`) {
    return send(response, 400, "text/plain; charset=utf-8", "wrong Host");
  }
  const { pathname } = new URL(request.url ?? "/", pageUrl);
  if (request.method !== "GET") return send(response, 405, "text/plain; charset=utf-8", "GET only");
  if (pathname === "/config.json") {
    try {
      const endpoint = await sidecar.endpoint();
      const config = { url: endpoint.url, token: endpoint.token, backend: flags.backend };
      return send(response, 200, "application/json", JSON.stringify(config));
    } catch (error) {
      const detail = error instanceof Error ? error.message : String(error);
      return send(response, 503, "application/json", JSON.stringify({ detail }));
    }
  }
  if (pathname === "/sample.png") return send(response, 200, "image/png", makePng(320, 240, 3));
  const file = fileFor(pathname);
  if (!file || !existsSync(file)) return send(response, 404, "text/plain; charset=utf-8", "not found");
  send(response, 200, TYPES[extname(file)] ?? "application/octet-stream", readFileSync(file));
}

let closing = false;
async function close(signal: string): Promise<void> {
  if (closing) return;
  closing = true;
  log(`${signal}: stopping the sidecar`);
  const result = await sidecar.stop();
  log(`sidecar stopped (${result.method})`);
  http.close();
  http.closeAllConnections();
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
  process.exit(0);
}
process.on("SIGINT", () => void close("SIGINT"));
process.on("SIGTERM", () => void close("SIGTERM"));

process.stdout.write(
  `${JSON.stringify({ event: "demo-ready", url: pageUrl, sidecar: connection.url, sidecarPid: connection.pid })}\n`,
);
log(`open ${pageUrl} in a browser (Ctrl-C stops the demo and its sidecar)`);
