// Prepares what `tauri build` takes from outside src-tauri, then bundles the page.
//
// - geolibre-ml -> ../.. : the packaging recipe's resource paths are
//   "../geolibre-ml/…" from src-tauri ("this repository checked out beside
//   it"); the link makes this repository that checkout, so the app bundles the
//   real files, uv.lock included, not copies.
// - src-tauri/binaries/uv-<target triple>: the externalBin the recipe names,
//   copied from GEOLIBRE_APP_UV, else the uv on PATH, else the repository's
//   bootstrapped one (.dev/bootstrap/bin/uv).
// - dist/: the page (esbuild; @geolibre/ml-client from the client's sources,
//   one copy of @tauri-apps/* from this folder), index.html and the demo's CSS.

import { execFileSync } from "node:child_process";
import { chmodSync, copyFileSync, cpSync, existsSync, lstatSync, mkdirSync, rmSync, symlinkSync } from "node:fs";
import { delimiter, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "..", "..");
const client = resolve(here, "..", "client");

function linkRepository() {
  const link = join(here, "geolibre-ml");
  if (existsSync(link) && lstatSync(link).isSymbolicLink()) return;
  rmSync(link, { force: true, recursive: true });
  symlinkSync(join("..", ".."), link, "dir");
}

function findUv() {
  const given = process.env["GEOLIBRE_APP_UV"];
  if (given) return given;
  for (const dir of (process.env["PATH"] ?? "").split(delimiter)) {
    if (dir && existsSync(join(dir, "uv"))) return join(dir, "uv");
  }
  const bootstrapped = join(repo, ".dev", "bootstrap", "bin", "uv");
  if (existsSync(bootstrapped)) return bootstrapped;
  throw new Error("no uv to bundle: set GEOLIBRE_APP_UV, put uv on PATH, or run `python3 dev.py test` once");
}

function bundleUv() {
  const triple = /host: (\S+)/.exec(execFileSync("rustc", ["-vV"], { encoding: "utf8" }))?.[1];
  if (!triple) throw new Error("rustc -vV names no host triple");
  const target = join(here, "src-tauri", "binaries", `uv-${triple}`);
  mkdirSync(dirname(target), { recursive: true });
  copyFileSync(findUv(), target);
  chmodSync(target, 0o755);
}

/** Resolve @tauri-apps/* from this folder, also when imported by the client's sources. */
const oneTauriApi = {
  name: "one-tauri-api",
  setup(esbuild) {
    esbuild.onResolve({ filter: /^@tauri-apps\// }, (args) =>
      args.resolveDir === here ? undefined : esbuild.resolve(args.path, { kind: args.kind, resolveDir: here }),
    );
  },
};

async function bundlePage() {
  const dist = join(here, "dist");
  rmSync(dist, { recursive: true, force: true });
  mkdirSync(dist);
  await build({
    entryPoints: [join(here, "src", "main.ts")],
    bundle: true,
    format: "esm",
    target: "es2022",
    sourcemap: true,
    outfile: join(dist, "main.js"),
    alias: {
      "@geolibre/ml-client/tauri": join(client, "src", "tauri.ts"),
      "@geolibre/ml-client": join(client, "src", "index.ts"),
    },
    plugins: [oneTauriApi],
    logLevel: "warning",
  });
  cpSync(join(here, "src", "index.html"), join(dist, "index.html"));
  cpSync(join(client, "demo", "style.css"), join(dist, "style.css"));
}

linkRepository();
bundleUv();
await bundlePage();
