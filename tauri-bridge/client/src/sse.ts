/**
 * A small server-sent events parser (the WHATWG "event stream" format).
 *
 * `EventSource` cannot send the sidecar's token header, so the client reads
 * the stream with fetch and parses it here: fields `event`, `data` (several
 * lines joined with "\n"), `id` and `retry`; comment lines (":") ignored; an
 * event is dispatched at a blank line. Lines may end in CRLF, LF or CR, and a
 * chunk may end anywhere, even between a CR and its LF.
 */

export interface ServerSentEvent {
  /** The `event` field; "message" when the server gave none. */
  event: string;
  data: string;
  /** The last `id` seen so far on this stream (what Last-Event-ID should send). */
  lastEventId: string;
}

export class SseParser {
  private buffer = "";
  private pendingCr = false;
  private eventType = "";
  private data: string[] = [];
  private hasData = false;
  private decoder = new TextDecoder("utf-8");
  /** The last `id` field seen: survives events, as the spec says. */
  lastEventId = "";
  /** The server's `retry` advice in milliseconds, if it gave one. */
  retryMs: number | null = null;

  /** Feed bytes (or text); returns the events completed by this chunk. */
  push(chunk: Uint8Array | string): ServerSentEvent[] {
    const text = typeof chunk === "string" ? chunk : this.decoder.decode(chunk, { stream: true });
    const events: ServerSentEvent[] = [];
    let start = 0;
    let i = 0;
    let input = text;
    if (this.pendingCr && input.startsWith("\n")) {
      input = input.slice(1); // the LF of a CRLF split across chunks
    }
    this.pendingCr = false;
    for (; i < input.length; i++) {
      const ch = input.charCodeAt(i);
      if (ch !== 10 && ch !== 13) continue;
      const line = this.buffer + input.slice(start, i);
      this.buffer = "";
      if (ch === 13) {
        if (i + 1 < input.length) {
          if (input.charCodeAt(i + 1) === 10) i++;
        } else {
          this.pendingCr = true;
        }
      }
      start = i + 1;
      const event = this.line(line);
      if (event) events.push(event);
    }
    this.buffer += input.slice(start);
    return events;
  }

  /** End of stream: a partial event without its blank line is discarded (per spec). */
  end(): void {
    this.buffer = "";
    this.data = [];
    this.hasData = false;
    this.eventType = "";
  }

  private line(line: string): ServerSentEvent | null {
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) return null;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "event":
        this.eventType = value;
        break;
      case "data":
        this.data.push(value);
        this.hasData = true;
        break;
      case "id":
        if (!value.includes("\0")) this.lastEventId = value;
        break;
      case "retry":
        if (/^\d+$/.test(value)) this.retryMs = Number(value);
        break;
      default:
        break; // unknown fields are ignored
    }
    return null;
  }

  private dispatch(): ServerSentEvent | null {
    const event: ServerSentEvent | null = this.hasData
      ? { event: this.eventType || "message", data: this.data.join("\n"), lastEventId: this.lastEventId }
      : null;
    this.data = [];
    this.hasData = false;
    this.eventType = "";
    return event;
  }
}

/** Parse a byte stream into events until it ends (or the reader is cancelled). */
export async function* readEventStream(
  body: ReadableStream<Uint8Array>,
  parser: SseParser = new SseParser(),
): AsyncGenerator<ServerSentEvent, void, undefined> {
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      yield* parser.push(value);
    }
    parser.end();
  } finally {
    // Stops the download when the consumer leaves early (break, return, throw).
    await reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
}
