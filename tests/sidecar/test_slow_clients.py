"""Slow and idle clients against the real sidecar and the stand-in: a dripping
upload loses its slot, and hundreds of idle connections and slow uploads do not
slow /health or /ml/status."""

from __future__ import annotations

import socket
import threading
import time

import httpx

from tests.harness.waiting import wait_until
from tests.sidecar.test_proxy import PNG, text_request
from tests.standin.harness import start_standin

BODY = (
    b'--B\r\nContent-Disposition: form-data; name="prompt"\r\n\r\ntrees\r\n'
    b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
    + PNG
    + b"\r\n--B--\r\n"
)


def upload_head(token: str, length: int = len(BODY)) -> bytes:
    return (
        f"POST /ml/segment/text HTTP/1.1\r\nHost: 127.0.0.1\r\nX-GeoLibre-Token: {token}\r\n"
        f"Content-Type: multipart/form-data; boundary=B\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def drip(sock: socket.socket, data: bytes, every_s: float, stop: threading.Event) -> None:
    """Send ``data`` a byte at a time until told to stop or the sidecar closes on us."""
    for i in range(len(data)):
        if stop.wait(every_s):
            return
        try:
            sock.sendall(data[i : i + 1])
        except OSError:
            return


def read_answer(sock: socket.socket, timeout_s: float) -> bytes:
    sock.settimeout(timeout_s)
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return answer


def test_a_dripping_upload_gets_408_and_frees_its_slot(sidecar_factory):
    with start_standin() as standin:
        sidecar = sidecar_factory(
            env={
                "GEOLIBRE_ML_SAMGEO_URL": standin.url,
                "GEOLIBRE_ML_MAX_IN_FLIGHT": "1",
                "GEOLIBRE_ML_BODY_IDLE_TIMEOUT_S": "1",
            }
        )
        stop = threading.Event()
        sock = socket.create_connection(("127.0.0.1", sidecar.ready["port"]))
        sock.sendall(upload_head(sidecar.token) + BODY[:40])
        dripper = threading.Thread(target=drip, args=(sock, BODY[40:], 0.2, stop))
        dripper.start()
        started = time.monotonic()
        try:
            answer = read_answer(sock, timeout_s=15)
        finally:
            stop.set()
            dripper.join()
            sock.close()
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"too slow" in answer
        assert time.monotonic() - started < 6
        with sidecar.client() as client:
            assert client.get("/ml/status").json()["backend"]["in_flight"] == 0
            assert text_request(client).status_code == 200
        assert standin.stats()["segment_requests"] == 1, "the slow upload never reached it"
        assert "Traceback" not in sidecar.stderr()


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def measure(client: httpx.Client, rounds: int) -> dict[str, float]:
    """p99 seconds of /health and /ml/status, interleaved, from measured samples."""
    samples: dict[str, list[float]] = {"/health": [], "/ml/status": []}
    for _ in range(rounds):
        for path, times in samples.items():
            began = time.perf_counter()
            assert client.get(path).status_code == 200
            times.append(time.perf_counter() - began)
    return {path: p99(times) for path, times in samples.items()}


def test_health_and_status_stay_fast_under_idle_connections_and_slow_uploads(sidecar_factory):
    with start_standin() as standin:
        sidecar = sidecar_factory(env={"GEOLIBRE_ML_SAMGEO_URL": standin.url})
        port = sidecar.ready["port"]
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(300)]
        stop = threading.Event()
        uploads = []
        for _ in range(8):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(upload_head(sidecar.token) + BODY[:40])
            uploads.append(sock)
        drippers = [threading.Thread(target=drip, args=(s, BODY[40:], 0.25, stop)) for s in uploads]
        for thread in drippers:
            thread.start()
        windows: list[dict[str, float]] = []
        try:
            with sidecar.client(timeout_s=5) as client:
                wait_until(lambda: client.get("/ml/status").json()["available"], timeout_s=10)
                # Two windows at most: this 2-core machine is shared with other work, and
                # one burst of a neighbour's CPU can cost a window its p99.
                while len(windows) < 2 and not any(max(w.values()) < 0.050 for w in windows):
                    windows.append(measure(client, rounds=250))
        finally:
            stop.set()
            for thread in drippers:
                thread.join()
            for sock in idle + uploads:
                sock.close()
        shown = [{path: f"{value * 1000:.1f} ms" for path, value in w.items()} for w in windows]
        assert any(max(w.values()) < 0.050 for w in windows), f"p99 per window: {shown}"
        assert "Traceback" not in sidecar.stderr()
        with httpx.Client(base_url=sidecar.url, trust_env=False) as plain:
            assert plain.get("/health").status_code == 200
