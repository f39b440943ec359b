/** The SSE parser on the byte patterns a real stream produces. */

import assert from "node:assert/strict";
import { test } from "node:test";

import { LineSplitter, overallFraction, parseReadyLine, SseParser } from "@geolibre/ml-client";
import type { InstallEvent } from "@geolibre/ml-client";

const STREAM =
  ": keep-alive\n\n" +
  'id: 1\nevent: progress\ndata: {"event":"progress","phase":"lock"}\n\n' +
  "id: 2\r\nevent: error\r\ndata: first line\r\ndata: second line\r\n\r\n" +
  "data:no space\rretry: 2500\r\r" +
  "id: 3\nevent: end\ndata: {}\n\n" +
  "data: never terminated";

function parseAll(chunks: Array<string | Uint8Array>): ReturnType<SseParser["push"]> {
  const parser = new SseParser();
  return chunks.flatMap((chunk) => parser.push(chunk));
}

test("parses fields, comments, CRLF and CR line ends, and multi-line data", () => {
  const events = parseAll([STREAM]);
  assert.deepEqual(
    events.map((e) => [e.event, e.data, e.lastEventId]),
    [
      ["progress", '{"event":"progress","phase":"lock"}', "1"],
      ["error", "first line\nsecond line", "2"],
      ["message", "no space", "2"],
      ["end", "{}", "3"],
    ],
  );
});

test("gives the same events however the bytes are split, even inside CRLF and UTF-8", () => {
  const bytes = new TextEncoder().encode(STREAM.replace("first line", "première ligne"));
  const whole = parseAll([bytes]);
  for (const size of [1, 2, 3, 7, 64]) {
    const chunks: Uint8Array[] = [];
    for (let at = 0; at < bytes.length; at += size) chunks.push(bytes.subarray(at, at + size));
    assert.deepEqual(parseAll(chunks), whole, `chunks of ${size} bytes`);
  }
  assert.equal(whole[1]?.data, "première ligne\nsecond line");
});

test("remembers the server's retry advice", () => {
  const parser = new SseParser();
  parser.push(STREAM);
  assert.equal(parser.retryMs, 2500);
});

test("splits process output into lines across chunks", () => {
  const lines: string[] = [];
  const splitter = new LineSplitter((line) => lines.push(line));
  for (const chunk of ["one\r", "\ntwo\nthr", "ee\rfour", ""]) splitter.push(chunk);
  splitter.flush();
  assert.deepEqual(lines, ["one", "two", "three", "four"]);
});

test("reads the ready line and refuses a broken one", () => {
  const good = parseReadyLine(
    '{"event":"ready","url":"http://127.0.0.1:4321","port":4321,"token":"abc","pid":7,"version":"0.1.0"}',
  );
  assert.deepEqual(good, {
    kind: "ready",
    connection: { url: "http://127.0.0.1:4321", port: 4321, token: "abc", pid: 7, version: "0.1.0" },
  });
  assert.equal(
    parseReadyLine('{"event":"ready","url":"http://127.0.0.1:1","port":1,"pid":7}').kind,
    "invalid",
  );
  assert.equal(parseReadyLine("Resolved 12 packages in 3ms").kind, "other");
});

test("the overall install fraction grows through the phases", () => {
  const progress = (phase: string, fraction: number | null): InstallEvent => ({
    event: "progress",
    id: 1,
    phase,
    message: "",
    done: null,
    total: null,
    unit: null,
    level: "info",
    at: 0,
    extra: {},
    fraction,
  });
  const steps = [
    progress("lock", null),
    progress("plan", null),
    progress("torch", 0.5),
    progress("torch", 1),
    progress("packages", null),
    progress("weights", 0.9),
    progress("done", null),
  ];
  const fractions = steps.map((event) => overallFraction(event) as number);
  assert.deepEqual(
    [...fractions].sort((a, b) => a - b),
    fractions,
  );
  assert.ok((fractions.at(-1) as number) > 0.95 && (fractions.at(-1) as number) <= 1);
  assert.equal(overallFraction({ event: "end", id: 9, state: "succeeded" }), 1);
  assert.equal(overallFraction({ event: "end", id: 9, state: "failed" }), null);
});
