"""Shared pieces for the benchmarks: figures, percentiles, a temporary home."""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    target: str = ""
    ok: bool | None = None
    note: str = ""

    def row(self) -> str:
        verdict = {True: "met", False: "MISSED", None: ""}[self.ok]
        value = f"{self.value:,.3f}" if self.value < 100 else f"{self.value:,.0f}"
        head = f"  {self.name:<58} {value:>10} {self.unit:<6} {self.target:<10} {verdict:<6}"
        return f"{head} {self.note}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values)


@contextlib.contextmanager
def temp_home(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=f"geolibre-bench-{prefix}-") as folder:
        yield Path(folder)


def new_marker() -> str:
    return f"glbench-{uuid.uuid4().hex[:10]}"


def multipart(
    boundary: str, fields: dict[str, str], file_name: str, file_bytes: int, chunk: bytes
) -> tuple[int, Iterator[bytes]]:
    """A streamed multipart body with a large file made of ``chunk`` repeated."""
    head = b""
    for name, value in fields.items():
        head += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        ).encode()
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{file_name}"'
        "\r\nContent-Type: image/tiff\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = len(head) + file_bytes + len(tail)

    def body() -> Iterator[bytes]:
        yield head
        left = file_bytes
        while left > 0:
            piece = chunk if left >= len(chunk) else chunk[:left]
            left -= len(piece)
            yield piece
        yield tail

    return length, body()
