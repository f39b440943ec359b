/**
 * The one-click install through the client: start, the server-sent progress
 * stream to its end event, Last-Event-ID resumption (asked for, and after a
 * dropped connection), state, and cancel. The install runs offline against an
 * empty wheelhouse, so it really starts and then fails fast with a reason.
 */

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { MlClient, nodeSidecar, overallFraction, SidecarError } from "@geolibre/ml-client/node";
import type { FetchLike, InstallEvent, InstallSnapshot, Sidecar } from "@geolibre/ml-client/node";

import { offlineInstallEnv, sidecarEnv, sidecarProgram, tempDir } from "./support/env.js";
import { READY_TIMEOUT_MS } from "./support/sidecars.js";
import { isGone, waitFor } from "./support/wait.js";

let sidecar: Sidecar;
let client: MlClient;
let failedRun: InstallEvent[] = [];

async function collect(events: AsyncIterable<InstallEvent>): Promise<InstallEvent[]> {
  const seen: InstallEvent[] = [];
  for await (const event of events) seen.push(event);
  return seen;
}

before(async () => {
  sidecar = nodeSidecar({
    program: sidecarProgram(),
    env: sidecarEnv(tempDir("home"), offlineInstallEnv()),
    readyTimeoutMs: READY_TIMEOUT_MS,
  });
  await sidecar.start();
  client = new MlClient(sidecar);
});

after(async () => {
  await sidecar.stop();
});

test("before any install: state none, and the stream ends at once", async () => {
  assert.deepEqual(await client.installState(), { state: "none", running: false });
  assert.deepEqual(await collect(client.installEvents()), [{ event: "end", state: "none", id: 0 }]);
});

test("an install streams progress events to an end event that says why it failed", async (t) => {
  const started = await client.install({ weights: false, backend: "transformers" });
  assert.equal(started.state, "running");
  assert.equal(started.running, true);
  const busy = await client.install({ weights: false }).then(
    () => null,
    (e: unknown) => e,
  );
  assert.ok(busy instanceof SidecarError && busy.status === 409 && busy.kind === "conflict");
  assert.match(busy.detail, /already running/);

  const startedAt = performance.now();
  const fractions: number[] = [];
  const end = await client.followInstall((event) => {
    failedRun.push(event);
    const fraction = overallFraction(event);
    if (fraction !== null) fractions.push(fraction);
  });
  t.diagnostic(`${failedRun.length} events, end after ${Math.round(performance.now() - startedAt)} ms`);

  assert.deepEqual(
    failedRun.map((e) => e.id),
    failedRun.map((_, i) => i + 1),
    "ids 1..n, none lost",
  );
  const phases = failedRun.flatMap((e) => (e.event === "progress" ? [e.phase] : []));
  assert.deepEqual(phases.slice(0, 2), ["lock", "plan"]);
  assert.ok(phases.includes("torch"), phases.join(","));
  assert.ok(fractions.length > 2 && fractions.every((f) => f >= 0 && f <= 1));
  const error = failedRun.find((e) => e.event === "error");
  assert.ok(error && error.event === "error");
  assert.match(error.detail, /torch is not available from the wheelhouse/);
  assert.ok(error.hint && /UV_FIND_LINKS/.test(error.hint));
  assert.equal(end, failedRun.at(-1));
  assert.equal(end.state, "failed");
  assert.equal(end.error?.detail, error.detail);

  const state = (await client.installState()) as InstallSnapshot;
  assert.equal(state.state, "failed");
  assert.equal(state.running, false);
  assert.equal(state.events, failedRun.length);
  assert.equal((await client.status()).install?.state, "failed");
});

test("Last-Event-ID resumes after the last event seen", async () => {
  const n = failedRun.length;
  assert.ok(n > 3);
  const tail = await collect(client.installEvents({ lastEventId: n - 2 }));
  assert.deepEqual(
    tail.map((e) => e.id),
    [n - 1, n],
  );
  assert.deepEqual(tail, failedRun.slice(-2));
});

test("a dropped event stream is resumed with Last-Event-ID: nothing lost, nothing twice", async () => {
  // A fetch whose event stream breaks after two events, the way a flaky connection would.
  const asked: string[] = [];
  const flaky: FetchLike = async (input, init) => {
    const response = await fetch(input, init);
    if (!input.endsWith("/install/events") || !response.body) return response;
    asked.push(new Headers(init?.headers).get("Last-Event-ID") ?? "");
    if (asked.length > 1) return response;
    // Pass on the first two events, then fail the stream mid-way (the install
    // has ended, so reading the whole stream first is fine).
    const text = await response.text();
    let end = 0;
    for (let i = 0; i < 2; i++) end = text.indexOf("\n\n", end) + 2;
    const cut = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(text.slice(0, end) + text.slice(end, end + 20)));
      },
      pull(controller) {
        controller.error(new TypeError("terminated: other side closed"));
      },
    });
    return new Response(cut, { status: response.status, headers: response.headers });
  };
  const resumed = await collect(
    new MlClient(sidecar, { fetch: flaky }).installEvents({ reconnectDelayMs: 10 }),
  );
  assert.equal(asked.length, 2, "one reconnect");
  assert.equal(asked[0], "0");
  assert.ok(Number(asked[1]) >= 2, `resumed after event ${asked[1]}`);
  assert.deepEqual(resumed, failedRun);
});

test("a model the spec does not know is refused with 422 before anything runs", async () => {
  const before = await client.installState();
  const refused = await client.install({ model: "facebook/sam9", token: "hf_x" }).then(
    () => null,
    (e: unknown) => e,
  );
  assert.ok(refused instanceof SidecarError && refused.status === 422, String(refused));
  assert.equal(refused.detail, "model must be one of facebook/sam3, facebook/sam3.1, not 'facebook/sam9'.");
  assert.deepEqual(await client.installState(), before, "no install was started");
});

test("cancel stops a running install and its processes; the stream ends 'cancelled'", async () => {
  await client.install({ weights: false });
  const events: InstallEvent[] = [];
  const follow = client.followInstall((event) => events.push(event));
  await waitFor(() => events.length > 0, { timeoutMs: 10_000, what: "the first install event" });
  const installer = (await client.installState()) as InstallSnapshot;
  assert.equal(installer.running, true);
  const cancelled = await client.cancelInstall();
  assert.equal(cancelled.state, "cancelled");
  assert.equal(cancelled.running, false);
  const end = await follow;
  assert.equal(end.state, "cancelled");
  // Not asserted: end.error.detail. The group SIGTERM also kills the installer's
  // uv, and the installer may report that ("uv was not found") before it exits.
  assert.equal(((await client.installState()) as InstallSnapshot).state, "cancelled");
  assert.ok(isGone(installer.pid as number), "the installer process is gone");
  const again = await client.cancelInstall().then(
    () => null,
    (e: unknown) => e,
  );
  assert.ok(again instanceof SidecarError && again.status === 409);
  assert.match(again.detail, /No install is running/);
});
