"""A bounded random fuzzer over every sidecar route, on raw sockets.

Requests mix valid and broken methods, paths, headers, multipart forms, JSON
and bytes; each is sent on its own connection (``Connection: close``) and timed
until the sidecar closes it. Verdicts: a 5xx the sidecar made (501, "cannot run
on this computer", is a deliberate answer), an answer slower than 5 s outside the
long-running routes, or no answer where one was due. The seed makes a run
repeatable: fixed in CI and by default, random (and printed) at a terminal.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import string
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

FIXED_SEED = 20261130
SLOW_S = 5.0
LONG_ROUTES = frozenset(
    {"/ml/backend/install/events", "/ml/diagnostics", "/ml/diagnostics/bundle", "/ml/models",
     "/ml/jobs/{id}/events"}
)  # fmt: skip
ROUTES: tuple[tuple[str, str], ...] = (
    ("GET", "/health"),
    ("GET", "/ml/status"),
    ("GET", "/ml/models"),
    ("POST", "/ml/segment/text"),
    ("POST", "/ml/segment/automatic"),
    ("POST", "/ml/segment/predict"),
    ("POST", "/ml/backend/start"),
    ("POST", "/ml/backend/stop"),
    ("POST", "/ml/backend/install"),
    ("GET", "/ml/backend/install"),
    ("DELETE", "/ml/backend/install"),
    ("GET", "/ml/backend/install/events"),
    ("GET", "/ml/diagnostics"),
    ("GET", "/ml/diagnostics/bundle"),
    ("POST", "/shutdown"),  # never with the right token: it would end the run
    ("POST", "/ml/jobs"),
    ("GET", "/ml/jobs"),
    ("GET", "/ml/jobs/{id}"),
    ("DELETE", "/ml/jobs/{id}"),
    ("GET", "/ml/jobs/{id}/events"),
    ("GET", "/ml/jobs/{id}/result"),
)
# How often each route is drawn: the cheap ones often, the heavy ones rarely.
WEIGHTS = (6, 6, 2, 14, 8, 10, 1, 1, 10, 3, 2, 2, 0.3, 0.2, 1, 8, 3, 3, 2, 2, 2)
JOB_FIELDS = ("mode", "tile_size", "overlap")
SEGMENT_FIELDS = {
    "text": ("prompt", "backend", "confidence_threshold", "model_id", "output_format",
             "min_size", "max_size"),
    "automatic": ("model_version", "foreground", "unique", "points_per_side", "pred_iou_thresh",
                  "stability_score_thresh", "output_format", "min_size", "max_size"),
    "predict": ("point_coords", "point_labels", "boxes", "point_crs", "multimask_output",
                "model_version", "output_format", "min_size", "max_size"),
}  # fmt: skip
INSTALL_FIELDS = ("backend", "token", "checkpoint", "bundle", "weights", "force", "build")
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "FOO")


def choose_seed(environ: dict[str, str] | None = None) -> int:
    """GEOLIBRE_FUZZ_SEED if set; fixed in CI or without a terminal; else random."""
    env = os.environ if environ is None else environ
    if env.get("GEOLIBRE_FUZZ_SEED"):
        return int(env["GEOLIBRE_FUZZ_SEED"])
    if env.get("CI", "").lower() in ("1", "true", "yes") or not os.isatty(0):
        return FIXED_SEED
    return random.SystemRandom().randrange(1, 2**31)


@dataclass
class Outcome:
    route: str
    method: str
    status: int | None  # None: the connection closed without an answer
    elapsed_s: float
    long: bool
    head: bytes = b""


@dataclass
class FuzzReport:
    seed: int
    outcomes: list[Outcome] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: Outcome) -> None:
        with self.lock:
            self.outcomes.append(outcome)

    def counts(self) -> Counter[str]:
        return Counter(str(o.status) if o.status is not None else "closed" for o in self.outcomes)

    def failures(self) -> list[str]:
        bad = []
        for o in self.outcomes:
            if o.status is not None and o.status >= 500 and o.status != 501:
                bad.append(f"{o.method} {o.route} -> {o.status}: {o.head[:300]!r}")
            elif not o.long and o.elapsed_s > SLOW_S:
                bad.append(f"{o.method} {o.route} took {o.elapsed_s:.1f} s")
        return bad


class Generator:
    """Random requests (bytes) for one worker, repeatable from its seed."""

    def __init__(self, seed: int, token: str, png: bytes) -> None:
        self.rng = random.Random(seed)
        self.token = token
        self.png = png

    # -- values
    def text(self, limit: int = 40) -> str:
        rng = self.rng
        pools = [string.ascii_letters, string.printable, "\x00\x01\x7f", "éü中文🌍", "\ud800"]
        pool = rng.choice(pools)
        return "".join(rng.choice(pool) for _ in range(rng.randint(0, limit)))

    def scalar(self) -> object:
        rng = self.rng
        return rng.choice([
            lambda: rng.randint(-(10**6), 10**6), lambda: rng.uniform(-1e9, 1e9),
            lambda: 10 ** rng.randint(20, 400), lambda: rng.choice([True, False, None]),
            self.text, lambda: "-" + self.text(10), lambda: "/" + self.text(30),
            lambda: rng.choice(["meta", "transformers", "cpu", "cu126", "sam3", "trees"]),
        ])()  # fmt: skip

    def json_value(self, depth: int = 0) -> object:
        rng = self.rng
        roll = rng.random()
        if depth > 3 or roll < 0.5:
            return self.scalar()
        if roll < 0.75:
            return [self.json_value(depth + 1) for _ in range(rng.randint(0, 4))]
        return {self.text(8): self.json_value(depth + 1) for _ in range(rng.randint(0, 4))}

    def deep(self) -> str:
        n = self.rng.choice([10, 400, 1200, 5000])
        return "[" * n + "1" + "]" * n

    def dump(self, value: object) -> bytes:
        try:
            return json.dumps(value).encode("utf-8", "surrogatepass")
        except (ValueError, OverflowError):
            return b"{}"

    # -- bodies
    def field_value(self, name: str) -> str:
        rng = self.rng
        good = {
            "prompt": "trees", "backend": "transformers", "confidence_threshold": "0.5",
            "point_coords": "[[10, 20]]", "point_labels": "[1]", "boxes": "[[1, 2, 30, 40]]",
            "multimask_output": "false", "foreground": "true", "unique": "true",
            "points_per_side": "8", "output_format": "geojson", "min_size": "0",
            "mode": self.rng.choice(["text", "automatic", "predict"]), "tile_size": "256",
            "overlap": "32",
        }  # fmt: skip
        roll = rng.random()
        if roll < 0.5 and name in good:
            return good[name]
        if roll < 0.6:
            return self.deep()
        if roll < 0.85:
            return str(self.scalar())
        return self.text(rng.choice([10, 200, 5000]))

    def multipart(self, mode: str) -> tuple[bytes, str]:
        rng = self.rng
        boundary = rng.choice(["B", "x" * 70, "----fuzz" + str(rng.randint(0, 10**9)), "é"])
        if mode == "jobs":
            job_mode = rng.choice(list(SEGMENT_FIELDS))
            names = [*SEGMENT_FIELDS[job_mode], *JOB_FIELDS, "unknown_" + self.text(5), "file", ""]
        else:
            names = [*SEGMENT_FIELDS.get(mode, ()), "unknown_" + self.text(5), "file", ""]
        chosen = rng.sample(names, k=rng.randint(0, min(len(names), 5)))
        if mode in ("text", "jobs") and rng.random() < 0.7:
            chosen.append("prompt")
        if mode == "jobs" and rng.random() < 0.7:
            chosen.append("mode")
        if rng.random() < 0.8:
            chosen.append("file")
        parts = []
        for name in chosen:
            if name == "file":
                data = self.png if rng.random() < 0.7 else rng.randbytes(rng.randint(0, 3000))
                filename = rng.choice(["a.png", "", "../../etc/passwd", "x" * 300, "ü.tif"])
                head = f'Content-Disposition: form-data; name="file"; filename="{filename}"'
                parts.append((head, data))
            else:
                head = f'Content-Disposition: form-data; name="{name}"'
                parts.append((head, self.field_value(name).encode("utf-8", "surrogatepass")))
        out = b""
        for head, data in parts:
            out += f"--{boundary}\r\n{head}\r\n\r\n".encode("utf-8", "replace") + data + b"\r\n"
        out += f"--{boundary}--\r\n".encode("utf-8", "replace")
        roll = rng.random()
        if roll < 0.08:
            out = out[: rng.randint(0, len(out))]  # truncated
        elif roll < 0.12:
            out = out.replace(b"\r\n", b"\n")
        ctype = rng.choice(
            [f"multipart/form-data; boundary={boundary}"] * 8
            + ["multipart/form-data", "application/json", "text/plain", ""]
        )
        return out, ctype

    def install_body(self) -> tuple[bytes, str]:
        rng = self.rng
        roll = rng.random()
        if roll < 0.6:
            keys = rng.sample(INSTALL_FIELDS, k=rng.randint(1, 3))
            body = {k: self.json_value(2) for k in keys}
            if rng.random() < 0.2:
                body[self.text(6)] = 1
            return self.dump(body), "application/json"
        if roll < 0.75:
            return self.deep().encode(), "application/json"
        if roll < 0.9:
            return self.dump(self.json_value()), "application/json"
        return self.rng.randbytes(rng.randint(0, 500)), rng.choice(["application/json", ""])

    def job_id(self) -> str:
        """A job id: well-formed but unknown, or hostile (traversal, huge, odd bytes)."""
        rng = self.rng
        return rng.choice([
            lambda: rng.randbytes(16).hex(), lambda: "../x", lambda: "..%2f..%2fetc",
            lambda: "%2e%2e", lambda: "a" * rng.choice([65, 4000, 20000]), lambda: "-",
            lambda: "%00", lambda: "%C3%A9%F0%9F%8C%8D", lambda: "%ff%fe", lambda: "jobs",
            lambda: "".join(rng.choices(string.ascii_letters + "-._~!$&'()*+,;=:@", k=20)),
        ])()  # fmt: skip

    # -- requests
    def request(self) -> tuple[bytes, str, str, bool]:
        """(raw request, method, route, long-running?)."""
        rng = self.rng
        method, route = rng.choices(ROUTES, weights=WEIGHTS)[0]
        path = route.replace("{id}", self.job_id())
        if rng.random() < 0.08:
            path = rng.choice([
                "/ml/segment/" + self.text(12), "/ml/" + self.text(20), "//ml//status",
                "/ml/segment/../status", "/" + "a" * rng.choice([100, 5000, 20000]),
                "/ml/status?" + self.text(30), "/%00", "/ml/%2e%2e/health", "*",
            ])  # fmt: skip
        if rng.random() < 0.08:
            method = rng.choice(METHODS)
        headers: list[tuple[str, str]] = [("Host", "127.0.0.1")]
        if rng.random() < 0.05:
            headers = [("Host", rng.choice(["evil.com", "127.0.0.1:1@evil.com", "[::1]x", ""]))]
        token_roll = rng.random()
        if route == "/shutdown":
            token_roll = 0.95 if token_roll < 0.9 else token_roll
        if token_roll < 0.9:
            headers.append(("X-GeoLibre-Token", self.token))
        elif token_roll < 0.95:
            headers.append(("Authorization", rng.choice(["Bearer wrong", "Basic eA==", "Bearer"])))
        body, ctype = b"", ""
        if route.startswith("/ml/segment/"):
            body, ctype = self.multipart(route.rsplit("/", 1)[-1])
        elif route == "/ml/jobs" and method == "POST":
            body, ctype = self.multipart("jobs")
        elif route == "/ml/backend/install" and method == "POST":
            body, ctype = self.install_body()
        elif rng.random() < 0.05:
            body = rng.randbytes(rng.randint(1, 200))
        if ctype:
            headers.append(("Content-Type", ctype))
        if route.endswith("/events") or rng.random() < 0.03:
            headers.append(("Last-Event-ID", rng.choice(["-1", "-100", "x", "99999999999", "3"])))
        for _ in range(rng.choice([0, 0, 0, 1, 3])):
            # Mostly well-formed (to reach the app); now and then bytes HTTP forbids.
            name = "X-" + "".join(rng.choices(string.ascii_letters, k=rng.randint(1, 12)))
            value = self.text(60) if rng.random() < 0.1 else name[::-1]
            headers.append((self.text(10) if rng.random() < 0.05 else name, value))
        if rng.random() < 0.02:
            headers.append(("X-Big", "a" * rng.choice([8000, 20000])))
        chunked = body and rng.random() < 0.15
        if chunked:
            size = max(1, len(body) // rng.randint(1, 4))
            pieces = [body[i : i + size] for i in range(0, len(body), size)]
            body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
            headers.append(("Transfer-Encoding", "chunked"))
        elif body or method in ("POST", "PUT", "PATCH"):
            length = len(body)
            if rng.random() < 0.05:
                # Shorter than the body (never longer: the server would wait for the rest).
                length = rng.choice([0, max(0, length - 1), -1])
            headers.append(("Content-Length", "abc" if length < 0 else str(length)))
        headers.append(("Connection", "close"))
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
        raw = head.encode("utf-8", "surrogatepass") + b"\r\n" + body
        long = route in LONG_ROUTES or route == "/ml/backend/start"
        return raw, method, route, long


def send(port: int, raw: bytes, timeout_s: float) -> tuple[int | None, bytes, float]:
    """Send one request; (status or None, first bytes of the answer, seconds)."""
    started = time.perf_counter()
    answer = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
            # Refused mid-send (431, 413): the answer may still be there to read.
            with contextlib.suppress(OSError):
                sock.sendall(raw)
            while chunk := sock.recv(65536):
                if len(answer) < 4096:
                    answer += chunk
    except TimeoutError:
        return (_status(answer) or 0), answer, time.perf_counter() - started
    except OSError:
        pass
    return _status(answer), answer, time.perf_counter() - started


def _status(answer: bytes) -> int | None:
    try:
        return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else None
    except (IndexError, ValueError):
        return None


def run_fuzz(
    port: int,
    token: str,
    png: bytes,
    *,
    seed: int,
    requests: int,
    workers: int = 4,
    on_progress: Callable[[int], None] | None = None,
) -> FuzzReport:
    """Send ``requests`` random requests from ``workers`` threads; every outcome recorded."""
    report = FuzzReport(seed=seed)
    per_worker = [
        requests // workers + (1 if i < requests % workers else 0) for i in range(workers)
    ]

    def work(index: int) -> None:
        gen = Generator(seed * 1000 + index, token, png)
        for _ in range(per_worker[index]):
            raw, method, route, long = gen.request()
            # A long route may stream for as long as an install runs: cut it short.
            status, answer, elapsed = send(port, raw, 10.0 if long else SLOW_S + 1)
            report.add(Outcome(route, method, status, elapsed, long, answer))
            if on_progress is not None:
                on_progress(len(report.outcomes))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return report
