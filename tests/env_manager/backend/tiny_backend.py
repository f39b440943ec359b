"""A tiny samgeo-api for the supervisor's tests, steered by its environment.

``--host H --port P`` as the supervisor appends them. TINY_FAIL_START: print it
and exit 1 before serving. TINY_HANG: say nothing, use no CPU, never serve.
TINY_CHATTER: print a line every 50 ms, never serve. Served: ``GET /health``,
``GET /models``, and ``GET /crash?message=...`` (print the message, exit 1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/crash":
            message = urllib.parse.parse_qs(url.query).get("message", ["crashed"])[0]
            print(message, file=sys.stderr, flush=True)
            os._exit(1)
        if url.path not in ("/health", "/models"):
            self.send_error(404)
            return
        body = json.dumps({"version": "tiny"} if url.path == "/health" else {}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    args = parser.parse_args()
    if message := os.environ.get("TINY_FAIL_START"):
        print(message, file=sys.stderr, flush=True)
        sys.exit(1)
    if os.environ.get("TINY_HANG"):
        while True:
            time.sleep(3600)
    if os.environ.get("TINY_CHATTER"):
        while True:
            print("loading...", flush=True)
            time.sleep(0.05)
    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
