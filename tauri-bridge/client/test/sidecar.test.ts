/**
 * The sidecar's life cycle through the client, on the real launcher: the
 * handshake, the environment, start failures with their stderr, the ready
 * deadline, crash and restart, and every way of stopping it.
 */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";

import { MlClient, nodeLauncher, Sidecar, SidecarError, SidecarStartError } from "@geolibre/ml-client/node";
import type { ProcessLauncher, SidecarConnection } from "@geolibre/ml-client/node";

import { CLIENT_DIR, sidecarEnv, sidecarProgram, tempDir } from "./support/env.js";
import { READY_TIMEOUT_MS, testSidecar } from "./support/sidecars.js";
import { descendants, isGone, nextEvent, waitFor } from "./support/wait.js";

/** The Node launcher without some of its powers (as on a platform that lacks them). */
function limitedLauncher(without: Array<"closeStdin" | "terminate">): ProcessLauncher {
  const inner = nodeLauncher();
  return {
    async spawn(command, handlers) {
      const proc = await inner.spawn(command, handlers);
      for (const name of without) delete proc[name];
      return proc;
    },
  };
}

async function backendPids(client: MlClient): Promise<number[]> {
  const status = await client.startBackend();
  assert.equal(status.available, true, status.message);
  const guard = status.backend.pid as number;
  return [guard, ...descendants(guard)];
}

test("the handshake gives a loopback URL and a fresh token that the sidecar requires", async (t) => {
  const sidecar = testSidecar(t);
  const connection = await sidecar.start();
  assert.match(connection.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.equal(connection.url, `http://127.0.0.1:${connection.port}`);
  assert.match(connection.token, /^[0-9a-f]{32}$/);
  assert.equal(connection.pid, sidecar.pid, "the launcher itself, spawned directly");
  assert.equal(sidecar.state, "ready");

  const client = new MlClient(sidecar);
  assert.equal((await client.health()).status, "ok");
  const status = await client.status();
  assert.equal(status.sidecar.pid, connection.pid);

  const stranger = new MlClient({ url: connection.url, token: "not-the-token" });
  const refused = await stranger.status().then(
    () => null,
    (error: unknown) => error,
  );
  assert.ok(refused instanceof SidecarError);
  assert.equal(refused.status, 401);
  assert.equal(refused.kind, "unauthorized");
  assert.match(refused.detail, /token is wrong/);

  const other = testSidecar(t);
  assert.notEqual((await other.start()).token, connection.token, "each launch gets its own token");
});

test("the GEOLIBRE_* environment reaches the sidecar", async (t) => {
  const sidecar = testSidecar(t, {
    extraEnv: { GEOLIBRE_SIDECAR_TOKEN: "app-chosen-token-0123", GEOLIBRE_ML_DEFAULT_MODEL: "sam3-test" },
  });
  const connection = await sidecar.start();
  assert.equal(connection.token, "app-chosen-token-0123");
  assert.equal((await new MlClient(sidecar).status()).default_model, "sam3-test");
});

test("a sidecar that cannot start fails with the last lines of its stderr", async (t) => {
  const sidecar = testSidecar(t, { extraEnv: { GEOLIBRE_ML_MAX_IN_FLIGHT: "lots" } });
  const error = await sidecar.start().then(
    () => null,
    (e: unknown) => e,
  );
  assert.ok(error instanceof SidecarStartError, String(error));
  assert.equal(error.reason, "exited");
  assert.equal(error.exit?.code, 1);
  assert.ok(
    error.stderrTail.some((line) => line.includes("GEOLIBRE_ML_MAX_IN_FLIGHT='lots'")),
    error.stderrTail.join("\n"),
  );
  assert.match(error.message, /exited with code 1 before it was ready/);
  assert.match(error.message, /GEOLIBRE_ML_MAX_IN_FLIGHT='lots'/, "the message itself quotes stderr");
  // The launcher's own sentence leads the message: it is what the user can act on.
  assert.match(error.message, /^[^\n]*GEOLIBRE_ML_MAX_IN_FLIGHT='lots'[^\n]*\(The ML sidecar exited with code 1/);
  assert.equal(sidecar.state, "failed");
  await assert.rejects(new MlClient(sidecar).status(), SidecarStartError);
});

test("a program that cannot be spawned is a spawn failure naming the command", async (t) => {
  const sidecar = testSidecar(t, { program: join(tempDir("nowhere"), "geolibre-sidecar") });
  const error = await sidecar.start().then(
    () => null,
    (e: unknown) => e,
  );
  assert.ok(error instanceof SidecarStartError);
  assert.equal(error.reason, "spawn-failed");
  assert.match(error.message, /ENOENT/);
});

test("no ready line within the deadline: the process is killed and its stderr reported", async (t) => {
  const script = "process.stderr.write('loading a very slow module\\n'); setInterval(() => {}, 1000);";
  const sidecar = new Sidecar({
    launcher: nodeLauncher(),
    command: { program: process.execPath, args: ["-e", script] },
    readyTimeoutMs: 1500,
  });
  t.after(() => sidecar.stop());
  const started = performance.now();
  const error = await sidecar.start().then(
    () => null,
    (e: unknown) => e,
  );
  assert.ok(error instanceof SidecarStartError);
  assert.equal(error.reason, "timeout");
  assert.ok(performance.now() - started < 5000);
  assert.deepEqual(error.stderrTail, ["loading a very slow module"]);
  assert.ok(isGone(sidecar.pid as number), "the stuck process was killed");
});

test("a broken ready line is a handshake error", async (t) => {
  const script = 'console.log(JSON.stringify({event: "ready", url: "http://127.0.0.1:1", port: 1, pid: 1}));';
  const sidecar = new Sidecar({
    launcher: nodeLauncher(),
    command: { program: process.execPath, args: ["-e", script] },
  });
  t.after(() => sidecar.stop());
  const error = await sidecar.start().then(
    () => null,
    (e: unknown) => e,
  );
  assert.ok(error instanceof SidecarStartError);
  assert.equal(error.reason, "bad-handshake");
  assert.match(error.message, /no token/);
});

test("a sidecar killed with SIGKILL is restarted with a new port and token; calls carry on", async (t) => {
  const sidecar = testSidecar(t);
  const client = new MlClient(sidecar);
  const first = await sidecar.start();
  const restarting = nextEvent<{ attempt: number }>((l) => sidecar.on("restarting", l), {
    timeoutMs: 10_000,
    what: "the restart",
  });
  process.kill(first.pid, "SIGKILL");
  // Sent before the client has noticed the crash: retried on the new sidecar.
  const status = await client.status();
  const second = sidecar.connection as SidecarConnection;
  assert.equal((await restarting).attempt, 1);
  assert.notEqual(second.pid, first.pid);
  assert.notEqual(second.token, first.token);
  assert.equal(status.sidecar.pid, second.pid);
  assert.ok(isGone(first.pid));
  const old = await new MlClient(first).health().then(
    () => null,
    (e: unknown) => e,
  );
  assert.ok(old instanceof SidecarError && old.status === 0 && old.kind === "unreachable");
  assert.equal((await client.models().catch((e: unknown) => e as SidecarError)).status, 503);
});

test("restarts stop at the limit and then calls fail with the reason", async (t) => {
  const sidecar = testSidecar(t, { restart: { maxRestarts: 1, initialDelayMs: 10 } });
  const client = new MlClient(sidecar);
  const first = await sidecar.start();
  const ready = nextEvent<SidecarConnection>((l) => sidecar.on("ready", l), {
    timeoutMs: READY_TIMEOUT_MS,
    what: "the restart",
  });
  process.kill(first.pid, "SIGKILL");
  const second = await ready;
  const failed = nextEvent<Error>((l) => sidecar.on("failed", l), { timeoutMs: 10_000, what: "giving up" });
  process.kill(second.pid, "SIGKILL");
  assert.match((await failed).message, /not restarted: it stopped 2 times within 300 s/);
  assert.equal(sidecar.state, "failed");
  await assert.rejects(client.status(), /not restarted/);
});

for (const [method, without] of [
  ["stdin", []],
  ["sigterm", ["closeStdin"]],
  ["http", ["closeStdin", "terminate"]],
] as const) {
  test(`stop() ends the sidecar and its backend (${method})`, async (t) => {
    const limited = new Sidecar({
      launcher: limitedLauncher([...without]),
      command: { program: sidecarProgram(), args: ["--port", "0"], env: sidecarEnv(tempDir("home")) },
      readyTimeoutMs: READY_TIMEOUT_MS,
    });
    t.after(() => limited.stop());
    const connection = await limited.start();
    const pids = [connection.pid, ...(await backendPids(new MlClient(limited)))];
    const result = await limited.stop();
    assert.equal(result.method, method);
    assert.equal(result.exit?.code, method === "sigterm" ? null : 0);
    if (method === "sigterm") assert.equal(result.exit?.signal, "SIGTERM");
    await waitFor(() => pids.every(isGone), { timeoutMs: 10_000, what: `pids ${pids} to exit` });
    assert.equal(limited.state, "stopped");
    await assert.rejects(new MlClient(limited).status(), /stopped/);
  });
}

test("when the app process dies, the sidecar and its backend follow", async () => {
  const app = spawn(process.execPath, [join(CLIENT_DIR, "build", "test", "fixtures", "app.js")], {
    env: { ...process.env, GEOLIBRE_TEST_SIDECAR: sidecarProgram(), GEOLIBRE_TEST_HOME: tempDir("home") },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const line = await new Promise<string>((resolve, reject) => {
    let text = "";
    app.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      text += chunk;
      if (text.includes("\n")) resolve(text.split("\n")[0] as string);
    });
    app.once("exit", (code) => reject(new Error(`the app fixture exited (${code}) before reporting`)));
  });
  const { pids } = JSON.parse(line) as { pids: number[] };
  assert.ok(pids.length >= 2, "the sidecar and its backend");
  app.kill("SIGKILL");
  await waitFor(() => pids.every(isGone), { timeoutMs: 10_000, what: `pids ${pids} to exit after the app` });
});
