"""A private X display (Xvfb) for GUI tests, and screenshots of it as PNG files.

Xvfb picks a free display number itself (``-displayfd``) and keeps its screen
in a file (``-fbdir``, XWD format), which :func:`screenshot` turns into a PNG
with the standard library only.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import struct
import subprocess
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

START_TIMEOUT_S = 30.0
XWD_HEADER = struct.Struct(">25I")


@contextlib.contextmanager
def xvfb(folder: Path, *, size: str = "1280x900x24") -> Iterator[tuple[str, Path]]:
    """Yield ``(DISPLAY, framebuffer file)`` for a fresh Xvfb; stop it afterwards."""
    program = shutil.which("Xvfb")
    assert program, "Xvfb is missing (Debian package xvfb)"
    folder.mkdir(parents=True, exist_ok=True)
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [program, "-displayfd", str(write_end), "-screen", "0", size, "-nolisten", "tcp",
         "-fbdir", str(folder)],
        pass_fds=(write_end,),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(write_end)
    try:
        number = b""
        deadline = time.monotonic() + START_TIMEOUT_S
        while not number.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([read_end], [], [], max(left, 0))
            chunk = os.read(read_end, 16) if ready else b""
            if not chunk:
                raise AssertionError(f"Xvfb named no display within {START_TIMEOUT_S:g} s")
            number += chunk
        yield f":{number.decode().strip()}", folder / "Xvfb_screen0"
    finally:
        os.close(read_end)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _png(width: int, height: int, rows: list[bytes]) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + row for row in rows)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    parts = [chunk(b"IHDR", header), chunk(b"IDAT", zlib.compress(raw, 6)), chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(parts)


def screenshot(framebuffer: Path, target: Path) -> Path:
    """Write the screen (a 24/32-bit XWD from Xvfb) to ``target`` as an RGB PNG."""
    data = framebuffer.read_bytes()
    fields = XWD_HEADER.unpack_from(data)
    header_size, width, height = fields[0], fields[4], fields[5]
    byte_order, bits_per_pixel = fields[7], fields[11]
    bytes_per_line, ncolors = fields[12], fields[19]
    assert bits_per_pixel == 32, f"a {bits_per_pixel}-bit screen: start Xvfb with depth 24"
    start = header_size + ncolors * 12
    rows = []
    for y in range(height):
        line = data[start + y * bytes_per_line : start + y * bytes_per_line + width * 4]
        # LSBFirst (0): each pixel is B, G, R, X in memory.
        b, g, r = (
            (line[0::4], line[1::4], line[2::4])
            if byte_order == 0
            else (line[3::4], line[2::4], line[1::4])
        )
        row = bytearray(width * 3)
        row[0::3], row[1::3], row[2::3] = r, g, b
        rows.append(bytes(row))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(_png(width, height, rows))
    return target


def screen_is_blank(framebuffer: Path) -> bool:
    """Nothing drawn: every pixel is the bare root window's black (no window mapped)."""
    data = framebuffer.read_bytes()
    fields = XWD_HEADER.unpack_from(data)
    return not data[fields[0] + fields[19] * 12 :].strip(b"\0")
